"""Write a model bundle's manifest and move a finished bundle into place atomically."""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from imis_lite.bundle import MANIFEST, sha256_of


def prompt_encoder_arrays(prompt_encoder) -> dict[str, Any]:
    """SAM ``PromptEncoder`` parameters under the names :mod:`imis_lite.prompts` reads."""
    down = prompt_encoder.mask_downscaling
    arrays = {
        "pe_gaussian": prompt_encoder.pe_layer.positional_encoding_gaussian_matrix,
        "point_embeddings": [e.weight[0] for e in prompt_encoder.point_embeddings],
        "not_a_point": prompt_encoder.not_a_point_embed.weight[0],
        "no_mask": prompt_encoder.no_mask_embed.weight[0],
        "mask_conv0_w": down[0].weight, "mask_conv0_b": down[0].bias,
        "mask_ln0_w": down[1].weight, "mask_ln0_b": down[1].bias,
        "mask_conv1_w": down[3].weight, "mask_conv1_b": down[3].bias,
        "mask_ln1_w": down[4].weight, "mask_ln1_b": down[4].bias,
        "mask_conv2_w": down[6].weight, "mask_conv2_b": down[6].bias,
    }
    import numpy as np
    import torch

    out = {}
    for key, value in arrays.items():
        if isinstance(value, list):
            value = torch.stack(value)
        out[key] = value.detach().cpu().numpy().astype(np.float32)
    out["image_embedding_size"] = np.array(prompt_encoder.image_embedding_size, dtype=np.int64)
    out["input_image_size"] = np.array(prompt_encoder.input_image_size, dtype=np.int64)
    return out


def write_manifest(folder: Path, manifest: dict[str, Any], extra: dict[str, dict] | None = None) -> None:
    """Fill ``files`` with the sha256 and size of every file in the folder (plus ``extra`` entries for files
    shared with a sibling bundle, as ``../<bundle>/<file>``), then write manifest.json."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name not in (MANIFEST,))
    manifest["files"] = {
        str(p.relative_to(folder)): {"sha256": sha256_of(p), "bytes": p.stat().st_size} for p in files
    }
    manifest["files"].update(extra or {})
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")


def rewrite_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    """``write_manifest`` for a bundle changed after its export: its own files and the sibling files it already
    lists (``../<bundle>/<file>``, e.g. a shared decoder that may just have been replaced) hashed anew."""
    shared = {name: {"sha256": sha256_of(folder / name), "bytes": (folder / name).stat().st_size}
              for name in manifest["files"] if name.startswith("../")}
    write_manifest(folder, manifest, shared)


def export_main(parser: argparse.ArgumentParser, argv: list[str] | None, build: Callable[[argparse.Namespace], dict]) -> int:
    """What every bundle export shares: corpus/calibration/validation/seed/force options, the refusal to replace
    a bundle without --force, and the parity report on stdout. ``parser`` brings ``--out`` and its own options."""
    from .corpus import DEFAULT_CORPUS

    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--calibration-images", type=int, default=64)
    parser.add_argument("--validation-images", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--force", action="store_true", help="replace an existing bundle")
    args = parser.parse_args(argv)
    args.corpus = args.corpus.resolve()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.out.exists() and not args.force:
        print(f"error: {args.out} exists; pass --force to replace it", file=sys.stderr)
        return 1
    for key, value in build(args)["parity"].items():
        print(f"{key}: {value}")
    return 0


def install_bundle(staging: Path, destination: Path, force: bool) -> None:
    if destination.exists():
        if not force:
            raise FileExistsError(f"{destination} exists; pass --force to replace it")
        shutil.rmtree(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(staging), str(destination))
