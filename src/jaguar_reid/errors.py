"""The errors a user can cause and fix: each prints as one line (``error: ...``) and exit code 2 in the CLI.

Kept in one light module (no torch, pandas or numpy) so the command line can catch them without
importing the heavy libraries.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input, a bad setting or a missing resource; the message is one line naming the culprit."""


class ConfigError(UserError, ValueError):
    """A preset, TOML file or override that does not describe a valid configuration."""


class DataError(UserError, ValueError):
    """Input data that cannot be used; the message names the file and row."""


class ImageLoadError(DataError):
    """A corrupt, truncated or unreadable image file; ``reason`` says why in a few words
    ("empty file", "not an image", "truncated or damaged image", ...)."""

    def __init__(self, message: str, reason: str = "cannot read image"):
        super().__init__(message)
        self.reason = reason


class WeightsError(UserError, RuntimeError):
    """Pretrained weights were asked for and cannot be had."""


class RunFolderError(UserError, RuntimeError):
    """A folder that is not the run it was expected to be."""


class DeviceError(UserError, ValueError):
    """A device name that is not valid, or not present on this machine."""


class CatalogError(UserError, RuntimeError):
    """A catalogue that cannot be opened or changed as asked (missing, newer schema, unreachable, bad request)."""
