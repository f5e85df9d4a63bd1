"""LiteMedSAM in PyTorch, run the way its authors run it: the yardstick for every exported variant."""

from __future__ import annotations

import numpy as np

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

    def predict(self, image: np.ndarray, boxes: np.ndarray, embedded=None) -> tuple[np.ndarray, np.ndarray]:
        """boxes (N, 4) x0 y0 x1 y1 in original pixels -> (masks (N, H, W) bool, low-res logits (N, L, L))."""
        import torch
        import torch.nn.functional as F

        embedding, geometry = embedded if embedded is not None else self.embed(image)
        box = torch.from_numpy(geometry.apply_boxes(np.asarray(boxes, np.float32).reshape(-1, 4)))[:, None, :]
        with torch.no_grad():
            sparse, dense = self.net.prompt_encoder(points=None, boxes=box, masks=None)
            logits, _ = self.net.mask_decoder(
                image_embeddings=embedding, image_pe=self.net.prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense, multimask_output=False,
            )
            height, width = geometry.resized_shape
            cropped = logits[..., :height, :width]
            full = F.interpolate(cropped, size=geometry.shape, mode="bilinear", align_corners=False)
        return (full[:, 0] > 0).numpy(), logits[:, 0].numpy()
