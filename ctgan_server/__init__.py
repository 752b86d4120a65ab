"""Server side of ctgan-server-cli: runs where the data and the GPU are.

Kept import-free on purpose: ``python -m ctgan_server serve`` must take hold of
stdout before anything else gets the chance to print on it.
"""

__version__ = "0.3.0"
