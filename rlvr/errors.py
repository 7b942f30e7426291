"""User-facing error types. Raising one of these from a command prints one line, exit code 2."""


class RlvrError(Exception):
    """A problem with user input (config, data row, model path, completion file)."""


class ConfigError(RlvrError, ValueError):
    """Bad recipe or override; the message names the dotted field."""


class DataError(RlvrError, ValueError):
    """Bad data row; the message names file:line."""


class ModelError(RlvrError):
    """Model path missing or unloadable; the message says what to install or where to look."""
