"""imis-lite: interactive medical image segmentation (box and click prompts -> masks) on a laptop CPU."""

from ._version import __version__

__all__ = ["Segmenter", "__version__"]


def __getattr__(name: str):
    # Lazy, so that `imis-lite --version` and `--help` load no inference runtime.
    if name == "Segmenter":
        from .predictor import Segmenter

        return Segmenter
    raise AttributeError(f"module 'imis_lite' has no attribute {name!r}")
