"""Bundle discovery and the sha256 check that guards every shipped weight file."""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from imis_lite import Segmenter
from imis_lite.bundle import MODELS_ENV, available_models, load_bundle
from imis_lite.demo import sample_path
from imis_lite.errors import BundleError, EngineError


def test_shipped_bundle_is_found_and_complete():
    bundle = load_bundle("litemedsam")
    assert "litemedsam" in available_models()
    for relative in bundle.manifest["files"]:
        bundle.verified_path(relative)
    assert bundle.embedding_shape == (256, 64, 64)
    assert set(bundle.precisions("onnxruntime")) == {"fp32", "int8"} == set(bundle.precisions("openvino"))


def test_weights_stay_light():
    bundle = load_bundle("litemedsam")
    sizes = [entry["bytes"] for entry in bundle.manifest["files"].values()]
    assert max(sizes) < 40e6


@pytest.fixture()
def bundle_copy(tmp_path, monkeypatch):
    source = load_bundle("litemedsam").root
    copy = tmp_path / "models" / "copied"
    shutil.copytree(source, copy)
    monkeypatch.setenv(MODELS_ENV, str(tmp_path / "models"))
    return copy


@pytest.mark.parametrize("victim", ["decoder.onnx", "prompt_encoder.npz", "openvino/encoder.int8.bin"])
def test_a_corrupted_file_is_refused_with_one_line(bundle_copy, victim):
    path = bundle_copy / victim
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    engine, precision = ("openvino", "int8") if victim.startswith("openvino") else ("onnxruntime", "fp32")
    with pytest.raises(BundleError) as caught:
        Segmenter("copied", engine=engine, precision=precision)
    message = str(caught.value)
    assert "sha256" in message and victim.split("/")[-1] in message and "\n" not in message


def test_user_bundles_are_found_through_the_environment(bundle_copy):
    assert available_models()["copied"] == bundle_copy


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(BundleError, match="available: .*litemedsam"):
        Segmenter("no-such-model")
    with pytest.raises(EngineError, match="valid: onnxruntime, openvino"):
        Segmenter(engine="tensorrt")
    with pytest.raises(ValueError, match="valid: fp32, int8"):
        Segmenter(precision="fp8")


def test_python_started_in_the_clone_after_a_plain_install_still_finds_the_shipped_weights():
    # After `pip install .`, Python started in the clone imports ./imis_lite (the working directory comes first
    # on sys.path), where imis_lite.weights does not exist. Drop the editable install's finder to be in that state.
    code = """
import importlib.util, sys
sys.meta_path[:] = [f for f in sys.meta_path if not getattr(f, "__module__", "").startswith("__editable__")]
assert importlib.util.find_spec("imis_lite.weights") is None, "the source-folder state was not reached"
import numpy as np
from imis_lite import Segmenter
from imis_lite.demo import sample_path
case = np.load(sample_path())
seg = Segmenter("litemedsam", engine="onnxruntime", threads=1)
seg.set_image(case["imgs"])
masks, _, _ = seg.predict(box=np.array([57, 175, 354, 393]))
print(int(masks.sum()))
"""
    repo = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    seg = Segmenter("litemedsam", engine="onnxruntime", threads=1)  # the same, through the installed package
    seg.set_image(np.load(sample_path())["imgs"])
    masks, _, _ = seg.predict(box=np.array([57, 175, 354, 393]))
    assert int(done.stdout.split()[-1]) == int(masks.sum()) > 10000
