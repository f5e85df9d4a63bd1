"""Scanner values -> the 0..255 range the models were trained on: CT windows, percentiles for the rest."""

from __future__ import annotations

import numpy as np

from .errors import InputError

#: (level, width) in HU.
CT_WINDOWS = {
    "soft-tissue": (40.0, 400.0),
    "lung": (-600.0, 1500.0),
    "bone": (400.0, 1800.0),
    "brain": (40.0, 80.0),
    "liver": (60.0, 160.0),
}
DEFAULT_CT_WINDOW = "soft-tissue"
PERCENTILES = (0.5, 99.5)


def parse_window(text: str) -> tuple[float, float]:
    """A preset name or ``L,W`` -> (level, width)."""
    if text in CT_WINDOWS:
        return CT_WINDOWS[text]
    try:
        level, width = (float(v) for v in text.split(","))
    except ValueError:
        raise InputError(f"window '{text}' is neither L,W nor a preset ({', '.join(CT_WINDOWS)})") from None
    if width <= 0:
        raise InputError(f"window width must be positive, got {width:g}")
    return level, width


#: elements converted at a time: whole-volume float copies of a big CT would cost gigabytes
CHUNK_ELEMENTS = 1 << 24


def _sample(data: np.ndarray) -> np.ndarray:
    """A strided view of at most about ``CHUNK_ELEMENTS`` elements, for statistics of a large array."""
    step = int(np.ceil((data.size / CHUNK_ELEMENTS) ** (1 / data.ndim))) if data.size > CHUNK_ELEMENTS else 1
    return data[(slice(None, None, step),) * data.ndim]


def infer_modality(data: np.ndarray) -> str:
    """'CT' when values look like Hounsfield units (air near -1000), else 'other'."""
    if np.issubdtype(data.dtype, np.number) and data.min() <= -500 and np.percentile(_sample(data), 99) < 4000:
        return "CT"
    return "other"


def to_uint8(data: np.ndarray, modality: str, window: tuple[float, float] | None = None) -> np.ndarray:
    """Whole image or volume -> uint8 with one mapping for every slice (so propagation sees steady contrast).

    CT: clip to the window (default soft tissue, L40/W400). Other modalities: clip to the 0.5-99.5
    percentiles of the non-zero voxels. uint8 input that is not CT is returned as it is.
    """
    if modality.upper() == "CT":
        level, width = window or CT_WINDOWS[DEFAULT_CT_WINDOW]
        low, high = level - width / 2, level + width / 2
    elif data.dtype == np.uint8 and window is None:
        return data
    elif window is not None:
        low, high = window[0] - window[1] / 2, window[0] + window[1] / 2
    else:
        sample = _sample(data)  # all of it, unless it is large
        values = sample[sample != 0] if np.any(sample != 0) else sample.ravel()
        low, high = (float(v) for v in np.percentile(values, PERCENTILES))
        if high <= low:
            low, high = float(data.min()), float(data.max())
    out = np.empty(data.shape, np.uint8)
    rows = max(1, CHUNK_ELEMENTS // max(1, data[0].size))
    for start in range(0, data.shape[0], rows):  # a chunk at a time: no whole-volume float copy
        chunk = np.clip(data[start:start + rows].astype(np.float32), low, high)
        out[start:start + rows] = np.round((chunk - low) / max(high - low, 1e-6) * 255.0)
    return out
