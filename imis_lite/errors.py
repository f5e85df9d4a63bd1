"""Exceptions whose message is fit to show a user as a single line."""


class ImisLiteError(Exception):
    """Base class: the CLI prints ``str(error)`` on one line and exits with code 1."""


class BundleError(ImisLiteError):
    """A model bundle is missing, unknown, incomplete or fails its sha256 check."""


class EngineError(ImisLiteError):
    """An inference engine cannot be created with the options asked for."""


class OptionError(EngineError, ValueError):
    """An engine, precision, arithmetic or device name that is not one of ``imis_lite.options``'."""


class PromptError(ImisLiteError):
    """A prompt is malformed or lies outside the image."""


class ImageError(ImisLiteError):
    """An image cannot be segmented as given (wrong shape, NaN/Inf, constant...)."""


class InputError(ImisLiteError):
    """An input file cannot be read as a scan, or an output cannot be written where asked."""
