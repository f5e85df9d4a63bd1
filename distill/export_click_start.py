"""Install a trained click-start ranker (``distill.train_click_start``) into a bundle: click_start.npz, manifest,
model card.

    python -m imis_lite.distill.export_click_start --run runs/click-start --bundle weights/effvit-s-hr

The ranker learnt to rank one decoder's answers, so it installs only into a bundle whose fp32 decoder has the
sha256 its run recorded. The manifest names it (``click_start``, sha256 in ``files``) and records the run's
held-out numbers; the model card gets the commands that made it.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
from pathlib import Path

from imis_lite.bundle import MANIFEST, load_bundle
from imis_lite.click_start import CANDIDATE_SIDES

from .bundle_writer import rewrite_manifest
from .train_click_start import decoder_sha256

log = logging.getLogger("imis_lite.distill")

RANKER = "click_start.npz"
SECTION = "## Click-start ranker (where a click alone starts)"


def card_section(record: dict, bundle: str) -> str:
    held_out = record["held_out"]
    sets = " ".join(f"--set {cache} {data}" for cache, data in record["sets"])
    return (f"{SECTION}\n\n"
            f"`{RANKER}` ranks the candidates for a click alone: the decoder's answer to the click and to square boxes "
            f"of {', '.join(map(str, CANDIDATE_SIDES))} model-frame pixels centred on it (`imis_lite/click_start.py`); "
            "the click refiner starts from the one it puts first. A two-layer perceptron "
            f"({record['hidden']} hidden units) over {len(record['sets'])} sets of corpus label maps "
            f"({record['training']['rows']} training clicks, {record['train_rows_per_set']} at most per set), never "
            f"../shared/data; {record['hours']} h on the CPU.\n\n"
            f"Held-out clicks at the centre of {held_out['rows']} objects, Dice of the candidate: the click's own answer "
            f"{held_out['click']}, the ranker's pick {held_out['picked']}, the best candidate {held_out['best']}; "
            f"per source {json.dumps(held_out['per_source'])}.\n\n"
            f"```bash\npython -m imis_lite.distill.train_click_start {sets} --bundle {bundle} --out <run> "
            f"--train-rows {record['train_rows_per_set']} --hidden {record['hidden']} --steps {record['steps']} "
            f"--lr {record['lr']} --seed {record['seed']}\n"
            f"python -m imis_lite.distill.export_click_start --run <run> --bundle weights/{bundle}\n```\n")


def install(run: Path, bundle_folder: Path) -> dict:
    bundle = load_bundle(str(bundle_folder))
    record = json.loads((run / "log.json").read_text())
    if decoder_sha256(bundle) != record["decoder_sha256"]:
        raise SystemExit(f"{run} ranks the answers of another decoder than {bundle_folder}'s: train it on this bundle")
    manifest = json.loads((bundle_folder / MANIFEST).read_text())
    shutil.copyfile(run / RANKER, bundle_folder / RANKER)
    manifest["click_start"] = RANKER
    manifest["click_start_training"] = {"run": str(run), **record}
    card = bundle_folder / "MODEL_CARD.md"
    text = card.read_text().split(SECTION)[0].rstrip() + "\n\n" if card.is_file() else f"# {manifest['name']}\n\n"
    card.write_text(text + card_section(record, manifest["name"]))  # before the manifest, which hashes it
    rewrite_manifest(bundle_folder, manifest)
    log.info("installed %s into %s", RANKER, bundle_folder)
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="folder written by distill.train_click_start")
    parser.add_argument("--bundle", type=Path, required=True, help="bundle folder to install into")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    install(args.run, args.bundle)
    return 0


if __name__ == "__main__":
    sys.exit(main())
