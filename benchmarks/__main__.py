"""python -m imis_lite.benchmarks [--out DIR] [--engines ...] [--precisions ...] [--rounds N] [--threads N]

Prints a markdown table and writes speed.json (raw numbers, machine) and speed.png to --out.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np

from imis_lite.bundle import available_models, load_bundle
from imis_lite.demo import boxes_from_labels, sample_path

from .machine import describe_machine
from .report import speed_plot, speed_table
from .speed import Variant, measure


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m imis_lite.benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("bench-out"))
    parser.add_argument("--models", nargs="+", default=None, help="bundles (default: all found)")
    parser.add_argument("--engines", nargs="+", default=["onnxruntime", "openvino"])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "int8"])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="3 rounds")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch reference row")
    args = parser.parse_args(argv)
    models = args.models or sorted(available_models())
    variants = [
        Variant(model, engine, precision)
        for model in models
        for engine in args.engines
        for precision in args.precisions
        if precision in load_bundle(model).precisions(engine)
    ]
    with np.load(sample_path(), allow_pickle=False) as case:
        image, truth = case["imgs"], case["gts"]
    box = max(boxes_from_labels(truth).values(), key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))
    torch_reference = not args.no_torch and importlib.util.find_spec("torch") is not None
    results = measure(variants, image, box, 3 if args.quick else args.rounds, args.threads, torch_reference)
    args.out.mkdir(parents=True, exist_ok=True)
    payload = {
        "machine": describe_machine(args.threads),
        "image": f"{sample_path().name} {image.shape}",
        "rows": [
            {"model": v.model, "engine": v.engine, "precision": v.precision, "arithmetic": v.arithmetic,
             "encoder_ms": v.encoder_ms, "decoder_ms": v.decoder_ms}
            for v in results
        ],
    }
    (args.out / "speed.json").write_text(json.dumps(payload, indent=2) + "\n")
    speed_plot(results, args.out / "speed.png")
    print(speed_table(results, payload["machine"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
