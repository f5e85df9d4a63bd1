"""Score bundles side by side on the held-out corpus images, per source: where checkpoints are chosen.

    python -m imis_lite.distill.held_out --bundle litemedsam --bundle weights/effvit-s-hr --out runs/held-out.json

The held-out images are every 25th of each source (``corpus.held_out_keys``), which no training of this project
saw; ../shared/data is never read here, so a checkpoint chosen on these numbers leaves the benchmark unbiased.
Each labelled object is boxed tight (its bounding box, as the benchmark's 2D protocol) and scored with DSC and
NSD (1 px spacing, the benchmark's tolerance) at the bundle's own mask threshold. ``--clicks N`` also scores
what the benchmark's click columns score: one foreground click alone at the object's centre, and the box then N
corrective clicks through ``Correction`` with and without its brush (the network's own share).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np

from imis_lite.corrections import Correction, protocol_clicks
from imis_lite.demo import boxes_from_labels
from imis_lite.metrics import dice, nsd
from imis_lite.predictor import Segmenter
from imis_lite.protocol import centre_click

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


def object_scores(segmenter: Segmenter, box: np.ndarray, truth: np.ndarray, clicks: int) -> dict[str, float]:
    """DSC and NSD of the tight box's answer; with ``clicks``, also one click alone at the centre and the box
    then ``clicks`` corrective clicks, with and without the brush."""
    mask = segmenter.predict(box=box)[0][0]
    scores = {"dsc": dice(mask, truth), "nsd": nsd(mask, truth, (1.0, 1.0))}
    if clicks:
        x, y = centre_click(truth)
        scores["one_click_dsc"] = dice(Correction(segmenter).click(x, y), truth)
        for key, brush in (("clicks_dsc", True), ("clicks_no_brush_dsc", False)):
            correction = Correction(segmenter, box, use_brush=brush)
            scores[key] = dice(protocol_clicks(correction, truth, clicks)[-1], truth)
    return scores


def _means(rows: list[dict[str, float]]) -> dict:
    return {"objects": len(rows), **{key: round(float(np.mean([row[key] for row in rows])), 4) for key in rows[0]}}


def score_bundle(bundle: str, images: list, engine: str = "onnxruntime", threads: int | None = None,
                 clicks: int = 0) -> dict:
    """Per source: objects and the mean of each ``object_scores`` column, at the bundle's own threshold."""
    segmenter = Segmenter(bundle, engine=engine, threads=threads)
    scores: dict[str, list[dict[str, float]]] = {}
    for image in images:
        labels = image.mask()
        segmenter.set_image(image.image())
        for label, box in boxes_from_labels(labels).items():
            scores.setdefault(image.source, []).append(object_scores(segmenter, box, labels == label, clicks))
    table = {source: _means(rows) for source, rows in sorted(scores.items())}
    table["all"] = _means([row for rows in scores.values() for row in rows])
    table["sources_mean"] = {key: round(float(np.mean([table[s][key] for s in scores])), 4)
                             for key in table["all"] if key != "objects"}
    return table


CLICK_COLUMNS = ("one_click_dsc", "clicks_dsc", "clicks_no_brush_dsc")


def _cell(scores: dict | None) -> str:
    if scores is None:
        return "-"
    clicks = " / ".join(f"{scores[key]:.3f}" for key in CLICK_COLUMNS if key in scores)
    return f"{scores['dsc']:.3f} / {scores['nsd']:.3f}" + (f" ({clicks})" if clicks else "")


def render(results: dict[str, dict]) -> str:
    """One row per source: DSC / NSD of each bundle, and in brackets, where scored, one click alone / box then
    the clicks / the same without the brush."""
    names = list(results)
    rows = sorted({row for table in results.values() for row in table if row != "sources_mean"} - {"all"}) + ["all"]
    lines = ["| source | objects | " + " | ".join(f"{name} DSC / NSD" for name in names) + " |",
             "|---|---:|" + "---:|" * len(names)]
    for row in rows:
        cells = [_cell(results[n].get(row)) for n in names]
        lines.append(f"| {row} | {results[names[0]].get(row, {}).get('objects', '-')} | " + " | ".join(cells) + " |")
    lines.append("| mean of sources | | " + " | ".join(_cell(results[n]["sources_mean"]) for n in names) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", action="append", required=True, help="a bundle name or folder (repeatable)")
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--validation-every", type=int, default=25)
    parser.add_argument("--max-per-source", type=int, help="at most N held-out images of each source (quicker)")
    parser.add_argument("--engine", default="onnxruntime")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--clicks", type=int, default=0,
                        help="also score one click alone and the box then N corrective clicks, with and without the brush")
    parser.add_argument("--out", type=Path, help="JSON of every table")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    images = held_out_labelled(args.corpus.resolve(), args.validation_every, args.max_per_source)
    results = {bundle: score_bundle(bundle, images, args.engine, args.threads, args.clicks) for bundle in args.bundle}
    print(render(results))
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
