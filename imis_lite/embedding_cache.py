"""Image embeddings by content: each image is encoded once while it is kept, and can be encoded ahead.

All encoding runs on one worker thread, so an engine is never run from two threads at once (an OpenVINO infer
request is not re-entrant) and an image asked for while the worker is already encoding it waits for that answer
instead of encoding it twice. Entries are dropped least recently used first once their bytes pass the capacity.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Generic, Protocol, TypeVar

import numpy as np


class _Sized(Protocol):
    @property
    def nbytes(self) -> int: ...


Entry = TypeVar("Entry", bound=_Sized)


def image_key(image: np.ndarray) -> str:
    """A digest of an array's bytes, shape and dtype: equal images share one embedding."""
    digest = hashlib.blake2b(np.ascontiguousarray(image).tobytes(), digest_size=16)
    digest.update(f"{image.shape}{image.dtype}".encode())
    return digest.hexdigest()


class EmbeddingCache(Generic[Entry]):
    """``get(image)`` returns ``encode(image)``, from memory when the same image was encoded before;
    ``ahead(images)`` queues images a caller will ask for next (a 3D walk's coming slices)."""

    def __init__(self, encode: Callable[[np.ndarray], Entry], capacity_bytes: int) -> None:
        self._encode = encode
        self.capacity_bytes = int(capacity_bytes)
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        self._bytes = 0  # of the entries kept
        self._pending: dict[str, Future] = {}
        self._lock = threading.Lock()
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="imis-lite-encoder")

    @property
    def nbytes(self) -> int:
        with self._lock:
            return self._bytes

    def get(self, image: np.ndarray) -> Entry:
        key = image_key(image)
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
        return self._submit(key, image).result()

    def ahead(self, images: Iterable[np.ndarray]) -> None:
        """Queue each image not kept or queued yet, in order, behind what the worker already has."""
        for image in images:
            key = image_key(image)
            with self._lock:
                known = key in self._entries
            if not known:
                self._submit(key, image)

    def cancel_ahead(self) -> None:
        """Drop queued images the worker has not started (a walk that ended early will not ask for them)."""
        with self._lock:
            for key, future in list(self._pending.items()):
                if future.cancel():
                    del self._pending[key]

    @contextmanager
    def holding(self, capacity_bytes: int) -> Iterator[None]:
        """Keep at least ``capacity_bytes`` for the duration (one job's slices), then the usual capacity again."""
        usual = self.capacity_bytes
        self.capacity_bytes = max(usual, int(capacity_bytes))
        try:
            yield
        finally:
            self.capacity_bytes = usual
            with self._lock:
                self._evict()

    def _submit(self, key: str, image: np.ndarray) -> Future:
        with self._lock:
            future = self._pending.get(key)
            if future is None:
                future = self._worker.submit(self._encode_and_keep, key, image)
                self._pending[key] = future
        return future

    def _encode_and_keep(self, key: str, image: np.ndarray) -> Entry:
        try:
            entry = self._encode(image)
        except BaseException:
            with self._lock:
                self._pending.pop(key, None)
            raise
        with self._lock:  # kept before it stops being pending: no moment when a second encode would start
            self._entries[key] = entry
            self._bytes += entry.nbytes
            self._pending.pop(key, None)
            self._evict()
        return entry

    def _evict(self) -> None:
        """Drop the oldest entries while over capacity, always keeping the newest (called with the lock held)."""
        while len(self._entries) > 1 and self._bytes > self.capacity_bytes:
            self._bytes -= self._entries.popitem(last=False)[1].nbytes
