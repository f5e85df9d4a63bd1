"""Decoders side by side on one encoder: the shipped student's SAM decoder beside decoders of our own.

    python -m imis_lite.benchmarks.decoders --models effvit-s-hr effvit-s-hr-pooled --out bench-out/decoders

One run, every bundle through the same code: decoder median ms per prompt (box, and one click alone) in each
engine at fp32 on ``--threads``, the decoder file's MB, and on ../shared/data's 2D objects the box DSC / NSD,
one foreground click alone at the object's centre (distance transform) and a box then 5 corrective clicks
through ``Correction`` with and without its brush (the network's own share); the 3D objects' box DSC through the
CLI's propagation; the CLI liver of the shipped CT in a fresh process (whole run, and the CLI's own seconds
after start-up); and seconds per 100 slices of one organ (the shipped CT's liver, its 3 mm slices resampled to
1 mm). Prints a table, writes results.json and decoders.png to --out.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from imis_lite.bundle import load_bundle
from imis_lite.corrections import Correction, protocol_clicks
from imis_lite.demo import boxes_from_labels, sample_path
from imis_lite.io import read_scan
from imis_lite.io.scan import Scan
from imis_lite.job import RawObject, resolve, segment_scan
from imis_lite.metrics import dice, nsd
from imis_lite.predictor import Segmenter
from imis_lite.protocol import centre_click

from .__main__ import DEFAULT_DATA, find_cases
from .cli_3d import cli_3d, largest_organ_box

ENGINES = ("onnxruntime", "openvino")


def decoder_ms(segmenter: Segmenter, image: np.ndarray, box: np.ndarray, rounds: int) -> dict:
    """Median ms of one box prompt and of one click alone through the decoder, and of one click through the
    bundle's click refiner where it ships one, the embedding already made."""
    segmenter.set_image(image)
    click = np.array([[(box[0] + box[2]) / 2, (box[1] + box[3]) / 2]])
    prompts: dict[str, Callable[[], object]] = {
        "box_ms": lambda: segmenter.predict(box=box),
        "click_ms": lambda: segmenter.predict(points=click, labels=np.ones(1))}
    if segmenter.click_refiner is not None:
        previous = segmenter.predict(box=box)[2][0]
        prompts["click_refiner_ms"] = lambda: segmenter.refine_clicks(click, np.ones(1), previous, box)
    times: dict[str, list[float]] = {key: [] for key in prompts}
    for round_index in range(rounds + 1):
        for key, prompt in prompts.items():
            started = time.perf_counter()
            prompt()
            if round_index:  # round 0 warms up
                times[key].append(1000 * (time.perf_counter() - started))
    return {key: round(float(np.median(values)), 2) for key, values in times.items()}


def score_2d(segmenter: Segmenter, image: np.ndarray, truth: np.ndarray, clicks: int) -> list[dict]:
    segmenter.set_image(image)
    rows = []
    for label, box in boxes_from_labels(truth).items():
        target = truth == label
        x, y = centre_click(target)
        alone = Correction(segmenter).click(x, y)  # the runtime's first click (the CLI's --point alone)
        row = {"box_dsc": dice(box_mask := segmenter.predict(box=box)[0][0], target),
               "box_nsd": nsd(box_mask, target, (1.0, 1.0)), "one_click_dsc": dice(alone, target)}
        for key, brush in (("clicks_dsc", True), ("clicks_no_brush_dsc", False)):
            correction = Correction(segmenter, box, use_brush=brush)
            protocol_clicks(correction, target, clicks)
            row[key] = dice(correction.mask, target)
        rows.append(row)
    return rows


def score_3d(segmenter: Segmenter, path: Path) -> list[float]:
    scan = read_scan(path)
    with np.load(path, allow_pickle=False) as case:
        truth_all = case["gts"].transpose(2, 1, 0)  # challenge (z, y, x) -> file order (x, y, z)
    scores = []
    for label in (int(v) for v in np.unique(truth_all) if v > 0):
        where = np.argwhere(truth_all == label)
        prompt = resolve(scan, RawObject([*where.min(0), *where.max(0)]))
        scores.append(dice(segment_scan(segmenter, scan, [prompt]) == 1, truth_all == label))
    return scores


def accuracy(segmenter: Segmenter, cases: list[Path], clicks: int) -> dict:
    per_modality: dict[str, list[dict]] = {}
    three_d: list[float] = []
    for path in cases:
        with np.load(path, allow_pickle=False) as case:
            image = case["imgs"]
            if image.ndim == 3 and image.shape[2] != 3:
                three_d += score_3d(segmenter, path)
                continue
            per_modality.setdefault(str(case["modality"]), []).extend(score_2d(segmenter, image, case["gts"], clicks))
    every = [row for rows in per_modality.values() for row in rows]
    summary = {"2d": _means(every), "per_modality": {m: _means(rows) for m, rows in sorted(per_modality.items())}}
    summary["3d_dsc"] = round(float(np.mean(three_d)), 4) if three_d else None
    return summary


def _means(rows: list[dict]) -> dict:
    return {"objects": len(rows), **{key: round(float(np.mean([row[key] for row in rows])), 4) for key in rows[0]}}


def resampled_liver() -> tuple[Scan, list[int], np.ndarray]:
    """The shipped CT and its liver with slices resampled to 1 mm (linear; labels nearest), and the liver's box."""
    scan = read_scan(sample_path("example_ct_sm.nii.gz"))
    factor = float(scan.spacing[2])
    truth = np.asarray(nib.load(sample_path("example_seg.nii.gz")).dataobj)
    label, _ = largest_organ_box(truth)
    data = ndimage.zoom(scan.data.astype(np.float32), (1, 1, factor), order=1)
    liver = ndimage.zoom((truth == label).astype(np.uint8), (1, 1, factor), order=0) > 0
    affine = scan.affine @ np.diag([1, 1, 1 / factor, 1])
    fine = replace(scan, data=data, affine=affine, extras={})
    where = np.argwhere(liver)
    return fine, [*map(int, where.min(0)), *map(int, where.max(0))], liver


def per_100_slices(segmenter: Segmenter, fine: Scan, box: list[int], liver: np.ndarray) -> dict:
    prompt = resolve(fine, RawObject(box))
    segment_scan(segmenter, fine, [resolve(fine, RawObject([*box[:2], box[2], *box[3:5], box[2]]))])  # warm-up
    started = time.perf_counter()
    labels = segment_scan(segmenter, fine, [prompt])
    seconds = time.perf_counter() - started
    slices = int(np.any(labels > 0, axis=(0, 1)).sum())
    return {"slices": slices, "seconds": round(seconds, 2), "s_per_100_slices": round(100 * seconds / max(slices, 1), 2),
            "dice": round(dice(labels == 1, liver), 4)}


def decoder_mb(model: str) -> float:
    bundle = load_bundle(model)
    files = set(bundle.variant("onnxruntime", "fp32")["decoder"]) | set(bundle.variant("openvino", "fp32")["decoder"])
    return round(sum(bundle.manifest["files"][f]["bytes"] for f in files) / 1e6, 2)


def run(models: list[str], data: Path, threads: int, clicks: int, rounds: int, quick: bool) -> dict:
    with np.load(sample_path(), allow_pickle=False) as case:
        image, truth = case["imgs"], case["gts"]
    box = max(boxes_from_labels(truth).values(), key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))
    cases = find_cases(data, quick)
    fine, liver_box, liver = resampled_liver()
    rows = []
    for model in models:
        row: dict = {"model": model, "decoder_mb": decoder_mb(model)}
        for engine in ENGINES:
            row[engine] = decoder_ms(Segmenter(model, engine=engine, threads=threads), image, box, rounds)
        segmenter = Segmenter(model, engine="openvino", threads=threads)
        row["accuracy"] = accuracy(segmenter, cases, clicks)
        if not quick:
            row["per_100_slices"] = per_100_slices(segmenter, fine, liver_box, liver)
            liver_cli = cli_3d(model, threads)  # the README's liver box is the CT's largest organ's
            row["cli_liver"] = {"wall_s": liver_cli["seconds"], "segmentation_s": liver_cli["segmentation_seconds"],
                                "dice": liver_cli["dice"]}
        rows.append(row)
    return {"models": models, "threads": threads, "cases": len(cases), "rows": rows}


def table(result: dict) -> str:
    lines = ["| model | decoder MB | box ms ORT / OV | click ms ORT / OV | click refiner ms ORT / OV | 2D box DSC / NSD | "
             "one click DSC | +5 clicks | +5 clicks, no brush | 3D DSC | CLI liver s (wall / after start-up) / Dice | "
             "s per 100 slices |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in result["rows"]:
        two_d, ort, ov = row["accuracy"]["2d"], row["onnxruntime"], row["openvino"]
        cli, fine = row.get("cli_liver", {}), row.get("per_100_slices", {})
        lines.append(f"| {row['model']} | {row['decoder_mb']} | {ort['box_ms']} / {ov['box_ms']} | {ort['click_ms']} / "
                     f"{ov['click_ms']} | {ort.get('click_refiner_ms', '-')} / {ov.get('click_refiner_ms', '-')} | "
                     f"{two_d['box_dsc']} / {two_d['box_nsd']} | {two_d['one_click_dsc']} | "
                     f"{two_d['clicks_dsc']} | {two_d['clicks_no_brush_dsc']} | {row['accuracy']['3d_dsc']} | "
                     f"{cli.get('wall_s')} / {cli.get('segmentation_s')} / {cli.get('dice')} | {fine.get('s_per_100_slices')} |")
    modalities = sorted({m for row in result["rows"] for m in row["accuracy"]["per_modality"]})
    lines += ["", "One click alone at the centre, DSC (box DSC / NSD), per modality:", "",
              "| model | " + " | ".join(modalities) + " |", "|---|" + "---:|" * len(modalities)]
    for row in result["rows"]:
        cells = [row["accuracy"]["per_modality"].get(m) for m in modalities]
        lines.append(f"| {row['model']} | " + " | ".join(
            f"{c['one_click_dsc']} ({c['box_dsc']} / {c['box_nsd']})" if c else "-" for c in cells) + " |")
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = ("box_dsc", "one_click_dsc", "clicks_dsc", "clicks_no_brush_dsc")
    figure, axis = plt.subplots(figsize=(7, 4))
    width = 0.8 / len(result["rows"])
    for index, row in enumerate(result["rows"]):
        values = [row["accuracy"]["2d"][key] for key in keys]
        axis.bar(np.arange(len(keys)) + index * width, values, width,
                 label=f"{row['model']} ({row['onnxruntime']['box_ms']} ms/prompt)")
    axis.set_xticks(np.arange(len(keys)) + width * (len(result["rows"]) - 1) / 2, keys)
    axis.set_ylabel("mean DSC, 2D objects")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", required=True)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=Path("bench-out/decoders"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--clicks", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=30, help="timed prompts per model and engine")
    parser.add_argument("--quick", action="store_true", help="the two smallest 2D cases, no CLI or 3D timing")
    args = parser.parse_args(argv)
    result = run(args.models, args.data, args.threads, args.clicks, args.rounds, args.quick)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(result, indent=1) + "\n")
    plot(result, args.out / "decoders.png")
    print(table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
