"""Score bundles side by side on the held-out corpus images, per source: where checkpoints are chosen.

    python -m imis_lite.distill.held_out --bundle litemedsam --bundle weights/effvit-s-hr --out runs/held-out.json

The held-out images are every 25th of each source (``corpus.held_out_keys``), which no training of this project
saw; ../shared/data is never read here, so a checkpoint chosen on these numbers leaves the benchmark unbiased.
Each labelled object is boxed tight (its bounding box, as the benchmark's 2D protocol) and scored with DSC and
NSD (1 px spacing, the benchmark's tolerance) at the bundle's own mask threshold.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np

from imis_lite.demo import boxes_from_labels
from imis_lite.metrics import dice, nsd
from imis_lite.predictor import Segmenter

from .corpus import DEFAULT_CORPUS, held_out_keys, read_corpus

log = logging.getLogger("imis_lite.distill")


def held_out_labelled(corpus: Path, every: int, max_per_source: int | None = None) -> list:
    """The labelled held-out corpus images (at most ``max_per_source`` of each source, evenly spread)."""
    images = read_corpus(corpus)
    held_out = held_out_keys((image.key for image in images), every)
    by_source: dict[str, list] = {}
    for image in images:
        if image.key in held_out and image.mask_path is not None:
            by_source.setdefault(image.source, []).append(image)
    picked = []
    for group in by_source.values():
        stride = max(1, -(-len(group) // max_per_source)) if max_per_source else 1
        picked += group[::stride]
    return picked


def score_bundle(bundle: str, images: list, engine: str = "onnxruntime", threads: int | None = None) -> dict:
    """Per source: objects, mean DSC and NSD of a tight box, at the bundle's own threshold."""
    segmenter = Segmenter(bundle, engine=engine, threads=threads)
    scores: dict[str, list[tuple[float, float]]] = {}
    for image in images:
        labels = image.mask()
        segmenter.set_image(image.image())
        for label, box in boxes_from_labels(labels).items():
            truth = labels == label
            mask = segmenter.predict(box=box)[0][0]
            scores.setdefault(image.source, []).append((dice(mask, truth), nsd(mask, truth, (1.0, 1.0))))
    table = {source: {"objects": len(values), "dsc": round(float(np.mean([v[0] for v in values])), 4),
                      "nsd": round(float(np.mean([v[1] for v in values])), 4)} for source, values in sorted(scores.items())}
    every = [value for values in scores.values() for value in values]
    table["all"] = {"objects": len(every), "dsc": round(float(np.mean([v[0] for v in every])), 4),
                    "nsd": round(float(np.mean([v[1] for v in every])), 4)}
    table["sources_mean"] = {"dsc": round(float(np.mean([table[s]["dsc"] for s in scores])), 4),
                             "nsd": round(float(np.mean([table[s]["nsd"] for s in scores])), 4)}
    return table


def render(results: dict[str, dict]) -> str:
    names = list(results)
    rows = sorted({row for table in results.values() for row in table if row != "sources_mean"} - {"all"}) + ["all"]
    lines = ["| source | objects | " + " | ".join(f"{name} DSC / NSD" for name in names) + " |",
             "|---|---:|" + "---:|" * len(names)]
    for row in rows:
        cells = [f"{results[n][row]['dsc']:.3f} / {results[n][row]['nsd']:.3f}" if row in results[n] else "-" for n in names]
        lines.append(f"| {row} | {results[names[0]].get(row, {}).get('objects', '-')} | " + " | ".join(cells) + " |")
    lines.append("| mean of sources | | " + " | ".join(
        f"{results[n]['sources_mean']['dsc']:.3f} / {results[n]['sources_mean']['nsd']:.3f}" for n in names) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", action="append", required=True, help="a bundle name or folder (repeatable)")
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--validation-every", type=int, default=25)
    parser.add_argument("--max-per-source", type=int, help="at most N held-out images of each source (quicker)")
    parser.add_argument("--engine", default="onnxruntime")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--out", type=Path, help="JSON of every table")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    images = held_out_labelled(args.corpus.resolve(), args.validation_every, args.max_per_source)
    results = {bundle: score_bundle(bundle, images, args.engine, args.threads) for bundle in args.bundle}
    print(render(results))
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
