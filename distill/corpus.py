"""Read ../shared/corpus: the only images this project trains or calibrates on.

Selection is by ``license_class`` so that what ships records exactly which classes it was built from.
"""

from __future__ import annotations

import csv
import random
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

DEFAULT_CORPUS = Path(__file__).resolve().parents[1] / ".." / "shared" / "corpus"


@dataclass(frozen=True)
class CorpusImage:
    path: Path
    mask_path: Path | None
    source: str
    modality: str
    license_class: str
    key: str  # path inside the corpus: the name a cache's item list uses

    def image(self) -> np.ndarray:
        """(H, W) uint8 grey or (H, W, 3) uint8 RGB."""
        image = cv2.imread(str(self.path), cv2.IMREAD_UNCHANGED)
        if image is None:
            raise OSError(f"cannot read {self.path}")
        if image.ndim == 3:
            image = cv2.cvtColor(image[:, :, :3], cv2.COLOR_BGR2RGB)
        return image

    def mask(self) -> np.ndarray:
        """(H, W) uint8 label map, 0 = background."""
        assert self.mask_path is not None
        return cv2.imread(str(self.mask_path), cv2.IMREAD_UNCHANGED)


def read_corpus(root: str | Path, license_classes: tuple[str, ...] = ("permissive",)) -> list[CorpusImage]:
    root = Path(root)
    manifest = root / "manifest.csv"
    if not manifest.is_file():
        raise FileNotFoundError(f"{manifest} not found: point --corpus at the shared corpus folder")
    with open(manifest, newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [
        CorpusImage(
            root / row["path"],
            root / row["mask_path"] if row["has_mask"] == "1" and row["mask_path"] else None,
            row["source"],
            row["modality"],
            row["license_class"],
            row["path"],
        )
        for row in rows
        if row["license_class"] in license_classes
    ]


def source_of_key(key: str) -> str:
    """The source a cache key belongs to: ``images/<source>/...`` in the corpus, ``user/<folder>/...`` for a user's."""
    return "/".join(key.split("/")[:2])


def held_out_keys(keys: Iterable[str], every: int) -> set[str]:
    """Every ``every``-th image of each source by sorted corpus path (its first included), the images training
    never sees (its validation views), and where the runtime's mask threshold is chosen. Per source, so a source
    of ten images is validated too; a source of one image is not held out, it would have nothing left to train."""
    by_source: dict[str, list[str]] = {}
    for key in sorted(set(keys)):
        by_source.setdefault(source_of_key(key), []).append(key)
    return {key for group in by_source.values() if len(group) > 1 for key in group[::every]}


def cap_per_source(images: list[CorpusImage], cap: int, every: int) -> list[CorpusImage]:
    """At most ``cap`` images of each source, spread evenly over its sorted paths, always keeping its held-out
    images (``held_out_keys``): the large sources (PSFHS, HC18, Kvasir) then do not fill a cache the teacher
    takes ~1 s a view to fill, and validation still sees every source."""
    held_out = held_out_keys((image.key for image in images), every)
    by_source: dict[str, list[CorpusImage]] = {}
    for image in sorted(images, key=lambda image: image.key):
        by_source.setdefault(image.source, []).append(image)
    kept: list[CorpusImage] = []
    for group in by_source.values():
        validation = [image for image in group if image.key in held_out]
        rest = [image for image in group if image.key not in held_out]
        room = max(cap - len(validation), 0)
        stride = max(1, -(-len(rest) // room)) if room else len(rest) + 1
        kept += validation + rest[::stride][:room]
    return sorted(kept, key=lambda image: image.key)


def calibration_and_validation(root: str | Path, calibration_count: int, validation_count: int,
                               seed: int) -> tuple[list[CorpusImage], list[CorpusImage]]:
    """Permissive images for INT8 calibration, and disjoint masked ones for the export-time parity check."""
    images = read_corpus(root, ("permissive",))
    calibration = stratified_sample(images, calibration_count, seed)
    held_out = [i for i in images if i.mask_path is not None and i not in calibration]
    return calibration, stratified_sample(held_out, validation_count, seed + 1)


def stratified_sample(images: list[CorpusImage], count: int, seed: int) -> list[CorpusImage]:
    """``count`` images spread over sources round-robin, so small sources are not drowned by large ones."""
    rng = random.Random(seed)
    by_source: dict[str, list[CorpusImage]] = {}
    for image in images:
        by_source.setdefault(image.source, []).append(image)
    for group in by_source.values():
        rng.shuffle(group)
    picked: list[CorpusImage] = []
    while len(picked) < count and any(by_source.values()):
        for source in sorted(by_source):
            if by_source[source] and len(picked) < count:
                picked.append(by_source[source].pop())
    return picked
