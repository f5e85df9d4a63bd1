"""Encoder and decoder latency, every variant in one process, interleaved so machine drift cancels."""

from __future__ import annotations

import time

import numpy as np


def measure(segmenters: dict[str, object], image: np.ndarray, box: np.ndarray, rounds: int) -> dict[str, dict[str, list[float]]]:
    """Label -> {"encoder_ms": [...], "decoder_ms": [...]}; each round runs every variant once.

    Each round perturbs one pixel, so the image differs and no embedding cache can answer; round 0 warms up.
    """
    times = {label: {"encoder_ms": [], "decoder_ms": []} for label in segmenters}
    for round_index in range(rounds + 1):
        fresh = image.copy()
        fresh.flat[round_index % fresh.size] ^= 1
        for label, segmenter in segmenters.items():
            started = time.perf_counter()
            segmenter.set_image(fresh)
            encoded = time.perf_counter()
            segmenter.predict(box=box)
            decoded = time.perf_counter()
            if round_index:
                times[label]["encoder_ms"].append(1000 * (encoded - started))
                times[label]["decoder_ms"].append(1000 * (decoded - encoded))
    return times
