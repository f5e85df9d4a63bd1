"""LiteMedSAM in PyTorch, run the way its authors run it: the yardstick for every exported variant."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from imis_lite.geometry import ResizeLongestSide
from imis_lite.preprocess import encoder_input


class TorchReference:
    """Box (and point) prompts -> masks with the original PyTorch modules, eager, on the CPU.

    Pre-processing is LiteMedSAM's (longest side to 256 with INTER_AREA, min-max, pad); post-processing is
    its ``postprocess_masks`` (crop the padding, bilinear resize, threshold logits at 0).
    """

    def __init__(self, net, click_channel: int = 0) -> None:
        self.net = net.eval()
        self.input_size = int(net.prompt_encoder.input_image_size[0])
        self.click_channel = click_channel

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
            channel = self.click_channel if points is not None or mask_input is not None else 0
            logits, iou = self.net.mask_decoder(
                image_embeddings=embedding, image_pe=self.net.prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense, multimask_output=channel > 0,
            )
            logits, iou = logits[:, max(channel - 1, 0):], iou[:, max(channel - 1, 0):]  # multimask gives 1-3
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

    def __init__(self, net, click_channel: int = 0) -> None:
        self.reference = TorchReference(net, click_channel)
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


TOKENS = "output tokens"


def load_exported_decoder(net, decoder_onnx: Path) -> None:
    """Put the weights of an exported decoder file back into ``net.mask_decoder`` (in place).

    A shipped decoder trained for clicks (``distill.export_interactive``) exists only as ONNX. Re-exporting
    ``net``'s own decoder the same way names every stored tensor identically, and each is a parameter by
    name or, where the exporter folded it (a Linear weight transposed, a LayerNorm weight reshaped, the output
    tokens), a parameter its values identify; any other tensor must be equal in both files. So the PyTorch
    reference runs the very weights the runtime runs.
    """
    import tempfile

    import torch

    from .onnx_wrappers import export_decoder, sam_decoder_for_export

    parameters = {name: value for name, value in net.mask_decoder.named_parameters()}
    with tempfile.TemporaryDirectory() as folder:
        mine = Path(folder) / "decoder.onnx"
        export_decoder(sam_decoder_for_export(net), (256, 64, 64), str(mine))
        own = _stored_tensors(mine)
    theirs = _stored_tensors(decoder_onnx)
    if own.keys() != theirs.keys():
        raise ValueError(f"{decoder_onnx} was not exported from this decoder's layout")
    by_value: dict[bytes, list[tuple[str, bool]]] = {}
    for name, value in parameters.items():
        array = value.detach().numpy()
        by_value.setdefault(array.tobytes(), []).append((name, False))
        if array.ndim == 2:
            by_value.setdefault(array.T.tobytes(), []).append((name, True))
    tokens = ("iou_token.weight", "mask_tokens.weight")  # folded into one (1, 5, C) constant
    by_value.setdefault(torch.cat([parameters[t] for t in tokens]).detach().numpy().tobytes(), []).append((TOKENS, False))
    loaded = set()
    with torch.no_grad():
        for name, value in own.items():
            target = name.removeprefix("decoder.")
            matches = [(target, False)] if target in parameters else by_value.get(value.tobytes(), [])
            if not matches:
                if not np.array_equal(value, theirs[name]):
                    raise ValueError(f"{decoder_onnx}: {name} is no parameter and differs from this decoder's")
                continue
            if len(matches) > 1:
                raise ValueError(f"{decoder_onnx}: {name} matches several parameters {[m for m, _ in matches]}")
            target, transposed = matches[0]
            if target == TOKENS:
                rows = theirs[name].reshape(-1, theirs[name].shape[-1])
                parameters[tokens[0]].copy_(torch.from_numpy(rows[:1].copy()))
                parameters[tokens[1]].copy_(torch.from_numpy(rows[1:].copy()))
                loaded.update(tokens)
                continue
            array = theirs[name].T if transposed else theirs[name]
            parameters[target].copy_(torch.from_numpy(np.array(array)).reshape(parameters[target].shape))
            loaded.add(target)
    if loaded != parameters.keys():
        raise ValueError(f"{decoder_onnx}: no weights for {sorted(parameters.keys() - loaded)[:3]}")


def _stored_tensors(path: Path) -> dict[str, np.ndarray]:
    """Initializers and Constant-node values of an ONNX file, by name."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    tensors = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute[0].name == "value":
            tensors[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return tensors


def shipped_litemedsam(bundle: Path | None = None):
    """LiteMedSAM in PyTorch as a bundle ships it: its prompt encoder (click path retrained after export) and
    its decoder file's weights. Returns (net, click_channel) for :class:`TorchReference`."""
    import json

    import torch

    from imis_lite.bundle import MANIFEST, load_bundle

    from .teachers import load_litemedsam

    bundle = bundle or load_bundle("litemedsam").root
    manifest = json.loads((Path(bundle) / MANIFEST).read_text())
    net = load_litemedsam()
    encoder = net.prompt_encoder
    down = encoder.mask_downscaling
    with np.load(Path(bundle) / manifest["prompt_encoder"]) as weights, torch.no_grad():
        targets = {"not_a_point": encoder.not_a_point_embed.weight[0], "no_mask": encoder.no_mask_embed.weight[0],
                   "pe_gaussian": encoder.pe_layer.positional_encoding_gaussian_matrix,
                   **{f"mask_conv{i}_{p}": getattr(down[j], {"w": "weight", "b": "bias"}[p])
                      for i, j in enumerate((0, 3, 6)) for p in "wb"},
                   **{f"mask_ln{i}_{p}": getattr(down[j], {"w": "weight", "b": "bias"}[p])
                      for i, j in enumerate((1, 4)) for p in "wb"}}
        for name, target in targets.items():
            target.copy_(torch.from_numpy(weights[name]))
        for i, embedding in enumerate(encoder.point_embeddings):
            embedding.weight[0].copy_(torch.from_numpy(weights["point_embeddings"][i]))
    load_exported_decoder(net, Path(bundle) / manifest["variants"]["onnxruntime"]["fp32"]["decoder"][0])
    return net, int(manifest.get("click_channel", 0))
