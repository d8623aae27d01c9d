"""The review web app (``jaguar-reid serve``): confirm matches side by side and grow the catalogue."""

from .server import create_app, serve

__all__ = ["create_app", "serve"]
