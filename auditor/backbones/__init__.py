"""Pretrained image backbones (Keras 3) and their weight loaders."""
