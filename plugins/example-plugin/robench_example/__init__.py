"""An example third-party robench plugin (see README.md)."""
