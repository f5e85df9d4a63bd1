"""Install a trained click refiner (``distill.train_click_refiner``) into a bundle: click_refiner.onnx, manifest,
model card.

    python -m imis_lite.distill.export_click_refiner --run runs/refiner --bundle weights/effvit-s-hr

The ONNX file is checked against the PyTorch network before anything is written (largest logit difference
and mask agreement on seeded inputs); both engines read it (OpenVINO compiles ONNX directly). The manifest
names it (``click_refiner``) with its sha256 and the refiner's own mask threshold (``click_refiner_threshold``,
chosen on the run's held-out rows), and records the run's training and validation; the model card gets the
commands that made it. A run started from an earlier one (``train_click_refiner --init``) installs only into a
bundle that carries that earlier run, so the card can give the whole chain.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from imis_lite.bundle import MANIFEST, load_bundle
from imis_lite.click_refiner import refiner_inputs
from imis_lite.engines import create_engine

from .bundle_writer import rewrite_manifest
from .click_refiner_net import ClickRefinerNet
from .train_click_refiner import RefinerData, evaluate

log = logging.getLogger("imis_lite.distill")

REFINER = "click_refiner.onnx"
INPUTS = ("image", "embedding", "previous", "clicks", "box")
SECTION = "## Click refiner (corrective clicks and a first click)"
#: mask thresholds of the refiner's logits that export chooses from; 0 is where its BCE training puts p = 0.5
THRESHOLDS = (-2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0)
#: the exported file must draw the same masks as the network (threshold 0) on this share of pixels
PARITY_AGREEMENT = 0.999


def trained_refiner(run: Path) -> ClickRefinerNet:
    state = torch.load(run / "last.pt", map_location="cpu", weights_only=False)
    net = ClickRefinerNet(**state["config"])
    net.load_state_dict(state["net"])
    return net.eval()


def parity_inputs(embedding_shape: tuple[int, ...], size: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Seeded inputs of the refiner's shapes: random images, embeddings and prior logits, a few clicks, a box."""
    rng = np.random.default_rng(seed)
    feeds = []
    for with_box in (True, False):
        points = rng.uniform(0, size - 1, (3, 2))
        feeds.append(refiner_inputs(rng.random((1, 3, size, size)), rng.normal(0, 1, (1, *embedding_shape)),
                                    rng.normal(0, 6, (size, size)), points, np.array([1, 0, 1]),
                                    np.array([20, 30, 180, 200]) if with_box else None))
    return feeds


def export(net: ClickRefinerNet, path: Path, embedding_shape: tuple[int, ...], size: int) -> dict:
    """Write the ONNX file and return its parity against the network."""
    feeds = parity_inputs(embedding_shape, size)
    example = tuple(torch.from_numpy(feeds[0][name]) for name in INPUTS)
    torch.onnx.export(net, example, str(path), input_names=list(INPUTS), output_names=["logits"], opset_version=17,
                      dynamo=False, do_constant_folding=True)
    engine = create_engine("onnxruntime", path, threads=2)
    differences, agreements = [], []
    for feed in feeds:
        with torch.no_grad():
            expected = net(*(torch.from_numpy(feed[name]) for name in INPUTS)).numpy()
        answer = engine.run(feed)["logits"]
        differences.append(float(np.abs(answer - expected).max()))
        agreements.append(float(((answer > 0) == (expected > 0)).mean()))
    parity = {"max_logit_difference": round(max(differences), 6), "mask_agreement": round(min(agreements), 6)}
    if parity["mask_agreement"] < PARITY_AGREEMENT:
        raise SystemExit(f"the exported refiner disagrees with the network: {parity}")
    return parity


def choose_threshold(net: ClickRefinerNet, config: dict, thresholds: list[float]) -> dict:
    """The threshold above which the refiner's logits make its masks, chosen on the run's held-out rows (of
    ``--data`` and of every ``--extra``, each object counted once): the best mean Dice over the rounds the runtime
    asks of it (a first click at the centre, then corrective clicks). Its own, not the bundle's: the bundle's was
    calibrated on the decoder's box answers, the refiner trained on BCE. ``config``: the run's config.json."""
    sets = [RefinerData(Path(cache), Path(data)) for cache, data in [(config["cache"], config["data"]),
                                                                     *config.get("extra", [])]]
    sweep = {}
    for threshold in thresholds:
        totals = []
        for data in sets:
            held_out = np.flatnonzero(data.rows[:, 2] == 1)
            curve = evaluate(net, data, held_out, config["rounds"], threshold)["first_click_then_clicks"][1:]
            totals.append((float(np.mean(curve)), len(held_out)))
        sweep[str(threshold)] = round(sum(mean * count for mean, count in totals) / sum(c for _, c in totals), 4)
    best = max(thresholds, key=lambda threshold: sweep[str(threshold)])
    log.info("refiner threshold %s; mean Dice over its rounds per threshold: %s", best, sweep)
    return {"threshold": best, "sweep": sweep}


def run_record(run: Path, config: dict, parity: dict) -> dict:
    log_rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    validations = [row for row in log_rows if "validation" in row]
    hours = max(row.get("elapsed_s", 0.0) for row in log_rows) / 3600
    return {"run": str(run), "steps": log_rows[-1]["step"], "hours": round(hours, 2),
            "parameters": config["parameters"], "net": config["net"], "data": config["data_meta"],
            "extra_data": config.get("extra_data_meta", []),
            "training": {key: config.get(key) for key in ("batch", "rounds", "first_click_share", "box_alone_share",
                                                          "extra_share", "lr", "seed", "init")},
            "validation": validations[-1]["validation"] if validations else None,
            "extra_validation": [value for key, value in (validations[-1] if validations else {}).items()
                                 if key.startswith("validation_extra")],
            "parity": parity}


def _data_command(meta: dict, bundle: str, out: str) -> str:
    return (f"python -m imis_lite.distill.click_refiner_data --cache {meta['cache']} --max-views {meta['views']} "
            f"--bundle {bundle} --out {out} --jitters {meta['jitters']} --seed {meta['seed']}")


def _stage_commands(record: dict, bundle: str, stage: int) -> list[str]:
    """The commands of run number ``stage`` of the chain (``_stages``); a later run starts from the one before."""
    data, training, extras = record["data"], record["training"], record.get("extra_data", [])
    init = f" --init <run {stage - 1}>/last.pt" if stage > 1 else ""
    extra = "".join(f" --extra {meta['cache']} <data {stage}.{number}>" for number, meta in enumerate(extras, 1))
    if extras:
        extra += f" --extra-share {training['extra_share']}"
    return [
        _data_command(data, bundle, f"<data {stage}>"),
        *(_data_command(meta, bundle, f"<data {stage}.{number}>") for number, meta in enumerate(extras, 1)),
        f"python -m imis_lite.distill.train_click_refiner --cache {data['cache']} --data <data {stage}>{extra} "
        f"--out <run {stage}> --steps {record['steps']} --batch {training['batch']} --rounds {training['rounds']} "
        f"--first-click-share {training['first_click_share']} --box-alone-share {training.get('box_alone_share') or 0} "
        f"--lr {training['lr']} --seed {training['seed']}{init}"]


def _stages(record: dict) -> list[dict]:
    """The installed run's chain, first run first (``continued_from`` links each run to the one it started from)."""
    earlier = record.get("continued_from")
    return (_stages(earlier) if earlier else []) + [record]


def card_section(record: dict, bundle: str) -> str:
    stages = _stages(record)
    validation = record["validation"] or {}
    training = "; ".join(
        f"run {number}: {stage['data']['train_rows']} training rows"
        + "".join(f" + {meta['train_rows']} of {meta['cache']}" for meta in stage.get("extra_data", []))
        + f" (boxes jittered by up to "
        f"{stage['data']['box_jitter']} px, answered by this bundle's own decoder), {stage['steps']} steps, batch "
        f"{stage['training']['batch']}, {stage['training']['rounds']} rounds, first-click share "
        f"{stage['training']['first_click_share']}, box-alone share {stage['training'].get('box_alone_share') or 0}, "
        f"{stage['hours']} h" for number, stage in enumerate(stages, 1))
    commands = "\n".join(line for number, stage in enumerate(stages, 1) for line in _stage_commands(stage, bundle, number))
    extra_validation = "".join(
        f"Held-out rows of {meta['cache']} ({extra.get('objects')}): after a first click at the centre and each click "
        f"{extra.get('first_click_then_clicks')}. "
        for meta, extra in zip(record.get("extra_data", []), record.get("extra_validation", [])))
    return (f"{SECTION}\n\n"
            f"`{REFINER}` ({record['parameters']} parameters) answers clicks: it starts from the previous answer's logits "
            "and draws a change from the image, discs around the clicks, the box and the embedding "
            "(`imis_lite/click_refiner.py`). Trained on the corpus label maps of the caches below, never on "
            f"../shared/data, each run from the one before: {training}.\n\n"
            f"Held-out rows ({validation.get('objects')}), at the bundle's threshold: Dice after the box and each click "
            f"{validation.get('box_then_clicks')}; after a first click at the centre and each click "
            f"{validation.get('first_click_then_clicks')}; its answer to the box alone {validation.get('box_refined')} "
            f"(not used: box answers stay the decoder's). {extra_validation}"
            f"Its masks are its logits above {record['threshold']['threshold']}, "
            f"chosen on those rows (mean Dice over its rounds per threshold: {record['threshold']['sweep']}). "
            f"Parity of the ONNX file: {record['parity']}.\n\n"
            f"```bash\n{commands}\n"
            f"python -m imis_lite.distill.export_click_refiner --run <run {len(stages)}> --bundle weights/{bundle}\n"
            "```\n")


def _installed_run(manifest: dict, run: Path, started_from: Path) -> dict:
    """The record of the run ``run`` started from, which the bundle must carry now (or carried before it
    installed ``run`` itself): the model card can then give every command of the chain."""
    installed = manifest.get("click_refiner_training")
    if installed is not None and Path(installed["run"]) == run and "continued_from" in installed:
        installed = installed["continued_from"]  # installing the same run again
    if installed is None or Path(installed["run"]) != started_from:
        raise SystemExit(f"the run started from {started_from}, but the bundle carries "
                         f"{installed['run'] if installed else 'no click refiner'}: install that run first")
    return installed


def install(run: Path, bundle_folder: Path, thresholds: list[float]) -> dict:
    bundle = load_bundle(str(bundle_folder))
    manifest = json.loads((bundle_folder / MANIFEST).read_text())
    config = json.loads((run / "config.json").read_text())
    init = config.get("init")
    continued_from = _installed_run(manifest, run, Path(init).parent) if init else None  # before anything is written
    net = trained_refiner(run)
    threshold = choose_threshold(net, config, thresholds)
    with tempfile.TemporaryDirectory() as staging:
        staged = Path(staging) / REFINER
        parity = export(net, staged, bundle.embedding_shape, bundle.low_res_size)
        staged.replace(bundle_folder / REFINER)
    record = {**run_record(run, config, parity), "threshold": threshold}
    if continued_from:
        record["continued_from"] = continued_from
    manifest["click_refiner"] = REFINER
    manifest["click_refiner_training"] = record
    manifest["click_refiner_threshold"] = threshold["threshold"]
    card = bundle_folder / "MODEL_CARD.md"
    text = card.read_text().split(SECTION)[0].rstrip() + "\n\n" if card.is_file() else f"# {manifest['name']}\n\n"
    card.write_text(text + card_section(record, manifest["name"]))  # before the manifest, which hashes it
    rewrite_manifest(bundle_folder, manifest)
    log.info("installed %s into %s: %s", REFINER, bundle_folder, parity)
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="folder written by distill.train_click_refiner")
    parser.add_argument("--bundle", type=Path, required=True, help="bundle folder to install into")
    parser.add_argument("--thresholds", type=float, nargs="+", default=list(THRESHOLDS),
                        help="mask thresholds of the refiner's logits to choose from on the held-out rows")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    install(args.run, args.bundle, args.thresholds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
