"""DSC and NSD as the CVPR 2024 laptop challenge computes them.

NSD uses DeepMind's ``surface-distance`` (the library the challenge's own evaluation script imports), which
weights surface elements by their area and handles anisotropic spacing; we only add the challenge's
conventions for empty masks.
"""

from __future__ import annotations

import numpy as np

from imis_lite.metrics import dice

NSD_TOLERANCE_MM = 2.0


def nsd(prediction: np.ndarray, truth: np.ndarray, spacing: tuple[float, ...], tolerance: float = NSD_TOLERANCE_MM) -> float:
    """Normalised surface Dice at ``tolerance`` mm; 1.0 when both masks are empty, 0.0 when only one is."""
    from surface_distance import compute_surface_dice_at_tolerance, compute_surface_distances

    prediction, truth = np.asarray(prediction, bool), np.asarray(truth, bool)
    if not prediction.any() and not truth.any():
        return 1.0
    if not prediction.any() or not truth.any():
        return 0.0
    distances = compute_surface_distances(truth, prediction, tuple(float(s) for s in spacing))
    return float(compute_surface_dice_at_tolerance(distances, tolerance))


__all__ = ["dice", "nsd", "NSD_TOLERANCE_MM"]
