"""Shared fixtures: the real cases in ../shared/data, the PyTorch LiteMedSAM reference, a small teacher cache."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

SHARED = Path(os.environ.get("IMIS_LITE_SHARED", Path(__file__).resolve().parents[1] / ".." / "shared")).resolve()
DATA = SHARED / "data"


def load_case(relative: str) -> dict:
    with np.load(DATA / relative, allow_pickle=False) as case:
        out = {key: case[key] for key in case.files}
    out["labels"] = json.loads(str(out["labels"]))
    return out


def cases_2d() -> list[str]:
    manifest = json.loads((DATA / "manifest.json").read_text())
    return [c["file"] for c in manifest["cases"] if c["ndim"] == 2]


def cases_2d_by_source() -> dict[str, list[str]]:
    """The 2D cases of each data source, in manifest order (a source: the file name up to its second underscore)."""
    by_source: dict[str, list[str]] = {}
    for name in cases_2d():
        by_source.setdefault("_".join(name.split("/")[-1].split("_")[:2]), []).append(name)
    return by_source


@pytest.fixture(scope="session")
def teacher():
    from imis_lite.distill.teachers import load_litemedsam

    return load_litemedsam()


@pytest.fixture(scope="session")
def shipped_teacher():
    """(net, click_channel): LiteMedSAM in PyTorch with the shipped bundle's prompt encoder and decoder."""
    from imis_lite.distill.reference import shipped_litemedsam

    return shipped_litemedsam()


@pytest.fixture(scope="session")
def reference(shipped_teacher):
    from imis_lite.distill.reference import TorchReference

    return TorchReference(*shipped_teacher)


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory):
    """Six un-augmented views of BTCV corpus slices (with organ labels) through the LiteMedSAM teacher."""
    from imis_lite.distill.corpus import DEFAULT_CORPUS
    from imis_lite.distill.teacher_cache import build_cache

    folder = tmp_path_factory.mktemp("cache")
    return build_cache(folder, DEFAULT_CORPUS.resolve(), "litemedsam", views=2, license_classes=("permissive",), seed=0, limit=6)
