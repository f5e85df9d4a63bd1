"""Export a distilled student as an imis-lite bundle, quantized and parity-checked.

    python -m imis_lite.distill.export_student --run runs/effvit-s --out weights/effvit-s

Writes the student encoder as ONNX (fp32, read by both engines), an ONNX Runtime INT8 encoder (static QDQ,
per-channel, calibrated on permissive corpus images), an OpenVINO + NNCF INT8 encoder (same calibration),
the teacher's prompt encoder, manifest.json and MODEL_CARD.md. The mask decoder is the teacher's, unchanged:
the bundle names the teacher bundle's decoder file (by sha256) instead of shipping a second copy, and when an
interactive prompt path is installed in that bundle (``export_interactive``) the student takes it too: the
click output of the same decoder, its prompt encoder, and the record in manifest and model card. A decoder an
earlier encoder of the bundle was given (``train_interactive --box-target teacher``) is not kept: it was tuned to
that encoder's embeddings, so tune one again for the new encoder. Nothing is installed unless every variant
passes its parity check against the PyTorch student.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np

from imis_lite.bundle import load_bundle
from imis_lite.preprocess import encoder_input

from .bundle_writer import export_main, install_bundle, prompt_encoder_arrays, write_manifest
from .corpus import calibration_and_validation
from .export_interactive import card_section
from .model_card import training_license_classes, training_stages, write_model_card
from .onnx_wrappers import export_encoder
from .parity import check_bundle
from .quantize import onnxruntime_int8_static, openvino_int8
from .student import count_gflops, count_parameters, load_student
from .teachers import load_litemedsam

log = logging.getLogger("imis_lite.distill")

#: OpenVINO op types NNCF leaves float: the linear attention's products and its division (ORT: attention_nodes).
FLOAT_OPS_OPENVINO = ["MatMul", "Divide"]


def attention_nodes(model: Path) -> list[str]:
    """ONNX nodes of the linear attention (its MatMuls and normalising Div), kept out of INT8."""
    import onnx

    return [node.name for node in onnx.load(str(model)).graph.node if node.op_type in ("MatMul", "Div")]


def stage_record(stage: Path) -> dict:
    config = json.loads((stage / "config.json").read_text())
    keys = ("steps", "batch", "lr", "prompt_weight", "prompt_every", "boundary_weight", "max_views", "seed", "device", "world_size")
    return {"run": stage.name, **{key: config.get(key) for key in keys},
            "caches": [Path(folder).name for folder in [config["cache"], *config.get("extra_cache", [])]]}


def build(run: Path, out: Path, corpus: Path, calibration_count: int, validation_count: int, seed: int, force: bool) -> dict:
    started = time.time()
    student, config = load_student(run)
    net = load_litemedsam()
    net.image_encoder = student  # the student in the teacher's place: the PyTorch yardstick for parity
    teacher_bundle = load_bundle(config["teacher"])
    calibration, validation = calibration_and_validation(corpus, calibration_count, validation_count, seed)
    tensors = [encoder_input(image.image(), 256)[0] for image in calibration]
    shared_decoder = f"../{teacher_bundle.root.name}/decoder.onnx"

    with tempfile.TemporaryDirectory() as tmp:
        staging = Path(tmp) / out.name
        (staging / "openvino").mkdir(parents=True)
        log.info("exporting ONNX")
        export_encoder(student, 256, str(staging / "encoder.onnx"))
        interactive = teacher_bundle.manifest.get("interactive")
        if interactive:  # the shared decoder carries a trained click path: so does this bundle, prompt encoder and all
            shutil.copy(teacher_bundle.verified_path(teacher_bundle.manifest["prompt_encoder"]), staging / "prompt_encoder.npz")
        else:
            np.savez(staging / "prompt_encoder.npz", **prompt_encoder_arrays(net.prompt_encoder))
        keep_float = attention_nodes(staging / "encoder.onnx")
        log.info("quantizing: onnxruntime int8 (static QDQ, %d calibration images, %d attention nodes float)",
                 len(tensors), len(keep_float))
        onnxruntime_int8_static(staging / "encoder.onnx", staging / "encoder.int8.onnx", tensors, keep_float)
        log.info("quantizing: OpenVINO + NNCF int8")
        openvino_int8(staging / "encoder.onnx", staging / "openvino" / "encoder.int8.xml", tensors, FLOAT_OPS_OPENVINO, transformer=False)
        # the shared decoder is checked by sha256 like every file; a sibling copy lets parity run in staging
        sibling = Path(tmp) / teacher_bundle.root.name
        sibling.mkdir()
        shutil.copy(teacher_bundle.verified_path("decoder.onnx"), sibling / "decoder.onnx")

        int8_ort, int8_ov = ["encoder.int8.onnx"], ["openvino/encoder.int8.xml", "openvino/encoder.int8.bin"]
        manifest = {
            "name": out.name,
            "version": "1.0",
            "teacher": "LiteMedSAM",
            "student": {"architecture": config["student"], **config["student_config"],
                        "params": count_parameters(student), "gflops": round(count_gflops(student), 3)},
            "license": "Apache-2.0",
            "input_size": 256,
            "low_res_size": 256,
            "embedding_shape": [256, 64, 64],
            "preprocess": teacher_bundle.manifest["preprocess"],
            "mask_threshold": 0.0,
            "prompt_encoder": "prompt_encoder.npz",
            "variants": {
                "onnxruntime": {"fp32": {"encoder": ["encoder.onnx"], "decoder": [shared_decoder]},
                                "int8": {"encoder": int8_ort, "decoder": [shared_decoder]}},
                "openvino": {"fp32": {"encoder": ["encoder.onnx"], "decoder": [shared_decoder]},
                             "int8": {"encoder": int8_ov, "decoder": [shared_decoder]}},
            },
            "training": {
                "corpus_license_classes": training_license_classes(run),
                "stages": [stage_record(stage) for stage in training_stages(run)],
            },
            "calibration": {"corpus_license_classes": ["permissive"], "images": [str(i.path.relative_to(corpus)) for i in calibration]},
            "command": f"python -m imis_lite.distill.export_student --run {run} --out {out}" + (" --force" if force else ""),
            "tools": {pkg: version(pkg) for pkg in ("torch", "onnx", "onnxruntime", "openvino", "nncf")},
        }
        if interactive:
            manifest.update(interactive=interactive, click_channel=teacher_bundle.manifest["click_channel"])
        shared = {shared_decoder: teacher_bundle.manifest["files"]["decoder.onnx"]}
        write_manifest(staging, manifest, extra=shared)
        log.info("checking parity against PyTorch on %d held-out corpus images", len(validation))
        manifest["parity"] = check_bundle(staging, net, validation)
        manifest["export_seconds"] = round(time.time() - started, 1)
        write_model_card(staging / "MODEL_CARD.md", manifest, run)
        if interactive:
            with (staging / "MODEL_CARD.md").open("a") as card:
                card.write("\n" + card_section(interactive))
        write_manifest(staging, manifest, extra=shared)
        install_bundle(staging, out, force)
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="training run folder (config.json, student.pt)")
    parser.add_argument("--out", type=Path, required=True)
    return export_main(parser, argv, lambda a: build(a.run, a.out, a.corpus, a.calibration_images, a.validation_images, a.seed, a.force))


if __name__ == "__main__":
    sys.exit(main())
