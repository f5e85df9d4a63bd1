"""SAM's prompt encoder in NumPy: boxes, positive/negative points and mask input -> decoder tokens.

It holds 6 k parameters and costs microseconds, so it runs here rather than in an engine; its weights come
from the bundle's ``prompt_encoder.npz`` (written by ``imis_lite.distill``), loaded without pickle.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: Names and meaning of the arrays in ``prompt_encoder.npz``.
WEIGHT_KEYS = (
    "pe_gaussian",  # (2, C/2) random-Fourier matrix
    "point_embeddings",  # (4, C): negative point, positive point, box top-left, box bottom-right
    "not_a_point",  # (C,): padding token added when points come without a box
    "no_mask",  # (C,): dense embedding when no mask is given
    "image_embedding_size",  # (2,) h, w of the encoder's grid
    "input_image_size",  # (2,) H, W of the model frame
    "mask_conv0_w", "mask_conv0_b", "mask_ln0_w", "mask_ln0_b",
    "mask_conv1_w", "mask_conv1_b", "mask_ln1_w", "mask_ln1_b",
    "mask_conv2_w", "mask_conv2_b",
)
LAYER_NORM_EPS = 1e-6


def _erf(x: np.ndarray) -> np.ndarray:
    """Error function, Abramowitz & Stegun 7.1.26 (absolute error < 1.5e-7), so GELU needs no SciPy."""
    sign = np.sign(x)
    x = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * x)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return sign * (1.0 - poly * np.exp(-x * x))


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + _erf(x / np.sqrt(2.0)))


def _conv_stride2(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """2x2 convolution with stride 2: (B, Cin, H, W) -> (B, Cout, H/2, W/2)."""
    batch, channels, height, width = x.shape
    patches = x.reshape(batch, channels, height // 2, 2, width // 2, 2)
    return np.einsum("bchiwj,ocij->bohw", patches, weight, optimize=True) + bias[None, :, None, None]


def _layer_norm_2d(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    mean = x.mean(axis=1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=1, keepdims=True)
    return (x - mean) / np.sqrt(var + LAYER_NORM_EPS) * weight[None, :, None, None] + bias[None, :, None, None]


class PromptEncoder:
    """Encodes prompts given in the model frame (pixels of the padded square, x = column)."""

    def __init__(self, weights: dict[str, np.ndarray]) -> None:
        missing = [key for key in WEIGHT_KEYS if key not in weights]
        if missing:
            raise ValueError(f"prompt encoder weights lack {', '.join(missing)}")
        self.w = {key: np.asarray(weights[key], dtype=np.float32) for key in WEIGHT_KEYS}
        self.embed_dim = self.w["no_mask"].shape[0]
        self.embedding_size = tuple(int(v) for v in self.w["image_embedding_size"])
        self.input_size = tuple(int(v) for v in self.w["input_image_size"])
        self.mask_input_size = (4 * self.embedding_size[0], 4 * self.embedding_size[1])

    @classmethod
    def from_npz(cls, path: str | Path) -> PromptEncoder:
        with np.load(path, allow_pickle=False) as data:
            return cls({key: data[key] for key in data.files})

    def _fourier(self, coords01: np.ndarray) -> np.ndarray:
        """(..., 2) coordinates in [0, 1] -> (..., C) sin/cos features."""
        projected = 2.0 * np.pi * ((2.0 * coords01 - 1.0) @ self.w["pe_gaussian"])
        return np.concatenate([np.sin(projected), np.cos(projected)], axis=-1).astype(np.float32)

    def _encode_coords(self, coords: np.ndarray) -> np.ndarray:
        height, width = self.input_size
        shifted = (np.asarray(coords, dtype=np.float32) + 0.5) / np.array([width, height], dtype=np.float32)
        return self._fourier(shifted)

    def dense_positional_encoding(self) -> np.ndarray:
        """(1, C, h, w) positional encoding of the embedding grid (folded into the exported decoder)."""
        height, width = self.embedding_size
        ys, xs = np.meshgrid((np.arange(height) + 0.5) / height, (np.arange(width) + 0.5) / width, indexing="ij")
        return self._fourier(np.stack([xs, ys], axis=-1).astype(np.float32)).transpose(2, 0, 1)[None]

    def embed_points(self, points: np.ndarray, labels: np.ndarray, pad: bool) -> np.ndarray:
        """points (B, K, 2), labels (B, K) with 1 = foreground, 0 = background, -1 = padding -> (B, K[+1], C)."""
        points = np.asarray(points, dtype=np.float32)
        labels = np.asarray(labels)
        if pad:
            points = np.concatenate([points, np.zeros((points.shape[0], 1, 2), np.float32)], axis=1)
            labels = np.concatenate([labels, -np.ones((labels.shape[0], 1), labels.dtype)], axis=1)
        embedding = self._encode_coords(points)
        embedding[labels == -1] = self.w["not_a_point"]
        embedding[labels == 0] += self.w["point_embeddings"][0]
        embedding[labels == 1] += self.w["point_embeddings"][1]
        return embedding

    def embed_boxes(self, boxes: np.ndarray) -> np.ndarray:
        """boxes (B, 4) x0 y0 x1 y1 -> (B, 2, C) corner tokens."""
        corners = self._encode_coords(np.asarray(boxes, dtype=np.float32).reshape(-1, 2, 2))
        corners[:, 0] += self.w["point_embeddings"][2]
        corners[:, 1] += self.w["point_embeddings"][3]
        return corners

    def embed_masks(self, masks: np.ndarray) -> np.ndarray:
        """masks (B, 1, 4h, 4w) low-res logits -> (B, C, h, w), SAM's mask_downscaling."""
        w = self.w
        x = _gelu(_layer_norm_2d(_conv_stride2(masks, w["mask_conv0_w"], w["mask_conv0_b"]), w["mask_ln0_w"], w["mask_ln0_b"]))
        x = _gelu(_layer_norm_2d(_conv_stride2(x, w["mask_conv1_w"], w["mask_conv1_b"]), w["mask_ln1_w"], w["mask_ln1_b"]))
        out = np.einsum("bchw,oc->bohw", x, w["mask_conv2_w"][:, :, 0, 0], optimize=True)
        return (out + w["mask_conv2_b"][None, :, None, None]).astype(np.float32)

    def encode(
        self,
        points: np.ndarray | None = None,
        labels: np.ndarray | None = None,
        boxes: np.ndarray | None = None,
        masks: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Sparse tokens (B, N, C) and dense embedding (B, C, h, w), as SAM's ``PromptEncoder.forward``."""
        if points is not None:
            batch = len(points)
        elif boxes is not None:
            batch = len(boxes)
        elif masks is not None:
            batch = len(masks)
        else:
            batch = 1
        tokens = [np.zeros((batch, 0, self.embed_dim), np.float32)]
        if points is not None:
            if labels is None:  # every point foreground, as predict() documents
                labels = np.ones(np.shape(points)[:-1], np.int64)
            tokens.append(self.embed_points(points, labels, pad=boxes is None))
        if boxes is not None:
            tokens.append(self.embed_boxes(boxes))
        sparse = np.concatenate(tokens, axis=1)
        if masks is not None:
            dense = self.embed_masks(np.asarray(masks, dtype=np.float32))
        else:
            height, width = self.embedding_size
            dense = np.broadcast_to(self.w["no_mask"][None, :, None, None], (batch, self.embed_dim, height, width))
        return sparse, np.ascontiguousarray(dense, dtype=np.float32)
