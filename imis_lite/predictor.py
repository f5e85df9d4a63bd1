"""The Segmenter: embed an image once, then answer box, click and mask prompts with the decoder alone."""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass

import numpy as np

from .bundle import DEFAULT_MODEL, Bundle, load_bundle
from .click_refiner import refiner_inputs
from .click_start import ClickStartRanker, candidate_boxes, candidate_features
from .embedding_cache import EmbeddingCache
from .engines import Engine, create_engine
from .errors import ImageError, PromptError
from .geometry import ResizeLongestSide
from .options import DEFAULT_ARITHMETIC, DEFAULT_DEVICE, DEFAULT_ENGINE, DEFAULT_PRECISION, checked_run_options
from .preprocess import encoder_input
from .prompts import PromptEncoder


@dataclass(frozen=True)
class _Embedded:
    embedding: np.ndarray  # (1, C, h, w)
    geometry: ResizeLongestSide

    @property
    def nbytes(self) -> int:
        return self.embedding.nbytes


#: embeddings kept per Segmenter: 128 slices of LiteMedSAM's 256x64x64 float32, and what fits beside a laptop's
#: other work; a bigger embedding (a 768-channel teacher) simply keeps fewer
DEFAULT_CACHE_BYTES = 512 << 20


@dataclass(frozen=True)
class LoadedModel:
    """A bundle with its engines made: what a Segmenter runs. Build one with ``load_model``, or hand-make one
    (tests, an application that owns its sessions) from any engines that answer ``run``."""

    bundle: Bundle
    prompt_encoder: PromptEncoder
    encoder: Engine
    decoder: Engine
    engine: str
    precision: str
    click_refiner: Engine | None = None  # the bundle's click refiner (``imis_lite.click_refiner``), when it ships one
    click_start: ClickStartRanker | None = None  # its click-start ranker (``imis_lite.click_start``), when it ships one


def load_model(
    model: str = DEFAULT_MODEL,
    engine: str = DEFAULT_ENGINE,
    precision: str = DEFAULT_PRECISION,
    device: str = DEFAULT_DEVICE,
    threads: int | None = None,
    arithmetic: str = DEFAULT_ARITHMETIC,
) -> LoadedModel:
    """The bundle ``model`` (a name or a folder) with every file's sha256 checked and both engines created."""
    device = checked_run_options(engine, precision, arithmetic, device)
    bundle = load_bundle(model)
    variant = bundle.variant(engine, precision)
    paths = {role: [bundle.verified_path(f) for f in files] for role, files in variant.items()}
    prompt_encoder = PromptEncoder.from_npz(bundle.verified_path(bundle.manifest["prompt_encoder"]))
    refiner_file = bundle.manifest.get("click_refiner")
    click_refiner = None if refiner_file is None else create_engine(
        engine, bundle.verified_path(refiner_file), device, threads, arithmetic)
    start_file = bundle.manifest.get("click_start")
    click_start = None if start_file is None else ClickStartRanker(bundle.verified_path(start_file))
    return LoadedModel(bundle, prompt_encoder, create_engine(engine, paths["encoder"][0], device, threads, arithmetic),
                       create_engine(engine, paths["decoder"][0], device, threads, arithmetic), engine, precision,
                       click_refiner, click_start)


class Segmenter:
    """Interactive segmentation of 2D images (segment-anything's predictor, without torch).

    ``Segmenter("litemedsam", engine="openvino", precision="int8", threads=2)`` loads a bundle (``load_model``);
    ``Segmenter(loaded_model)`` runs one already made. Then ``set_image`` and any number of ``predict`` calls.
    Embeddings stay cached up to ``cache_bytes``, oldest out first, so going back to a slice already seen costs
    only the decoder. Masks are the logits above ``mask_threshold``: the bundle's
    (``distill.calibrate_threshold``) unless one is given; the click refiner's above its own threshold, chosen on
    held-out corpus objects at its export (``click_refiner_threshold``), unless ``mask_threshold`` is given.
    ``arithmetic="bf16"`` lets OpenVINO compute in bfloat16 on CPUs that do it natively (f32 with a notice
    elsewhere; docs/benchmarks.md).
    """

    def __init__(
        self,
        model: str | LoadedModel = DEFAULT_MODEL,
        engine: str = DEFAULT_ENGINE,
        precision: str = DEFAULT_PRECISION,
        device: str = DEFAULT_DEVICE,
        threads: int | None = None,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        mask_threshold: float | None = None,
        arithmetic: str = DEFAULT_ARITHMETIC,
    ) -> None:
        loaded = model if isinstance(model, LoadedModel) else load_model(model, engine, precision, device, threads, arithmetic)
        self.bundle: Bundle = loaded.bundle
        self.prompt_encoder = loaded.prompt_encoder
        self.encoder: Engine = loaded.encoder
        self.decoder: Engine = loaded.decoder
        self.click_refiner: Engine | None = loaded.click_refiner
        self.click_start: ClickStartRanker | None = loaded.click_start
        self.engine, self.precision = loaded.engine, loaded.precision
        self.mask_threshold = self.bundle.mask_threshold if mask_threshold is None else float(mask_threshold)
        refiner_threshold = self.bundle.manifest.get("click_refiner_threshold")
        self.click_refiner_threshold = (self.mask_threshold if mask_threshold is not None or refiner_threshold is None
                                        else float(refiner_threshold))
        self._cache: EmbeddingCache[_Embedded] = EmbeddingCache(self._encode, cache_bytes)
        self._current: _Embedded | None = None
        self._image: np.ndarray | None = None

    @property
    def cached_bytes(self) -> int:
        """Bytes of embeddings held now (at most ``cache_bytes``, or one embedding when that is larger)."""
        return self._cache.nbytes

    def describe(self) -> str:
        """One line naming model, engine, device and the precision that actually runs."""
        return (
            f"{self.bundle.name} on {self.engine} ({self.encoder.device}), weights {self.precision}, "
            f"arithmetic {self.encoder.inference_precision}"
        )

    # -- image ---------------------------------------------------------------------------------
    def set_image(self, image: np.ndarray) -> None:
        """Embed a 2D image: (H, W) grey or (H, W, 3) RGB, any numeric dtype, x = column."""
        image = np.asarray(image)
        self._current, self._image = self._cache.get(image), image

    def encode_ahead(self, images: Iterable[np.ndarray]) -> None:
        """Start embedding images that ``set_image`` will be given next, on the encoder's worker thread, so the
        encoder works while the decoder and the caller do (a 3D walk queues its coming slices)."""
        self._cache.ahead(np.asarray(image) for image in images)

    def cancel_ahead(self) -> None:
        """Forget queued ``encode_ahead`` images not started yet."""
        self._cache.cancel_ahead()

    def holding(self, images: int) -> AbstractContextManager[None]:
        """Keep at least ``images`` embeddings while inside (one job's slices, each encoded once), then
        ``cache_bytes`` again."""
        return self._cache.holding(images * self.embedding_bytes)

    @property
    def embedding_bytes(self) -> int:
        """Bytes of one image's embedding."""
        return int(np.prod(self.bundle.embedding_shape)) * 4

    def _encode(self, image: np.ndarray) -> _Embedded:
        tensor, geometry = encoder_input(image, self.bundle.input_size)
        return _Embedded(self.encoder.run({"image": tensor})["image_embeddings"], geometry)

    @property
    def image(self) -> np.ndarray:
        """The current image as given to ``set_image`` (corrections read its intensities)."""
        self._require_image()
        assert self._image is not None  # set with the embedding
        return self._image

    @property
    def embedding(self) -> np.ndarray:
        """(1, C, h, w) encoder output of the current image."""
        return self._require_image().embedding

    @property
    def image_shape(self) -> tuple[int, int]:
        """(height, width) of the current image."""
        return self._require_image().geometry.shape

    @property
    def input_size(self) -> int:
        """Side of the model's square input frame."""
        return self.bundle.input_size

    def _require_image(self) -> _Embedded:
        if self._current is None:
            raise ImageError("no image set: call set_image(image) before predict()")
        return self._current

    # -- prompts -------------------------------------------------------------------------------
    def predict(
        self,
        box: np.ndarray | list | None = None,
        points: np.ndarray | list | None = None,
        labels: np.ndarray | list | None = None,
        mask_input: np.ndarray | None = None,
        multimask: bool = False,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Masks for one prompt or a batch of prompts on the current image.

        box: (4,) or (N, 4) x0 y0 x1 y1, corners inclusive, in pixels of the original image (x = column).
        points: (K, 2) or (N, K, 2) x, y pixels; labels: (K,) or (N, K), 1 = foreground, 0 = background
        (default all 1). mask_input: low-res logits of an earlier call, (L, L), (1, L, L) or (N, 1, L, L).
        Returns masks (C, H, W) bool, scores (C,), low_res_logits (C, L, L), with C = 1, or 3 if
        ``multimask``; a batch of N prompts puts N in front: (N, C, H, W), (N, C), (N, C, L, L).
        """
        current = self._require_image()
        geometry = current.geometry
        boxes, point_xy, point_labels, masks, batched = self._normalise(box, points, labels, mask_input, geometry.shape)
        sparse, dense = self.prompt_encoder.encode(
            points=None if point_xy is None else geometry.apply_coords(point_xy),
            labels=point_labels,
            boxes=None if boxes is None else geometry.apply_boxes(boxes),
            masks=masks,
        )
        out = self.decoder.run(
            {"image_embeddings": current.embedding, "sparse_prompt": sparse, "dense_prompt": dense}
        )
        if multimask:
            low_res, scores = out["low_res_logits"][:, 1:], out["iou_scores"][:, 1:]
        elif self._one_click_alone(boxes, point_xy, masks):
            low_res, scores = _best_candidate(out["low_res_logits"][:, 1:], out["iou_scores"][:, 1:])
        else:
            chosen = self._single_output(corrective=point_xy is not None or masks is not None)
            low_res, scores = out["low_res_logits"][:, chosen], out["iou_scores"][:, chosen]
        result_masks = self.image_logits(low_res) > self.mask_threshold
        if not batched:
            return result_masks[0], scores[0], low_res[0]
        return result_masks, scores, low_res

    def refine_clicks(self, points: np.ndarray | list, labels: np.ndarray | list, previous_logits: np.ndarray,
                      box: np.ndarray | list | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(mask (H, W) bool, low-res logits (L, L)) of the bundle's click refiner for one object: all clicks so
        far (points (K, 2) x, y pixels of the image, labels (K,) 1 = foreground), the previous answer's low-res
        logits (L, L) (``predict``'s, or an earlier ``refine_clicks``') and the object's box, if any. Needs
        ``self.click_refiner``."""
        if self.click_refiner is None:
            raise PromptError(f"model '{self.bundle.name}' ships no click refiner")
        current = self._require_image()
        geometry, size = current.geometry, self.bundle.low_res_size
        boxes, point_xy, point_labels, _, _ = self._normalise(box, points, labels, None, geometry.shape)
        previous = np.asarray(previous_logits, np.float32)
        image, _ = encoder_input(self.image, self.bundle.input_size)
        scale = size / self.bundle.input_size
        inputs = refiner_inputs(image, current.embedding, previous, geometry.apply_coords(point_xy[0]) * scale,
                                point_labels[0], None if boxes is None else geometry.apply_boxes(boxes)[0] * scale)
        logits = self.click_refiner.run(inputs)["logits"][0, 0]
        return self.image_logits(logits) > self.click_refiner_threshold, logits

    def start_from_click(self, x: float, y: float) -> tuple[np.ndarray, float]:
        """(low-res logits (L, L), IoU estimate) of the candidate the bundle's click-start ranker puts first for
        one foreground click alone at (x, y), pixels of the image: the decoder's answer to the click or to one of
        the boxes centred on it (``imis_lite.click_start``). Needs ``self.click_start``."""
        if self.click_start is None:
            raise PromptError(f"model '{self.bundle.name}' ships no click-start ranker")
        current = self._require_image()
        geometry, size = current.geometry, self.bundle.low_res_size
        scale = size / self.bundle.input_size
        frame_x, frame_y = geometry.apply_coords(np.array([[x, y]], np.float64))[0] * scale
        content = np.floor(np.asarray(geometry.resized_shape) * scale).astype(int)
        boxes = candidate_boxes(frame_x, frame_y, (int(content[0]), int(content[1])))
        _, click_scores, click_logits = self.predict(points=[[x, y]], labels=[1])
        height, width = geometry.shape
        image_boxes = np.clip(geometry.inverse_boxes(boxes / scale), 0, [width - 1, height - 1, width - 1, height - 1])
        _, box_scores, box_logits = self.predict(box=image_boxes)
        logits = np.concatenate([click_logits, box_logits[:, 0]])
        scores = np.r_[click_scores, box_scores[:, 0]]
        image, _ = encoder_input(self.image, self.bundle.input_size)
        grey = np.asarray(image[0], np.float32).mean(0)
        features = candidate_features(grey, logits, scores, boxes, frame_x, frame_y, self.mask_threshold)
        best = int(np.argmax(self.click_start.rank(features)))
        return logits[best], float(scores[best])

    def image_logits(self, low_res_logits: np.ndarray) -> np.ndarray:
        """``predict``'s low-res logits (..., L, L) brought to the current image, (..., H, W): a soft mask."""
        geometry = self._require_image().geometry
        size = self.bundle.low_res_size
        low_res = np.asarray(low_res_logits, dtype=np.float32)
        logits = geometry.logits_to_image(low_res.reshape(-1, size, size), size)
        return logits.reshape(*low_res.shape[:-2], *geometry.shape)

    @property
    def takes_clicks_alone(self) -> bool:
        """Whether the bundle's decoder was trained for clicks without a box (``point_first`` in its manifest)."""
        return self.bundle.manifest.get("point_first") == "multimask"

    def _one_click_alone(self, boxes, points, masks) -> bool:
        """A single click with neither box nor mask is ambiguous (a part or the whole): a decoder trained for it
        answers with three candidates and its IoU estimate picks."""
        return self.takes_clicks_alone and boxes is None and masks is None and points is not None and points.shape[1] == 1

    def _single_output(self, corrective: bool) -> slice:
        """Mask output 0 answers a box; a bundle whose decoder was trained for correction names the output
        that answers clicks and mask input (``click_channel`` in its manifest)."""
        channel = int(self.bundle.manifest.get("click_channel", 0)) if corrective else 0
        return slice(channel, channel + 1)

    def _normalise(self, box, points, labels, mask_input, shape):
        """Validate prompts against the image and bring them to batched arrays."""
        height, width = shape
        batch_sizes = []
        batched = False
        boxes = None
        if box is not None:
            boxes = np.asarray(box, dtype=np.float64)
            batched |= boxes.ndim == 2
            if boxes.size == 0 or boxes.size % 4 or boxes.ndim > 2:
                raise PromptError(f"box must be x0 y0 x1 y1 or an (N, 4) array, got shape {np.shape(box)}")
            boxes = boxes.reshape(-1, 4)
            if boxes.shape[1] != 4:
                raise PromptError(f"box must be x0 y0 x1 y1 or an (N, 4) array, got shape {np.shape(box)}")
            _check_inside(boxes.reshape(-1, 2), width, height, "box corner")
            if np.any(boxes[:, 2] < boxes[:, 0]) or np.any(boxes[:, 3] < boxes[:, 1]):
                raise PromptError("box needs x1 >= x0 and y1 >= y0 (x0 y0 x1 y1)")
            batch_sizes.append(len(boxes))
        point_xy = point_labels = None
        if points is not None:
            point_xy = np.asarray(points, dtype=np.float64)
            if point_xy.ndim == 2:
                point_xy = point_xy[None]
            else:
                batched = True
            if point_xy.ndim != 3 or point_xy.shape[-1] != 2 or point_xy.shape[1] == 0:
                raise PromptError(f"points must be (K, 2) or (N, K, 2) x y pixels, got shape {np.shape(points)}")
            _check_inside(point_xy.reshape(-1, 2), width, height, "point")
            point_labels = np.ones(point_xy.shape[:2]) if labels is None else np.asarray(labels, dtype=np.float64)
            point_labels = point_labels.reshape(-1, point_xy.shape[1]) if point_labels.ndim == 1 else point_labels
            if point_labels.shape[-1] != point_xy.shape[1] or not np.isin(point_labels, (0, 1)).all():
                raise PromptError("labels must give 1 (foreground) or 0 (background) for each point")
            batch_sizes.append(len(point_xy))
        elif labels is not None:
            raise PromptError("labels given without points")
        masks = None
        if mask_input is not None:
            masks = np.asarray(mask_input, dtype=np.float32)
            size = self.bundle.low_res_size
            masks = masks.reshape(-1, 1, size, size) if masks.size % (size * size) == 0 else None
            if masks is None:
                raise PromptError(f"mask_input must be low-res logits of shape ({size}, {size}) per prompt")
            batch_sizes.append(len(masks))
        if not batch_sizes:
            raise PromptError("give at least one prompt: box, points or mask_input")
        n = max(batch_sizes)
        if any(b not in (1, n) for b in batch_sizes):
            raise PromptError(f"prompt batches disagree in size: {batch_sizes}")
        if boxes is not None and len(boxes) != n:
            boxes = np.repeat(boxes, n, axis=0)
        if point_xy is not None and len(point_xy) != n:
            point_xy, point_labels = np.repeat(point_xy, n, axis=0), np.repeat(point_labels, n, axis=0)
        if masks is not None and len(masks) != n:
            masks = np.repeat(masks, n, axis=0)
        return boxes, point_xy, point_labels, masks, batched or n > 1


def _best_candidate(logits: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per prompt, the candidate (N, C, L, L) with the highest IoU estimate (N, C), kept as (N, 1, ...)."""
    best = np.argmax(scores, axis=1)
    rows = np.arange(len(best))
    return logits[rows, best][:, None], scores[rows, best][:, None]


def _check_inside(xy: np.ndarray, width: int, height: int, what: str) -> None:
    if not np.isfinite(xy).all():
        raise PromptError(f"{what} coordinates must be finite numbers")
    outside = (xy[:, 0] < 0) | (xy[:, 0] > width - 1) | (xy[:, 1] < 0) | (xy[:, 1] > height - 1)
    if outside.any():
        x, y = xy[np.argmax(outside)]
        raise PromptError(f"{what} ({x:g}, {y:g}) lies outside the {width}x{height} image (x in 0..{width - 1}, y in 0..{height - 1})")
