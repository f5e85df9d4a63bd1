"""Ship a trained compact decoder (``train_decoder``) as a bundle beside its student's.

    python -m imis_lite.distill.export_decoder --run runs/compact-s --out weights/effvit-s-hr-compact

The new bundle reads the student's encoder files and prompt encoder where they are (``../<student>/...``, each
sha256-checked like its own files) and carries its own ``decoder.onnx`` (fp32 variants) and ``decoder.int8.onnx``
(its weight MatMuls dynamic INT8, int8 variants), each used by both engines. The export is checked against the
PyTorch decoder on real cached embeddings (every output's logits and IoU estimates; the INT8 file's masks against
the fp32 file's) before the bundle is moved into place; the manifest names the decoder (``decoder``) and its point-first rule
(``point_first``), the model card the data and commands that made it.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path

import numpy as np

from imis_lite.bundle import MANIFEST, load_bundle
from imis_lite.metrics import dice

from .bundle_writer import install_bundle, write_manifest
from .model_card import cpu_name
from .quantize import onnxruntime_int8
from .student_decoder import build_decoder, describe, spec_record
from .teacher_cache import TeacherCache
from .train_decoder import EPISODES

log = logging.getLogger("imis_lite.distill")

DECODER = "decoder.onnx"
DECODER_INT8 = "decoder.int8.onnx"
CARD = "MODEL_CARD.md"
#: the largest logit difference between the ONNX file and PyTorch that the export accepts
PARITY_TOLERANCE = 1e-3
#: the lowest mean Dice of the INT8 file's masks against the fp32 file's that the export accepts
INT8_MIN_DICE = 0.97


def trained_decoder(run: Path):
    import torch

    config = json.loads((run / "config.json").read_text())
    decoder = build_decoder(config["decoder"])
    decoder.load_state_dict(torch.load(run / "last.pt", map_location="cpu", weights_only=True)["decoder"])
    return decoder.eval(), config


def _sibling(student: Path, relative: str) -> str:
    return f"../{student.name}/{relative}"


def parity(decoder, wrapper, path: Path, cache: TeacherCache, prompt_encoder, views: list[int]) -> dict:
    """Largest |logit| and |IoU| difference between ONNX Runtime and PyTorch over box, click and mask prompts on
    cached student inputs (the cache's images through the student's own encoder are not needed: the decoder
    sees any embedding the same way, so the cached teacher embeddings serve), and the mean Dice of the INT8
    file's non-empty masks against the fp32 file's."""
    import onnxruntime as ort
    import torch

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    quantized = ort.InferenceSession(str(path.with_name(DECODER_INT8)), providers=["CPUExecutionProvider"])
    worst_logit = worst_iou = 0.0
    int8_dice = []
    for view in views:
        embedding = cache["embeddings"][view][None].astype(np.float32)
        box = cache["boxes"][view][None].astype(np.float64)
        point = cache["points"][view][None, None].astype(np.float64)
        prompts = [dict(boxes=box), dict(points=point, labels=np.ones((1, 1))),
                   dict(boxes=box, points=point, labels=np.ones((1, 1)),
                        masks=cache["teacher_logits"][view][:1][None].astype(np.float32))]
        for prompt in prompts:
            sparse, dense = prompt_encoder.encode(**prompt)
            feeds = {"image_embeddings": embedding, "sparse_prompt": sparse, "dense_prompt": dense}
            logits, iou = session.run(None, feeds)
            int8_dice += [dice(a > 0, b > 0) for a, b in zip(quantized.run(None, feeds)[0][0], logits[0]) if (b > 0).any()]
            with torch.no_grad():
                reference = wrapper(torch.from_numpy(embedding), torch.from_numpy(sparse), torch.from_numpy(dense))
            worst_logit = max(worst_logit, float(np.abs(logits - reference[0].numpy()).max()))
            worst_iou = max(worst_iou, float(np.abs(iou - reference[1].numpy()).max()))
    return {"onnxruntime_fp32_logit_max_abs_diff": round(worst_logit, 7),
            "onnxruntime_fp32_iou_max_abs_diff": round(worst_iou, 7), "views": len(views),
            "int8_mask_dice_vs_fp32": round(float(np.mean(int8_dice)), 4)}


def training_record(run: Path, config: dict, cache: TeacherCache) -> dict:
    """What the model card and manifest say of the training: each stage (a run ``--init`` from another is the
    later stage) with its steps, hours and command, and the held-out numbers before the first and after the last."""
    lines = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    validations = [line for line in lines if "validation" in line and line["step"] > 0]
    last = lines[-1]
    stopped = int(last["step"])
    command = _command(config) + (f" --stop-at {stopped}" if stopped < int(config["steps"]) else "")
    stage = {"run": run.name, "steps": stopped, "hours": round(float(last.get("elapsed_s", 0)) / 3600, 2), "command": command}
    earlier: list[dict] = []
    if config.get("init"):
        init = Path(config["init"])
        earlier = training_record(init, json.loads((init / "config.json").read_text()), cache)["stages"]
    stages = earlier + [stage]
    return {"run": run.name, "stages": stages, "steps": sum(s["steps"] for s in stages),
            "hours": round(sum(s["hours"] for s in stages), 2),
            "hardware": f"{cpu_name()}, {config.get('threads') or 'all'} threads",
            "cache": Path(config["cache"]).name, "license_classes": cache.meta["license_classes"],
            "sources": cache.meta["sources"], "train_objects": config["train_objects"],
            "unlabelled_views": config["unlabelled_views"],
            "held_out_bundle_decoder": lines[0].get("bundle_decoder"),  # the same objects as the last validation
            "held_out_final": validations[-1]["validation"] if validations else None}


def _command(config: dict) -> str:
    command = (f"python -m imis_lite.distill.train_decoder --cache runs/{Path(config['cache']).name} "
               f"--max-views {config['max_views']} --student-bundle {config['student_bundle']} --decoder {config['decoder']} "
               f"--out runs/{Path(config['out']).name} --steps {config['steps']} --batch {config['batch']} "
               f"--lr {config['lr']} --warmup {config['warmup']} --pretrained-lr-scale {config.get('pretrained_lr_scale', 1.0)} "
               f"--rounds {config['rounds']} --box-weight {config['box_weight']} --boundary-weight {config['boundary_weight']} "
               f"--iou-weight {config['iou_weight']} --episode-mix {' '.join(str(v) for v in _mix(config))} "
               f"--validation-every {config['validation_every']} --seed {config['seed']}")
    return command + (f" --init runs/{Path(config['init']).name}" if config.get("init") else "")


def _mix(config: dict) -> list[float]:
    """The run's episode weights over today's EPISODES (an episode added since weighs 0, which draws the same)."""
    return list(config["episode_mix"]) + [0.0] * (len(EPISODES) - len(config["episode_mix"]))


def model_card(name: str, student: str, spec: dict, record: dict, parity_record: dict, sizes: tuple[int, int]) -> str:
    final = record["held_out_final"] or {}
    before = record["held_out_bundle_decoder"] or {}

    def row(what: str, key: str) -> str:
        return f"| {what} | {before.get(key)} | {final.get(key)} |"

    return "\n".join([
        f"# {name}: the {student} encoder with a decoder of its own",
        "",
        f"Encoder and prompt encoder: the `{student}` bundle's files, read from there (see its model card).",
        f"Decoder: `{spec['architecture']}` (`imis_lite.distill.student_decoder`): {describe(spec['architecture'])};"
        f" {sizes[0] / 1e6:.1f} MB as ONNX fp32, {sizes[1] / 1e6:.1f} MB with its weight MatMuls INT8 (the int8"
        " variants). Output 0 answers a box, clicks"
        " with a box or a prior, and several clicks; outputs 1-3 are the candidates for one click alone, of which the"
        " runtime takes the one its IoU head rates best.",
        "",
        "## Training",
        f"Trained on the `{student}` student's own (fp32 ONNX) embeddings of the teacher cache"
        f" `{record['cache']}`: corpus license classes {', '.join(record['license_classes'])}; sources"
        f" {', '.join(record['sources'])}. Ground truth: {record['train_objects']} objects of the corpus label maps;"
        f" box answers distilled from the `{student}` bundle's decoder, also on {record['unlabelled_views']} views"
        " without a label map. Never `../shared/data`.",
        f"{record['steps']} steps of 8 interactions in {len(record['stages'])} stage(s), {record['hours']} h on"
        f" {record['hardware']}.",
        "",
        "```",
        *[stage["command"] for stage in record["stages"]],
        f"python -m imis_lite.distill.export_decoder --run runs/{record['run']} --out weights/{name}",
        "```",
        "",
        "## Held-out corpus images (every 25th image of each source; Dice)",
        f"| | `{student}` decoder | this decoder |",
        "|---|---:|---:|",
        row("box, then 5 corrective clicks (whole answer)", "dsc_per_click"),
        row("the same, each answer kept near its click", "dsc_per_click_local"),
        row("box + distorted prior", "box_plus_prior"),
        row("one click alone at the object's centre", "one_click"),
        "",
        "Benchmarks on `../shared/data`: docs/benchmarks.md.",
        "",
        "## Export parity",
        *[f"- {key}: {value}" for key, value in parity_record.items()],
        "",
    ])


def export(run: Path, out: Path, student_name: str | None, force: bool) -> dict:
    import torch

    from imis_lite.prompts import PromptEncoder

    from .onnx_wrappers import CompactDecoderForExport, export_decoder

    decoder, config = trained_decoder(run)
    student = load_bundle(student_name or config["student_bundle"])
    manifest = json.loads((student.root / MANIFEST).read_text())
    prompt_file = manifest["prompt_encoder"]
    prompt_encoder = PromptEncoder.from_npz(student.verified_path(prompt_file))
    wrapper = CompactDecoderForExport(decoder, torch.from_numpy(prompt_encoder.w["pe_gaussian"])).eval()
    cache = TeacherCache(Path(config["cache"]))
    name = out.name
    with tempfile.TemporaryDirectory(dir=out.parent) as staging:
        folder = Path(staging) / name
        folder.mkdir()
        export_decoder(wrapper, student.embedding_shape, str(folder / DECODER))
        onnxruntime_int8(folder / DECODER, folder / DECODER_INT8)
        checked = parity(decoder, wrapper, folder / DECODER, cache, prompt_encoder, list(range(0, cache.complete, 97)))
        if checked["onnxruntime_fp32_logit_max_abs_diff"] > PARITY_TOLERANCE or checked["int8_mask_dice_vs_fp32"] < INT8_MIN_DICE:
            raise SystemExit(f"exported decoder differs from PyTorch: {checked}")
        own = {f for files in manifest["variants"].values() for variant in files.values() for f in variant["encoder"]}
        own.add(prompt_file)
        for relative in sorted(own):
            student.verified_path(relative)  # refuses a file that no longer matches the student's manifest
        shared = {_sibling(student.root, relative): manifest["files"][relative] for relative in sorted(own)}
        for precisions in manifest["variants"].values():
            for precision, files in precisions.items():
                files["encoder"] = [_sibling(student.root, f) for f in files["encoder"]]
                files["decoder"] = [DECODER_INT8 if precision == "int8" else DECODER]
        for key in ("interactive", "mask_threshold_calibration", "parity", "export_seconds", "click_channel"):
            manifest.pop(key, None)
        spec = spec_record(config["decoder"])
        record = training_record(run, config, cache)
        manifest.update({"name": name, "prompt_encoder": _sibling(student.root, prompt_file), "decoder": spec,
                         "point_first": "multimask", "decoder_training": record, "decoder_parity": checked,
                         "command": f"python -m imis_lite.distill.export_decoder --run runs/{run.name} --out weights/{name}"})
        sizes = ((folder / DECODER).stat().st_size, (folder / DECODER_INT8).stat().st_size)
        (folder / CARD).write_text(model_card(name, student.name, spec, record, checked, sizes))
        write_manifest(folder, manifest, shared)
        install_bundle(folder, out, force)
    return checked


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="a train_decoder run folder")
    parser.add_argument("--out", type=Path, required=True, help="the bundle folder to write, beside the student's")
    parser.add_argument("--student-bundle", help="the student whose encoder it reads (default: the run's)")
    parser.add_argument("--force", action="store_true", help="replace an existing bundle")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.out.exists() and not args.force:
        print(f"error: {args.out} exists; pass --force to replace it", file=sys.stderr)
        return 1
    for key, value in export(args.run, args.out.resolve(), args.student_bundle, args.force).items():
        print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
