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


class Interrupted(BaseException):
    """SIGTERM or SIGINT arrived: the command stops where it is (every file is written atomically, so
    that is a safe point) and a run directory stays resumable. A BaseException, as KeyboardInterrupt
    is, so that no `except Exception` on the way swallows it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum
        self.run_dir: str | None = None  # set by the pipeline when a run directory was in use
