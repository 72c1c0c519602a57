"""Exceptions whose messages are meant for users: they name the culprit and the fix."""


class LitVisionError(Exception):
    """Base class for every error lit_vision raises on purpose."""


class ConfigError(LitVisionError, ValueError):
    """A config value is invalid; the message names the key, the value and what is allowed."""


class DataNotFoundError(LitVisionError, FileNotFoundError):
    """A data root is missing or holds no recognisable dataset."""


class CorruptImageError(LitVisionError):
    """One or more image files could not be decoded; the message lists every path and reason."""
