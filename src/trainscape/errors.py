"""Exception types. Anything derived from InputError is the user's to fix: the CLI prints its
message as one line on stderr and exits with status 2, and nothing has been written."""


class InputError(ValueError):
    """Bad input from the user (config, data, usage). Message: which key/file, what was given,
    what is allowed."""


class ConfigError(InputError):
    """A config key or value is invalid."""


class DataError(InputError):
    """A dataset cannot be loaded or is unusable (missing file, NaN, shape mismatch...)."""
