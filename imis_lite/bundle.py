"""Model bundles: discovery, manifest, and sha256 verification of every file before it is used.

A bundle is a folder ``<name>/`` holding ``manifest.json`` and the files it lists. Bundles are found in the
folders named by ``IMIS_LITE_MODELS`` (``os.pathsep``-separated, for user-supplied models) and then in the
weights shipped with the package.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from .errors import BundleError

MODELS_ENV = "IMIS_LITE_MODELS"
DEFAULT_MODEL = "effvit-s-hr"
MANIFEST = "manifest.json"


def shipped_weights_dir() -> Path:
    """The installed ``imis_lite.weights``; or the checkout's ``weights/`` when Python, started in a clone after
    a plain ``pip install .``, imports ``imis_lite`` from the clone's source folder, which has no weights."""
    try:
        return Path(str(resources.files("imis_lite.weights")))
    except ModuleNotFoundError:
        return Path(__file__).resolve().parents[1] / "weights"


def search_dirs() -> list[Path]:
    extra = [Path(p).expanduser() for p in os.environ.get(MODELS_ENV, "").split(os.pathsep) if p]
    return extra + [shipped_weights_dir()]


def available_models() -> dict[str, Path]:
    """Bundle name -> folder, the first found along :func:`search_dirs` winning."""
    found: dict[str, Path] = {}
    for folder in search_dirs():
        if folder.is_dir():
            for manifest in sorted(folder.glob(f"*/{MANIFEST}")):
                found.setdefault(manifest.parent.name, manifest.parent)
    return found


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class Bundle:
    name: str
    root: Path
    manifest: dict[str, Any]

    @property
    def input_size(self) -> int:
        return int(self.manifest["input_size"])

    @property
    def low_res_size(self) -> int:
        return int(self.manifest["low_res_size"])

    @property
    def embedding_shape(self) -> tuple[int, ...]:
        return tuple(self.manifest["embedding_shape"])

    @property
    def mask_threshold(self) -> float:
        """Logit above which a pixel is in the mask (``distill.calibrate_threshold`` sets it; SAM's is 0)."""
        return float(self.manifest.get("mask_threshold", 0.0))

    def precisions(self, engine: str) -> list[str]:
        return sorted(self.manifest["variants"].get(engine, {}))

    def verified_path(self, relative: str) -> Path:
        """Path of a listed file after checking its sha256 against the manifest."""
        entry = self.manifest["files"].get(relative)
        if entry is None:
            raise BundleError(f"model '{self.name}': {relative} is not listed in its manifest")
        path = self._locate(relative)
        if not path.is_file():
            raise BundleError(f"model '{self.name}': {path} is missing; reinstall imis-lite")
        if sha256_of(path) != entry["sha256"]:
            raise BundleError(f"model '{self.name}': {path} fails its sha256 check (corrupted or tampered); reinstall imis-lite")
        return path

    def _locate(self, relative: str) -> Path:
        """``../<bundle>/<file>`` names a file shared with another bundle (a student keeps its teacher's
        decoder): the sibling folder if present, else that bundle wherever it is installed."""
        path = self.root / relative
        parts = Path(relative).parts
        if parts[0] == ".." and len(parts) > 2 and not path.is_file():
            other = available_models().get(parts[1])
            if other is not None:
                return other.joinpath(*parts[2:])
        return path

    def variant(self, engine: str, precision: str) -> dict[str, str]:
        """Files (role -> relative path) that make up one engine/precision variant."""
        by_precision = self.manifest["variants"].get(engine)
        if not by_precision or precision not in by_precision:
            raise BundleError(
                f"model '{self.name}' has no {precision} variant for {engine}; "
                f"available: {', '.join(self.precisions(engine)) or 'none'}"
            )
        return dict(by_precision[precision])


def load_bundle(name: str) -> Bundle:
    """Bundle by name (see :func:`available_models`) or by a folder path holding a manifest."""
    folder = Path(name).expanduser()
    if not (folder / MANIFEST).is_file():
        models = available_models()
        if name not in models:
            raise BundleError(f"unknown model '{name}'; available: {', '.join(sorted(models)) or 'none'}")
        folder = models[name]
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError) as error:
        raise BundleError(f"cannot read {folder / MANIFEST}: {error}") from None
    return Bundle(manifest.get("name", folder.name), folder, manifest)
