"""Turn a 2D image of any dtype into the encoder's input tensor, exactly as the model was trained."""

from __future__ import annotations

import numpy as np

from .errors import ImageError
from .geometry import ResizeLongestSide


def as_three_channels(image: np.ndarray) -> np.ndarray:
    """(H, W), (H, W, 1), (H, W, 3) or (H, W, 4) -> (H, W, 3); uint8 stays uint8, anything else float32."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] in (1, 3, 4):
        image = image[:, :, :3] if image.shape[2] != 1 else image[:, :, 0]
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ImageError(f"expected a 2D grey or RGB image (H, W) or (H, W, 3), got shape {image.shape}")
    if min(image.shape[:2]) < 2:
        raise ImageError(f"image of shape {image.shape[:2]} is too small to segment")
    if image.dtype == np.uint8:
        return image
    if image.dtype == bool or not np.issubdtype(image.dtype, np.number):
        raise ImageError(f"image dtype {image.dtype} is not numeric")
    image = image.astype(np.float32)
    if not np.isfinite(image).all():
        raise ImageError("image contains NaN or infinite values")
    return image


def is_constant(image: np.ndarray) -> bool:
    """One grey level everywhere: nothing to segment (a padding slice, or all air after a window)."""
    return bool(image.min() == image.max())


def encoder_input(image: np.ndarray, input_size: int) -> tuple[np.ndarray, ResizeLongestSide]:
    """(H, W[, C]) image -> ((1, 3, S, S) float32 in [0, 1], the geometry used).

    LiteMedSAM's recipe: resize the longest side to S with INTER_AREA (uint8 images are resized as uint8,
    as in its training code), min-max normalise the resized image to [0, 1], pad bottom/right with zeros.
    """
    rgb = as_three_channels(image)
    if is_constant(rgb):
        raise ImageError(f"image is constant (every pixel is {float(rgb.flat[0]):g}): nothing to segment")
    geometry = ResizeLongestSide(input_size, rgb.shape[:2])
    resized = geometry.apply_image(rgb).astype(np.float32)
    low, high = float(resized.min()), float(resized.max())
    normalised = (resized - low) / max(high - low, 1e-8)
    return geometry.pad(normalised).transpose(2, 0, 1)[None].copy(), geometry
