"""Training views: the coarser-resolution and narrow-window augmentations keep labels on the image's grid."""

from __future__ import annotations

import numpy as np
from imis_lite.distill import views


def _phantom() -> tuple[np.ndarray, np.ndarray]:
    """A 200x160 slice: dark background, a mid-grey body, a brighter organ labelled 3 off-centre (its edges on
    multiples of 4, so a 4x coarser grid holds it exactly)."""
    image = np.zeros((200, 160, 3), np.uint8)
    image[20:180, 10:150] = 110
    image[40:100, 88:128] = 150
    mask = np.zeros((200, 160), np.uint8)
    mask[40:100, 88:128] = 3
    return image, mask


def test_coarser_view_shrinks_image_and_labels_together():
    image, mask = _phantom()
    small, small_mask = views._coarser(image, mask, 4.0)
    assert small.shape[:2] == small_mask.shape == (50, 40)
    ys, xs = np.nonzero(small_mask == 3)
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (10, 24, 22, 31)  # the organ's place, a quarter the size
    assert small[ys, xs, 0].min() == 150  # the labelled pixels are the organ's, not the body's


def test_coarser_view_never_below_32_pixels_nor_enlarges():
    image, mask = _phantom()
    small, small_mask = views._coarser(image, mask, 20.0)
    assert small.shape[:2] == small_mask.shape == (40, 32)  # 32 on the shorter side
    same, same_mask = views._coarser(image[:30, :40], mask[:30, :40], 2.0)
    assert same.shape[:2] == (30, 40) and same_mask.shape == (30, 40)  # already below 32: left as it is


def test_narrow_window_stretches_the_body_grey_level(monkeypatch):
    monkeypatch.setattr(views, "NARROW_WINDOW_CHANCE", 1.0)
    image, _ = _phantom()

    class NoOtherChange:
        """A generator whose draws switch every other intensity change off and centre the window exactly."""

        def random(self) -> float:
            return 0.999

        def uniform(self, low: float, high: float) -> float:
            return 0.0 if low < 0 else 0.1

    result = views._intensity(image.astype(np.float32) / 255, NoOtherChange())  # type: ignore[arg-type]
    body, organ, background = result[150, 30, 0], result[60, 100, 0], result[5, 5, 0]
    assert abs(body - 0.5) < 1e-6 and organ == 1.0 and background == 0.0  # 40 grey levels now span half the range
