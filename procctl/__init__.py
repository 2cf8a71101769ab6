"""procctl: a process runner and pool."""

__version__ = "0.1.0"
