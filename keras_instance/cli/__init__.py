"""The absl programs (`python -m keras_instance.cli.<program>`): each defines only the flags it
uses (generated from `keras_instance.config`), builds a Config and calls the library."""
