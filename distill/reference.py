"""LiteMedSAM in PyTorch, run the way its authors run it: the yardstick for every exported variant."""

from __future__ import annotations

import numpy as np

from imis_lite.geometry import ResizeLongestSide
from imis_lite.preprocess import encoder_input


class TorchReference:
    """Box (and point) prompts -> masks with the original PyTorch modules, eager, on the CPU.

    Pre-processing is LiteMedSAM's (longest side to 256 with INTER_AREA, min-max, pad); post-processing is
    its ``postprocess_masks`` (crop the padding, bilinear resize, threshold logits at 0).
    """

    def __init__(self, net) -> None:
        self.net = net.eval()
        self.input_size = int(net.prompt_encoder.input_image_size[0])

    def embed(self, image: np.ndarray):
        import torch

        tensor, geometry = encoder_input(image, self.input_size)
        with torch.no_grad():
            return self.net.image_encoder(torch.from_numpy(tensor)), geometry

    def decode(self, embedding, geometry: ResizeLongestSide, boxes=None, points=None, labels=None, mask_input=None):
        """Prompts in original pixels (batched as SAM's PromptEncoder wants) -> (masks (N, H, W), logits, iou)."""
        import torch
        import torch.nn.functional as F

        def tensor(values):
            return None if values is None else torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))

        box = tensor(None if boxes is None else geometry.apply_boxes(np.asarray(boxes).reshape(-1, 4)))
        point_pair = None
        if points is not None:
            point_pair = (tensor(geometry.apply_coords(points)), tensor(labels))
        with torch.no_grad():
            sparse, dense = self.net.prompt_encoder(points=point_pair, boxes=box, masks=tensor(mask_input))
            logits, iou = self.net.mask_decoder(
                image_embeddings=embedding, image_pe=self.net.prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense, multimask_output=False,
            )
            height, width = geometry.resized_shape
            full = F.interpolate(logits[..., :height, :width], size=geometry.shape, mode="bilinear", align_corners=False)
        return (full[:, 0] > 0).numpy(), logits[:, 0].numpy(), iou[:, 0].numpy()

    def predict(self, image: np.ndarray, boxes: np.ndarray, embedded=None) -> tuple[np.ndarray, np.ndarray]:
        """boxes (N, 4) x0 y0 x1 y1 in original pixels -> (masks (N, H, W) bool, low-res logits (N, L, L))."""
        embedding, geometry = embedded if embedded is not None else self.embed(image)
        masks, logits, _ = self.decode(embedding, geometry, boxes=boxes)
        return masks, logits


class TorchSegmenter:
    """The Segmenter interface (``set_image``, single-prompt ``predict``) over :class:`TorchReference`,
    so benchmarks and 3D propagation can run the PyTorch model through the very same code paths."""

    engine, precision = "pytorch", "fp32"

    def __init__(self, net) -> None:
        self.reference = TorchReference(net)
        self._key: bytes | None = None
        self._embedded = None

    @property
    def image_shape(self) -> tuple[int, int]:
        return self._embedded[1].shape

    @property
    def input_size(self) -> int:
        return self.reference.input_size

    def set_image(self, image: np.ndarray) -> None:
        key = np.ascontiguousarray(image).tobytes()
        if key != self._key:
            self._key, self._embedded = key, self.reference.embed(image)

    def predict(self, box=None, points=None, labels=None, mask_input=None, multimask: bool = False):
        if multimask:
            raise ValueError("the PyTorch reference answers single-mask prompts only")
        embedding, geometry = self._embedded
        point_array = None if points is None else np.asarray(points, np.float32)[None]
        label_array = None if points is None else np.asarray(labels if labels is not None else [1] * len(points), np.float32)[None]
        mask_array = None if mask_input is None else np.asarray(mask_input, np.float32).reshape(1, 1, *np.shape(mask_input)[-2:])
        masks, logits, iou = self.reference.decode(
            embedding, geometry, boxes=None if box is None else np.asarray(box, np.float32)[None],
            points=point_array, labels=label_array, mask_input=mask_array,
        )
        return masks, iou, logits
