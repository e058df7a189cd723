"""User-facing errors: anything the user can fix gets one clear line, not a traceback."""


class UserError(Exception):
    """A problem with the user's input (config, data, model name); printed as one line by the CLI."""


class ConfigError(UserError):
    """The configuration is invalid: bad value, unknown name, impossible size."""


class DataError(UserError):
    """The requested data cannot be provided (too little text, bad token file, unreachable source)."""


class ModelLoadError(UserError):
    """The model cannot be found or loaded."""


class NumericalError(UserError):
    """Non-finite weights or activations: the run stops and names the layer and module."""
