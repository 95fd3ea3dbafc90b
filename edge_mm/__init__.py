"""edge-mm: an offline multimodal inference server for edge machines."""

__version__ = "0.1.0"
__all__ = ["__version__"]
