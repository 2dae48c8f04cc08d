"""auditor: audit an image-classification dataset before training on it."""

__version__ = "0.1.0"
