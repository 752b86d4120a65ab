"""ctgan-server-cli client: fit CTGAN on a server over SSH and bring synthetic data back."""

from ctgan_server import __version__

from .client import Client

__all__ = ["Client", "__version__"]
