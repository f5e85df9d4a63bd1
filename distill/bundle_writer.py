"""Write a model bundle's manifest and move a finished bundle into place atomically."""

from __future__ import annotations

import json
import shutil
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


def install_bundle(staging: Path, destination: Path, force: bool) -> None:
    if destination.exists():
        if not force:
            raise FileExistsError(f"{destination} exists; pass --force to replace it")
        shutil.rmtree(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(staging), str(destination))
