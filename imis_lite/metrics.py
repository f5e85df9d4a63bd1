"""Overlap metrics on binary masks: DSC, and NSD as the CVPR 2024 laptop challenge computes it.

NSD uses DeepMind's ``surface-distance`` (the library the challenge's own evaluation script imports, in the
``bench``, ``distill`` and ``test`` extras, imported only when NSD is asked for), which weights surface elements
by their area and handles anisotropic spacing; we only add the challenge's conventions for empty masks.
"""

from __future__ import annotations

import numpy as np


def dice(prediction: np.ndarray, truth: np.ndarray) -> float:
    """Dice similarity coefficient of two boolean masks; 1.0 when both are empty (nothing to find, nothing found)."""
    prediction, truth = np.asarray(prediction, bool), np.asarray(truth, bool)
    total = prediction.sum() + truth.sum()
    if total == 0:
        return 1.0
    return float(2.0 * np.logical_and(prediction, truth).sum() / total)


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
