import numpy as np
import pytest

from imis_lite.errors import ImageError
from imis_lite.geometry import ResizeLongestSide
from imis_lite.preprocess import encoder_input


@pytest.mark.parametrize("shape", [(512, 512), (181, 258), (300, 100), (256, 256)])
def test_coords_and_boxes_round_trip(shape):
    geometry = ResizeLongestSide(256, shape)
    rng = np.random.default_rng(0)
    boxes = rng.uniform(0, min(shape) - 1, size=(5, 4)).astype(np.float32)
    np.testing.assert_allclose(geometry.inverse_boxes(geometry.apply_boxes(boxes)), boxes, rtol=1e-5, atol=1e-4)
    coords = rng.uniform(0, min(shape) - 1, size=(3, 7, 2))
    np.testing.assert_allclose(geometry.inverse_coords(geometry.apply_coords(coords)), coords, rtol=1e-5, atol=1e-4)


def test_resized_shape_keeps_aspect_and_longest_side():
    geometry = ResizeLongestSide(256, (181, 258))
    assert geometry.resized_shape == (180, 256)
    assert ResizeLongestSide(256, (300, 100)).resized_shape == (256, 85)


def test_low_res_round_trip_puts_a_square_back_where_it_was():
    geometry = ResizeLongestSide(256, (200, 400))
    mask = np.zeros((1, 200, 400), np.float32)
    mask[0, 50:150, 100:300] = 1
    back = geometry.logits_to_image(geometry.image_to_low_res(mask, 256) * 2 - 1, 256) > 0
    assert (back[0] == mask[0].astype(bool)).mean() > 0.99


def test_encoder_input_matches_litemedsam_recipe_on_a_known_image():
    # 4x2 image, longest side 4 -> x64: a left/right split must stay a left/right split, padded below.
    image = np.zeros((2, 4), np.uint8)
    image[:, 2:] = 200
    tensor, geometry = encoder_input(image, 256)
    assert tensor.shape == (1, 3, 256, 256) and tensor.dtype == np.float32
    assert geometry.resized_shape == (128, 256)
    assert tensor[0, :, :128, :128].max() == 0 and tensor[0, :, :128, 128:].min() == 1
    assert tensor[0, :, 128:, :].max() == 0  # padding


def test_any_dtype_gives_the_same_input_after_min_max():
    image = np.arange(64 * 48, dtype=np.float64).reshape(64, 48) * 0.01 - 5
    a, _ = encoder_input(image, 256)
    b, _ = encoder_input(image.astype(np.float32) * 3 + 7, 256)
    np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.parametrize(
    "image, message",
    [
        (np.full((32, 32), 7.0), "constant"),
        (np.array([[0, np.nan], [1, 2]] * 8, dtype=np.float32), "NaN"),
        (np.zeros((4, 4, 4, 4)), "shape"),
    ],
)
def test_bad_images_are_refused_with_a_clear_error(image, message):
    with pytest.raises(ImageError, match=message):
        encoder_input(image, 256)
