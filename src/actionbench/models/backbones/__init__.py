"""2D image backbones turned into video networks: ResNet and InceptionV1 families."""
