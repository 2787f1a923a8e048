"""The --backbone choices, importable without TensorFlow: a program lists them in its flags
before it loads anything (`model.backbones` registers a builder under each and checks the two
agree)."""

BACKBONE_NAMES = ("resnet50", "resnet152", "mobilenet_v2", "vgg19", "tiny_cnn")
