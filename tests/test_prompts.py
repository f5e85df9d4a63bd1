"""The NumPy prompt encoder against SAM's PyTorch one, with LiteMedSAM's real weights."""

import numpy as np
import pytest
from imis_lite.distill.bundle_writer import prompt_encoder_arrays

from imis_lite.prompts import PromptEncoder

torch = pytest.importorskip("torch")  # installed by the `distill` extra, which CI installs


@pytest.fixture(scope="module")
def encoders(teacher):
    return teacher.prompt_encoder, PromptEncoder(prompt_encoder_arrays(teacher.prompt_encoder))


def _torch(encoder, **prompts):
    tensors = {k: None if v is None else torch.from_numpy(np.asarray(v)) for k, v in prompts.items()}
    points = None if tensors["points"] is None else (tensors["points"], tensors["labels"])
    with torch.no_grad():
        sparse, dense = encoder(points=points, boxes=tensors["boxes"], masks=tensors["masks"])
    return sparse.detach().numpy(), dense.detach().numpy()


RNG = np.random.default_rng(0)
CASES = {
    "boxes": dict(points=None, labels=None, boxes=RNG.uniform(0, 255, (3, 4)).astype(np.float32), masks=None),
    "points": dict(points=RNG.uniform(0, 255, (2, 5, 2)).astype(np.float32),
                   labels=np.array([[1, 0, 1, 1, 0], [0, 0, 1, 1, 1]], np.float32), boxes=None, masks=None),
    "points_and_box": dict(points=RNG.uniform(0, 255, (1, 2, 2)).astype(np.float32), labels=np.array([[1, 0]], np.float32),
                           boxes=np.array([[10, 20, 200, 180]], np.float32), masks=None),
    "mask": dict(points=None, labels=None, boxes=np.array([[10, 20, 200, 180]], np.float32),
                 masks=RNG.normal(0, 8, (1, 1, 256, 256)).astype(np.float32)),
}


@pytest.mark.parametrize("name", CASES)
def test_numpy_prompt_encoder_equals_pytorch(encoders, name):
    torch_encoder, numpy_encoder = encoders
    expected_sparse, expected_dense = _torch(torch_encoder, **CASES[name])
    sparse, dense = numpy_encoder.encode(**CASES[name])
    assert sparse.shape == expected_sparse.shape and dense.shape == expected_dense.shape
    assert np.abs(sparse - expected_sparse).max() < 1e-4
    assert np.abs(dense - expected_dense).max() < 1e-4


def test_dense_positional_encoding_equals_pytorch(encoders):
    torch_encoder, numpy_encoder = encoders
    with torch.no_grad():
        expected = torch_encoder.get_dense_pe().numpy()
    assert np.abs(numpy_encoder.dense_positional_encoding() - expected).max() < 1e-4
