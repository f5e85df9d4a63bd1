"""imis-lite bench (or python -m imis_lite.benchmarks) --data ../shared/data --out bench-out [--quick] [--engines ...]

Every shipped model x engine x precision (OpenVINO ones also in each `--arithmetic`), with PyTorch LiteMedSAM first
when torch is installed: accuracy (box DSC/NSD in 2D and 3D, DSC after each of 5 corrective clicks), speed (encoder
median/p90, decoder per prompt, seconds for one organ in 3D), peak RSS, size on disk, CLI cold start. Prints a
markdown table; writes results.json, scores_<variant>.json and PNG plots to --out.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

import numpy as np

from imis_lite.bundle import DEFAULT_MODEL, available_models, load_bundle
from imis_lite.demo import boxes_from_labels, sample_path
from imis_lite.options import ARITHMETICS, ENGINES, PRECISIONS
from imis_lite.predictor import Segmenter

from .accuracy import evaluate, save_scores, summarise
from .big_volume import big_volume
from .cli_3d import cli_3d
from .machine import describe_machine
from .memory import cli_cold_start_s, peak_rss_mb
from .report import accuracy_plot, clicks_plot, results_table
from .serve_3d import serve_3d
from .speed import measure
from .volume_time import volume_seconds

DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def find_cases(data: Path, quick: bool) -> list[Path]:
    cases = sorted(data.rglob("*.npz"))
    if not cases:
        raise SystemExit(f"no .npz cases under {data}")
    if quick:  # the two smallest 2D cases: the whole pipeline in seconds
        two_d = [c for c in cases if "cases_3d" not in str(c)]
        return sorted(two_d, key=lambda c: c.stat().st_size)[:2]
    return cases


def make_segmenters(models, engines, precisions, threads: int, torch_reference: bool,
                    arithmetics: tuple[str, ...] = ("f32",)) -> dict[str, object]:
    """Label -> segmenter; a label is "model engine precision", with the arithmetic appended where it is not f32
    (OpenVINO variants only)."""
    segmenters: dict[str, object] = {}
    if torch_reference:
        import torch
        from imis_lite.distill.reference import TorchSegmenter, shipped_litemedsam

        torch.set_num_threads(threads)
        segmenters["litemedsam pytorch fp32"] = TorchSegmenter(*shipped_litemedsam())
    for model in models:
        bundle = load_bundle(model)
        for engine in engines:
            for precision in precisions:
                if precision not in bundle.precisions(engine):
                    continue
                for arithmetic in arithmetics if engine == "openvino" else ("f32",):
                    label = f"{model} {engine} {precision}" + ("" if arithmetic == "f32" else f" {arithmetic}")
                    segmenters[label] = Segmenter(model, engine=engine, precision=precision, threads=threads,
                                                  arithmetic=arithmetic)
    return segmenters


def _save(path: Path, payload: dict) -> None:
    path.write_text(json.dumps(payload, indent=2) + "\n")


def main(argv: list[str] | None = None, prog: str = "python -m imis_lite.benchmarks") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of challenge-form .npz cases")
    parser.add_argument("--out", type=Path, default=Path("bench-out"))
    parser.add_argument("--models", nargs="+", default=None, help="bundles (default: all found)")
    parser.add_argument("--engines", nargs="+", default=list(ENGINES), choices=ENGINES)
    parser.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=PRECISIONS)
    parser.add_argument("--arithmetic", nargs="+", default=["f32"], choices=ARITHMETICS,
                        help="OpenVINO variants also in these arithmetics (f32 where the CPU lacks one: see the "
                             "arithmetic column)")
    parser.add_argument("--rounds", type=int, default=None, help="timed encoder runs per variant (10; 3 with --quick)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--clicks", type=int, default=5)
    parser.add_argument("--jitter", type=int, default=0, help="move each box edge by up to N pixels (seeded)")
    parser.add_argument("--quick", action="store_true", help="the two smallest 2D cases, 3 timed rounds, no 3D timings")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch reference row")
    parser.add_argument("--accuracy-on", nargs="+", default=["openvino:fp32"], metavar="ENGINE:PRECISION",
                        help="variants that get the accuracy pass (default openvino:fp32: fp32 masks are the same in "
                             "every engine, tested; openvino:fp32:bf16 for a bf16 variant); 'all' scores every "
                             "variant, INT8 included, in about 8 min more per variant; the others are timed only")
    args = parser.parse_args(argv)

    torch_reference = not args.no_torch and importlib.util.find_spec("torch") is not None
    segmenters = make_segmenters(args.models or sorted(available_models()), args.engines, args.precisions,
                                 args.threads, torch_reference, tuple(args.arithmetic))
    args.out.mkdir(parents=True, exist_ok=True)
    with np.load(sample_path(), allow_pickle=False) as case:
        image, truth = case["imgs"], case["gts"]
    box = max(boxes_from_labels(truth).values(), key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))
    rounds = args.rounds if args.rounds is not None else 3 if args.quick else 10
    started = time.perf_counter()
    speed = measure(segmenters, image, box, rounds)
    stage_seconds = {"timing": round(time.perf_counter() - started, 1)}
    started = time.perf_counter()
    organ_3d = {} if args.quick else volume_seconds(segmenters)
    if organ_3d:
        stage_seconds["3D organ"] = round(time.perf_counter() - started, 1)
    cases = find_cases(args.data, args.quick)
    rows = []
    payload = {
        "machine": describe_machine(args.threads),
        "command": f"{prog} " + " ".join(argv if argv is not None else sys.argv[1:]),
        "cases": [str(c.relative_to(args.data)) for c in cases],
        "complete": False,  # results.json is rewritten after every variant, so a stopped run keeps what it measured
        "rows": rows,
        "stage_seconds": stage_seconds,  # where the run's wall-clock time went
    }
    for label, segmenter in segmenters.items():
        model, engine, precision, *arithmetic = label.split()
        scores, seconds_3d = [], {}
        if "all" in args.accuracy_on or ":".join([engine, precision, *arithmetic]) in args.accuracy_on:
            started = time.perf_counter()
            scores, seconds_3d = evaluate(segmenter, cases, args.clicks, args.jitter)
            stage_seconds[f"accuracy {label}"] = round(time.perf_counter() - started, 1)
            save_scores(args.out / f"scores_{label.replace(' ', '_')}.json", scores)
        row = {"variant": label, "model": model, "engine": engine, "precision": precision, **speed[label],
               "accuracy": summarise(scores), "seconds_3d": seconds_3d, "organ_3d": organ_3d.get(label, {})}
        if engine != "pytorch":
            bundle = load_bundle(model)
            files = {f for group in bundle.variant(engine, precision).values() for f in group}
            row["size_mb"] = round(sum(bundle.manifest["files"][f]["bytes"] for f in files) / 1e6, 1)
            row["arithmetic"] = segmenter.encoder.inference_precision
            started = time.perf_counter()
            row["peak_rss_mb"] = round(peak_rss_mb(model, engine, precision, args.threads, *arithmetic))
            stage_seconds["peak RSS"] = round(stage_seconds.get("peak RSS", 0) + time.perf_counter() - started, 1)
        else:
            row["arithmetic"] = "f32"
        rows.append(row)
        _save(args.out / "results.json", payload)
    started = time.perf_counter()
    payload["cli_cold_start_s"] = {"--version": round(cli_cold_start_s("--version"), 2), "models": round(cli_cold_start_s("models"), 2)}
    payload["cli_3d"] = {} if args.quick else {
        model: cli_3d(model, args.threads) for model in dict.fromkeys(r["model"] for r in rows if r["engine"] != "pytorch")
    }
    stage_seconds["CLI cold start and 3D"] = round(time.perf_counter() - started, 1)
    started = time.perf_counter()
    payload["serve_3d"] = {} if args.quick else {model: serve_3d(model, args.threads) for model in payload["cli_3d"]}
    stage_seconds["serve 3D"] = round(time.perf_counter() - started, 1)
    started = time.perf_counter()
    payload["big_volume"] = {} if args.quick else {DEFAULT_MODEL: big_volume(DEFAULT_MODEL, args.threads)}
    stage_seconds["big volume"] = round(time.perf_counter() - started, 1)
    payload["complete"] = True
    _save(args.out / "results.json", payload)
    accuracy_plot(rows, args.out / "accuracy_vs_latency.png")
    clicks_plot(rows, args.out / "dsc_vs_clicks.png")
    print(results_table(payload))
    return 0


if __name__ == "__main__":
    sys.exit(main())
