"""Augmented training views of corpus images, each exactly what the runtime would feed the encoder.

The teacher answers for any input, so augmentation is free to be strong: crops, flips, rotations, coarser
resolution (a 512-pixel slice shown as a 3-5 mm scan of 100-300 pixels would be, which the runtime then
enlarges), intensity windows, gamma, noise, blur and mixing with another image. A view is made at the image's own resolution and
then passed through the runtime's own pre-processing, so student and teacher see the pixels a user's image
would produce. Views are seeded by (seed, index): a resumed cache rebuilds the same view.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from imis_lite.preprocess import as_three_channels, encoder_input

#: share of augmented views shown at a coarser resolution
COARSER_CHANCE = 0.35
#: share of augmented views given a narrow window around the body's typical grey level
NARROW_WINDOW_CHANCE = 0.3


@dataclass(frozen=True)
class View:
    image: np.ndarray  # (3, S, S) uint8: the encoder input x 255 (padding = 0)
    mask: np.ndarray  # (S, S) uint8 label map on the same grid, 0 where unknown or background
    valid_shape: tuple[int, int]  # (h, w) of the resized image inside the padded square


def _random_crop(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    height, width = image.shape[:2]
    area = rng.uniform(0.35, 1.0) * height * width
    aspect = np.exp(rng.uniform(np.log(0.75), np.log(1.33)))
    crop_h = int(min(height, max(16, round(np.sqrt(area / aspect)))))
    crop_w = int(min(width, max(16, round(np.sqrt(area * aspect)))))
    top = int(rng.integers(0, height - crop_h + 1))
    left = int(rng.integers(0, width - crop_w + 1))
    return image[top:top + crop_h, left:left + crop_w], mask[top:top + crop_h, left:left + crop_w]


def _rotate(image: np.ndarray, mask: np.ndarray, degrees: float) -> tuple[np.ndarray, np.ndarray]:
    height, width = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), degrees, 1.0)
    image = cv2.warpAffine(image, matrix, (width, height), flags=cv2.INTER_LINEAR, borderValue=0)
    mask = cv2.warpAffine(mask, matrix, (width, height), flags=cv2.INTER_NEAREST, borderValue=0)
    return image, mask


def _coarser(image: np.ndarray, mask: np.ndarray, factor: float) -> tuple[np.ndarray, np.ndarray]:
    """The image sampled ``factor`` times coarser (area averaging, as a thicker-voxel scan), keeping its aspect
    and at least 32 pixels on its shorter side; the label map by nearest neighbour on the same grid."""
    height, width = image.shape[:2]
    factor = min(factor, min(height, width) / 32)
    size = (round(width / factor), round(height / factor))
    if factor <= 1 or size[0] >= width or size[1] >= height:
        return image, mask
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST)


def _intensity(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Window, gamma, noise and blur on a float image in [0, 1]. The narrow window centred on the body's
    typical grey level is a soft-tissue CT window (L40 / W400, the runtime's default) seen on a slice stored
    with a wide one, as the corpus's CT slices are."""
    if rng.random() < NARROW_WINDOW_CHANCE:
        body = image[image > 0.1]
        if body.size:
            centre = np.median(body) + rng.uniform(-0.05, 0.05)
            half = rng.uniform(0.08, 0.25)
            image = np.clip((image - centre + half) / (2 * half), 0, 1)
    elif rng.random() < 0.4:
        low, high = np.percentile(image, [rng.uniform(0, 20), rng.uniform(80, 100)])
        if high > low:
            image = np.clip((image - low) / (high - low), 0, 1)
    if rng.random() < 0.5:
        image = image ** np.exp(rng.uniform(np.log(0.6), np.log(1.6)))
    if rng.random() < 0.3:
        image = image + rng.normal(0, rng.uniform(0.01, 0.06), image.shape).astype(np.float32)
    if rng.random() < 0.2:
        image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.5, 1.5))
    if image.ndim == 3 and rng.random() < 0.1:
        image = np.repeat(image.mean(axis=2, keepdims=True), 3, axis=2)
    return np.clip(image, 0, 1).astype(np.float32)


def augment(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator, mix_with: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """One random geometric + intensity augmentation of an (H, W, 3) uint8 image and its label map."""
    if rng.random() < 0.7:
        image, mask = _random_crop(image, mask, rng)
    if rng.random() < 0.5:
        image, mask = image[:, ::-1], mask[:, ::-1]
    if rng.random() < 0.2:
        image, mask = image[::-1], mask[::-1]
    if rng.random() < 0.4:
        image, mask = _rotate(np.ascontiguousarray(image), np.ascontiguousarray(mask), rng.uniform(-20, 20))
    if rng.random() < COARSER_CHANCE:
        image, mask = _coarser(np.ascontiguousarray(image), np.ascontiguousarray(mask), np.exp(rng.uniform(np.log(1.5), np.log(5))))
    result = _intensity(np.ascontiguousarray(image).astype(np.float32) / 255.0, rng)
    if mix_with is not None:
        other = cv2.resize(as_three_channels(mix_with), (result.shape[1], result.shape[0]), interpolation=cv2.INTER_AREA)
        other = other.astype(np.float32) / 255
        alpha = rng.uniform(0.1, 0.3)
        result = (1 - alpha) * result + alpha * other
    return result, np.ascontiguousarray(mask)


def make_view(image: np.ndarray, mask: np.ndarray | None, input_size: int, rng: np.random.Generator | None,
              mix_with: np.ndarray | None = None) -> View:
    """The encoder input for ``image`` (augmented when ``rng`` is given) and its label map on the same grid."""
    rgb = as_three_channels(image)
    labels = np.zeros(rgb.shape[:2], np.uint8) if mask is None else mask.astype(np.uint8)
    if rng is not None:
        rgb, labels = augment(rgb, labels, rng, mix_with)
    tensor, geometry = encoder_input(rgb, input_size)
    height, width = geometry.resized_shape
    grid = np.zeros((input_size, input_size), np.uint8)
    grid[:height, :width] = cv2.resize(labels, (width, height), interpolation=cv2.INTER_NEAREST)
    return View(np.round(tensor[0] * 255).astype(np.uint8), grid, (height, width))
