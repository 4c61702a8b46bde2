"""The package version: the Keyhaven server's workspace version (a test checks it)."""

__version__ = "0.1.0"
