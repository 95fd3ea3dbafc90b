"""Build-time code: the only package that imports transformers or torchvision."""
