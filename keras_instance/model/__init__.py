"""The network: image backbones (by registry), the text CNN, the dual path with its ONE shared
instance classifier, and the losses."""
