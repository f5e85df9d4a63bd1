"""Choose a bundle's mask threshold (the logit above which a pixel is in the mask) on held-out corpus objects.

    python -m imis_lite.distill.calibrate_threshold --bundle weights/effvit-s-hr

SAM thresholds its logits at 0. On the held-out labelled corpus images (every 25th image, which none of this
project's training saw) both shipped decoders under-segment from a box drawn tight to the object, and a
threshold below 0 raises DSC and NSD there; but a box a few pixels looser (as users draw them, as LiteMedSAM
was trained with, as 3D propagation sends: 6 model pixels) leaks at those thresholds. So every object is boxed
tight and ``MARGINS`` model pixels looser on each side, ``GRID`` is swept, and the threshold with the highest mean
DSC + NSD (the challenge's two measures) over all of those prompts is kept if it beats SAM's 0 by ``MIN_GAIN``. It is
written into the bundle's manifest (``mask_threshold``, read by ``Segmenter``) with the whole sweep, and into a
section of the model card. Run it last, after ``export_interactive`` (whose card section replaces everything after
it). Nothing from ../shared/data is read.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np

from imis_lite.bundle import MANIFEST
from imis_lite.metrics import NSD_TOLERANCE_MM, dice, nsd
from imis_lite.predictor import Segmenter
from imis_lite.volume import mask_box

from .bundle_writer import rewrite_manifest
from .corpus import DEFAULT_CORPUS, held_out_keys, read_corpus

log = logging.getLogger("imis_lite.distill")

GRID = (-3.0, -2.5, -2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0)
#: box margins, pixels of the model's input frame on each side: tight, LiteMedSAM's training jitter, propagation's
MARGINS = (0.0, 3.0, 6.0)
#: how much a threshold other than 0 must add to the mean DSC + NSD (one object of the 57 moves a mean up to 0.018)
MIN_GAIN = 0.01
CARD = "MODEL_CARD.md"
SECTION = "## Mask threshold"


def sweep(segmenter: Segmenter, cases: list[tuple[np.ndarray, np.ndarray]], grid: tuple[float, ...] = GRID,
          margins: tuple[float, ...] = MARGINS) -> dict:
    """Mean box-prompt DSC and NSD (pixel spacing 1) at each threshold of ``grid``, over every object of ``cases``
    ((image, label map) pairs) boxed with each margin (model-frame pixels), and per margin."""
    scores = np.zeros((len(margins), len(grid), 2))
    objects = 0
    for image, labels in cases:
        segmenter.set_image(image)
        scale = max(labels.shape) / segmenter.input_size
        for label in np.unique(labels[labels > 0]):
            truth = labels == label
            for row, margin in enumerate(margins):
                _, _, low_res = segmenter.predict(box=mask_box(truth, margin * scale))
                logits = segmenter.image_logits(low_res)[0]
                for column, threshold in enumerate(grid):
                    mask = logits > threshold
                    scores[row, column] += dice(mask, truth), nsd(mask, truth, (1.0, 1.0))
            objects += 1
    if objects == 0:
        raise ValueError("no labelled objects to calibrate on")
    means = scores / objects
    return {"grid": list(grid), "margins": list(margins), "objects": objects,
            "dsc": means[:, :, 0].mean(0).round(4).tolist(), "nsd": means[:, :, 1].mean(0).round(4).tolist(),
            "per_margin": {f"{m:g}": {"dsc": means[i, :, 0].round(4).tolist(), "nsd": means[i, :, 1].round(4).tolist()}
                           for i, m in enumerate(margins)}}


def best_threshold(result: dict) -> float:
    """The grid threshold with the highest mean DSC + NSD, unless it beats SAM's 0 by less than ``MIN_GAIN``."""
    totals = np.add(result["dsc"], result["nsd"])
    best = int(np.argmax(totals))
    if 0.0 in result["grid"] and totals[best] - totals[result["grid"].index(0.0)] < MIN_GAIN:
        return 0.0
    return float(result["grid"][best])


def held_out_cases(corpus: Path, every: int) -> tuple[list[str], list[tuple[np.ndarray, np.ndarray]]]:
    """The labelled images among the held-out ones (as distill.train's validation), with their label maps."""
    images = read_corpus(corpus)
    held_out = held_out_keys((image.key for image in images), every)
    chosen = [image for image in images if image.key in held_out and image.mask_path is not None]
    return [image.key for image in chosen], [(image.image(), image.mask()) for image in chosen]


def card_section(record: dict) -> str:
    margins = list(record["per_margin"])
    header = " | ".join(f"box +{m} px" for m in margins)
    rows = "\n".join(
        f"| {t:+.1f} | {record['dsc'][i]:.4f} / {record['nsd'][i]:.4f} | "
        + " | ".join(f"{record['per_margin'][m]['dsc'][i]:.4f} / {record['per_margin'][m]['nsd'][i]:.4f}" for m in margins)
        + " |" for i, t in enumerate(record["grid"]))
    return f"""{SECTION}
Masks are the logits above {record['threshold']:+.1f} (SAM's threshold is 0), chosen by
`imis_lite.distill.calibrate_threshold` on {record['objects']} objects of the {len(record['images'])} labelled
held-out corpus images (every {record['every']}th image, held out of all of this project's training; sources
{', '.join(record['sources'])}), each boxed tight and {' and '.join(margins[1:])} model-frame pixels looser on
each side: the highest mean DSC + NSD ({record['nsd_tolerance_px']:g} px) over all of those prompts if it adds
{record['min_gain']:g} or more to 0's, else 0; engine {record['engine']} {record['precision']}.
`Segmenter(..., mask_threshold=t)` sets another.

| logit threshold | DSC / NSD, all boxes | {header} |
|---:|---:|{'---:|' * len(margins)}
{rows}

Reproduce (last, after `export_interactive`):
```
{record['command']}
```
"""


def install(bundle: Path, record: dict) -> None:
    """Threshold and sweep into the manifest, a section into the model card; the card's sha256 refreshed."""
    manifest = json.loads((bundle / MANIFEST).read_text())
    card = bundle / CARD
    text = card.read_text() if card.is_file() else f"# {manifest['name']}\n\nSource, export command and parity: manifest.json.\n"
    before, _, after = text.partition(SECTION)
    rest = after.partition("\n## ")
    kept = before.rstrip() + "\n\n" + card_section(record) + (("\n## " + rest[2]) if rest[1] else "")
    card.write_text(kept)  # before the manifest, which hashes it
    manifest["mask_threshold"] = record["threshold"]
    manifest["mask_threshold_calibration"] = record
    rewrite_manifest(bundle, manifest)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, required=True, help="bundle folder (its manifest is rewritten)")
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--validation-every", type=int, default=25, help="the held-out images (as distill.train)")
    parser.add_argument("--max-images", type=int, default=None, help="calibrate on the first N held-out images only")
    parser.add_argument("--engine", default="onnxruntime")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    keys, cases = held_out_cases(args.corpus, args.validation_every)
    keys, cases = keys[:args.max_images], cases[:args.max_images]
    segmenter = Segmenter(str(args.bundle), engine=args.engine, precision="fp32", threads=args.threads)
    record = sweep(segmenter, cases)
    record.update(
        threshold=best_threshold(record), images=keys, every=args.validation_every,
        sources=sorted({key.split("/")[1] for key in keys}), nsd_tolerance_px=NSD_TOLERANCE_MM, min_gain=MIN_GAIN,
        engine=args.engine, precision="fp32",
        command=f"python -m imis_lite.distill.calibrate_threshold --bundle weights/{args.bundle.name}"
        + (f" --validation-every {args.validation_every}" if args.validation_every != 25 else "")
        + (f" --max-images {args.max_images}" if args.max_images else ""),
    )
    install(args.bundle, record)
    log.info("%s: mask threshold %+.1f (DSC %s, NSD %s over %s)", args.bundle.name, record["threshold"],
             record["dsc"], record["nsd"], record["grid"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
