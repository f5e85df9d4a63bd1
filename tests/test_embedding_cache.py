"""Embeddings by image content: each image encoded once, encoding ahead on one worker thread, and a whole
3D job over the shipped CT that encodes every slice it visits exactly once however many objects cross it."""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace

import numpy as np

from imis_lite.demo import sample_path
from imis_lite.embedding_cache import EmbeddingCache
from imis_lite.io import read_scan
from imis_lite.job import RawObject, resolve, segment_scan
from imis_lite.metrics import dice
from imis_lite.predictor import Segmenter, load_model

from .test_segmenter import _CountingEngine


@dataclass
class _Sum:
    value: float
    thread: str
    nbytes: int = 100


class _Encoder:
    """An exact encoder for the cache's rules: an image's sum, noting the thread it ran on and how often."""

    def __init__(self, release: threading.Event | None = None) -> None:
        self.calls: list[float] = []
        self.release = release

    def __call__(self, image: np.ndarray) -> _Sum:
        if self.release is not None:
            self.release.wait(5)
        self.calls.append(float(image.sum()))
        return _Sum(float(image.sum()), threading.current_thread().name)


def test_each_image_is_encoded_once_on_the_worker_and_the_oldest_goes_past_capacity():
    encode = _Encoder()
    cache = EmbeddingCache(encode, capacity_bytes=200)
    a, b, c = (np.full((4, 4), v, np.uint8) for v in (1, 2, 3))
    assert cache.get(a).value == 16 and cache.get(a.copy()).value == 16 and encode.calls == [16]
    assert cache.get(a).thread.startswith("imis-lite-encoder")
    cache.get(b), cache.get(c)  # a, the oldest, leaves: 100 bytes each, 200 kept
    assert cache.nbytes == 200
    cache.get(a)
    assert encode.calls == [16, 32, 48, 16]


def test_images_queued_ahead_are_encoded_once_and_queued_ones_not_started_can_be_cancelled():
    release = threading.Event()
    encode = _Encoder(release)
    cache = EmbeddingCache(encode, capacity_bytes=10_000)
    images = [np.full((2, 2), v, np.uint8) for v in range(1, 5)]
    cache.ahead(images[:3])
    cache.ahead(images[:2])  # already queued: nothing more
    cache.cancel_ahead()  # the first is running (held by ``release``), the other two had not started
    release.set()
    assert cache.get(images[0]).value == 4 and encode.calls == [4]
    cache.ahead(images[1:])
    assert [cache.get(image).value for image in images[1:]] == [8, 12, 16] and encode.calls == [4, 8, 12, 16]


def test_holding_keeps_a_jobs_images_then_the_usual_capacity():
    cache = EmbeddingCache(_Encoder(), capacity_bytes=100)
    with cache.holding(300):
        for v in range(3):
            cache.get(np.full((2, 2), v, np.uint8))
        assert cache.nbytes == 300
    assert cache.nbytes == 100 and cache.capacity_bytes == 100


def test_two_objects_over_the_same_slices_encode_each_slice_once_and_answer_as_without_the_cache():
    scan = read_scan(sample_path("example_ct_sm.nii.gz"))
    loaded = load_model("effvit-s-hr", threads=2)
    counting = _CountingEngine(loaded.encoder)
    liver = RawObject(box=[41, 25, 8, 105, 86, 21])
    overlapping = RawObject(box=[45, 30, 12, 100, 80, 25])
    prompts = [resolve(scan, raw) for raw in (liver, overlapping)]
    one = Segmenter(replace(loaded, encoder=counting), cache_bytes=1)  # keeps one embedding outside a job
    labels = segment_scan(one, scan, prompts)
    visited = set(range(8, 22)) | set(range(12, 26))
    assert counting.calls <= len(visited)  # a walk may end before its box does, never encodes a slice twice
    assert one.cached_bytes <= one.embedding_bytes  # the job's hold ends with it
    alone = [segment_scan(Segmenter(loaded), scan, [prompt]) == 1 for prompt in prompts]
    assert dice(labels == 2, alone[1]) == 1.0
    assert dice((labels == 1) | ((labels == 2) & alone[0]), alone[0]) == 1.0


def test_a_click_alone_on_a_volume_walks_from_its_slice_through_the_whole_volume():
    scan = read_scan(sample_path("example_ct_sm.nii.gz"))
    prompt = resolve(scan, RawObject(points=[[70, 55, 15]], neg_points=[[10, 10, 15]]))
    assert prompt.slice_index == 15 and prompt.z_range == (0, scan.data.shape[2] - 1) and prompt.box is None
