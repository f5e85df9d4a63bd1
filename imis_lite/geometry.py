"""Resize-longest-side and padding, and the coordinate transforms between an image and the model frame.

Every forward transform has its inverse beside it. Coordinates are (x, y) with x = column, in pixels of
the original 2D image; the model frame is the padded square of side ``input_size``.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class ResizeLongestSide:
    """LiteMedSAM's geometry: scale so the longest side is ``input_size``, pad bottom/right.

    ``shape`` is the original image's (height, width).
    """

    input_size: int
    shape: tuple[int, int]

    @property
    def scale(self) -> float:
        return self.input_size / max(self.shape)

    @property
    def resized_shape(self) -> tuple[int, int]:
        """(height, width) of the image inside the padded square, rounded as LiteMedSAM rounds."""
        height, width = self.shape
        return int(height * self.scale + 0.5), int(width * self.scale + 0.5)

    def apply_image(self, image: np.ndarray) -> np.ndarray:
        """(H, W[, C]) -> (h, w[, C]) resized with INTER_AREA, dtype float32 kept unpadded."""
        height, width = self.resized_shape
        return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)

    def pad(self, image: np.ndarray) -> np.ndarray:
        """(h, w, C) -> (S, S, C), zeros at the bottom and right."""
        height, width = image.shape[:2]
        padded = np.zeros((self.input_size, self.input_size) + image.shape[2:], dtype=image.dtype)
        padded[:height, :width] = image
        return padded

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        """(..., 2) x, y in original pixels -> model frame."""
        return np.asarray(coords, dtype=np.float32) * np.float32(self.scale)

    def inverse_coords(self, coords: np.ndarray) -> np.ndarray:
        """(..., 2) x, y in the model frame -> original pixels."""
        return np.asarray(coords, dtype=np.float32) / np.float32(self.scale)

    def apply_boxes(self, boxes: np.ndarray) -> np.ndarray:
        """(..., 4) x0 y0 x1 y1 in original pixels -> model frame."""
        boxes = np.asarray(boxes, dtype=np.float32)
        return self.apply_coords(boxes.reshape(*boxes.shape[:-1], 2, 2)).reshape(boxes.shape)

    def inverse_boxes(self, boxes: np.ndarray) -> np.ndarray:
        """(..., 4) x0 y0 x1 y1 in the model frame -> original pixels."""
        boxes = np.asarray(boxes, dtype=np.float32)
        return self.inverse_coords(boxes.reshape(*boxes.shape[:-1], 2, 2)).reshape(boxes.shape)

    def logits_to_image(self, low_res_logits: np.ndarray, low_res_size: int) -> np.ndarray:
        """(N, L, L) low-res logits of the padded square -> (N, H, W) logits on the original image.

        Crops the padding at low resolution, then resizes bilinearly (as torch's
        ``F.interpolate(..., align_corners=False)``) to the original size.
        """
        height, width = self.resized_shape
        factor = low_res_size / self.input_size
        crop_h, crop_w = int(round(height * factor)), int(round(width * factor))
        out_h, out_w = self.shape
        return np.stack(
            [cv2.resize(m[:crop_h, :crop_w], (out_w, out_h), interpolation=cv2.INTER_LINEAR) for m in low_res_logits]
        )

    def image_to_low_res(self, masks: np.ndarray, low_res_size: int) -> np.ndarray:
        """(N, H, W) float maps on the original image -> (N, L, L) on the padded low-res grid (inverse of above)."""
        height, width = self.resized_shape
        factor = low_res_size / self.input_size
        crop_h, crop_w = int(round(height * factor)), int(round(width * factor))
        out = np.zeros((len(masks), low_res_size, low_res_size), dtype=np.float32)
        for i, mask in enumerate(masks):
            out[i, :crop_h, :crop_w] = cv2.resize(
                mask.astype(np.float32), (crop_w, crop_h), interpolation=cv2.INTER_LINEAR
            )
        return out
