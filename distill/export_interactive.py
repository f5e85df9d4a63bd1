"""Install an interactively trained prompt path into shipped bundles: prompt_encoder.npz, manifest, model card,
and, for a ``--train click-head`` or ``--train decoder`` run, the decoder with its trained click output.

    python -m imis_lite.distill.export_interactive --run runs/interactive-clickhead --bundle weights/litemedsam
    python -m imis_lite.distill.export_interactive --run runs/decoder-effvit-s-hr --bundle weights/effvit-s-hr

Run after the bundle's own export (``export_litemedsam`` / ``export_student``), which writes LiteMedSAM's
prompt encoder as it was. The box path (Fourier matrix, box-corner embeddings, no-mask embedding) is checked
to be unchanged before anything is written, so box-only answers stay the bundle's own; a re-exported decoder
of a click-head run must give mask output 0 bit-identical to the decoder file it replaces, so it can neither
move a box answer nor undo a decoder tuned to a student (a decoder run moves it by design: its largest logit
change against the file it replaces is recorded), and every bundle sharing that file
gets its new sha256 and ``click_channel`` in its manifest. A bundle that reads a sibling's decoder
(``../litemedsam/decoder.onnx``) while that sibling is not installed into gets its own ``decoder.onnx``
instead, so the sibling keeps its decoder and its manifest stays true: a click head trained on a student's
embeddings (``train_interactive --student-bundle``) goes to that student alone.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from pathlib import Path

import numpy as np

from imis_lite.bundle import MANIFEST, load_bundle

from .bundle_writer import prompt_encoder_arrays, rewrite_manifest
from .model_card import OWN_DECODER_NOTE, SHARED_DECODER_NOTE, cpu_name
from .teacher_cache import TeacherCache
from .teachers import load_litemedsam
from .train import split_items
from .train_interactive import CLICK_CHANNEL, WARMUP, list_objects

log = logging.getLogger("imis_lite.distill")

CARD = "MODEL_CARD.md"
OWN_DECODER = "decoder.onnx"
SECTION = "## Interactive prompt path (clicks and mask input)"


def _box_path(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The prompt-encoder arrays a box-only prompt reads."""
    return {"pe_gaussian": arrays["pe_gaussian"], "box corners": arrays["point_embeddings"][2:], "no_mask": arrays["no_mask"]}


def trained_net(run: Path):
    """LiteMedSAM with the run's weights."""
    import torch

    net = load_litemedsam()
    net.load_state_dict(torch.load(run / "last.pt", map_location="cpu", weights_only=False)["net"])
    return net


def trained_arrays(run: Path) -> dict[str, np.ndarray]:
    """The run's prompt encoder as NumPy arrays, refused if its box path differs from LiteMedSAM's."""
    reference = _box_path(prompt_encoder_arrays(load_litemedsam().prompt_encoder))
    arrays = prompt_encoder_arrays(trained_net(run).prompt_encoder)
    for name, value in _box_path(arrays).items():
        if not np.array_equal(value, reference[name]):
            raise SystemExit(f"{run}: the {name} changed in training; box answers would no longer be the bundle's")
    return arrays


def _decoder_outputs(path: Path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["low_res_logits"], feeds)[0]


def stage_decoder(run: Path, current: Path, decoder: Path, box_identical: bool) -> tuple[Path, float]:
    """Export the run's decoder next to ``decoder``, to replace ``current``, the file the bundle reads now (the
    same path, or a sibling's it stops sharing); with ``box_identical``, only if its mask output 0 (the box
    answer) is bit for bit that file's, so a click-head run can neither undo a decoder tuned to a student's
    embeddings nor move a box answer. Returns the staged file and the largest change of mask output 0 on random
    inputs against ``current``."""
    from .onnx_wrappers import export_decoder, sam_decoder_for_export

    rng = np.random.default_rng(0)
    feeds = {"image_embeddings": rng.normal(0, 0.1, (1, 256, 64, 64)).astype(np.float32),
             "sparse_prompt": rng.normal(0, 1, (2, 3, 256)).astype(np.float32),
             "dense_prompt": rng.normal(0, 0.1, (2, 256, 64, 64)).astype(np.float32)}
    staging = decoder.with_suffix(".tmp.onnx")
    export_decoder(sam_decoder_for_export(trained_net(run)), (256, 64, 64), str(staging))
    before, after = _decoder_outputs(current, feeds), _decoder_outputs(staging, feeds)
    if box_identical and not np.array_equal(before[:, 0], after[:, 0]):
        staging.unlink()
        raise SystemExit(f"{run}: its decoder would change the box answers of {current}; a click-head run installs only "
                         "over the decoder it was trained from (--init-bundle that bundle for one tuned to a student)")
    return staging, float(np.abs(before[:, 0] - after[:, 0]).max())


def replace_decoders(run: Path, current: dict[Path, Path], box_identical: bool) -> float:
    """Each target decoder file (key) replaced by the run's, in place of the file it reads now (value); nothing
    is replaced unless every one passes ``stage_decoder``. Returns the largest box-logit change."""
    staged: list[tuple[Path, Path, float]] = []
    try:
        for target in sorted(current):
            staged.append((target, *stage_decoder(run, current[target], target, box_identical)))
    except SystemExit:
        for _, staging, _ in staged:
            staging.unlink()
        raise
    for target, staging, _ in staged:
        os.replace(staging, target)
        log.info("decoder with the trained click output written to %s", target)
    return max(change for _, _, change in staged)


def stages(run: Path) -> list[Path]:
    """The run folders that made ``run``, first stage first (each ``--init`` names the one before)."""
    config = json.loads((run / "config.json").read_text())
    return (stages(Path(config["init"]).parent) if config.get("init") else []) + [run]


def _validations(run: Path) -> tuple[list[dict], dict]:
    """A run's validation records, and its last log line."""
    lines = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if line.strip()]
    return [line["validation"] for line in lines if "validation" in line], lines[-1]


def run_record(run: Path) -> dict:
    config = json.loads((run / "config.json").read_text())
    made_by = stages(run)
    logs = [_validations(stage) for stage in made_by]
    first, last, ends = logs[0][0], logs[-1][0], [end for _, end in logs]
    cache_meta = json.loads((Path(config["cache"]) / "meta.json").read_text())
    return {
        "run": run.name, "steps": sum(end["step"] for end in ends),
        "hours": round(sum(end.get("elapsed_s", 0) for end in ends) / 3600, 2),
        "stages": [{"run": stage.name, "steps": end["step"], "hours": round(end.get("elapsed_s", 0) / 3600, 2)}
                   for stage, end in zip(made_by, ends)],
        "hardware": f"{cpu_name()}, {config['threads'] or 'all'} threads",
        "embeddings": _embeddings_source(config),
        "trained": config.get("train", "prompt"), "trained_parameters": config["trained_parameters"],
        "box_target": _box_target(config),
        "train_objects": config["train_objects"],
        "license_classes": cache_meta["license_classes"],
        "masked_sources": _object_sources(config),
        "held_out_dsc_per_click_before": first[0]["dsc_per_click"],
        "held_out_dsc_per_click_after": last[-1]["dsc_per_click"],
        "held_out_box_plus_prior_before": first[0]["box_plus_prior"],
        "held_out_box_plus_prior_after": last[-1]["box_plus_prior"],
        "held_out_dsc_per_click_local_start": last[0].get("dsc_per_click_local"),
        "held_out_dsc_per_click_local_after": last[-1].get("dsc_per_click_local"),
        "command": training_commands(run),
    }


def _embeddings_source(config: dict) -> str:
    if config.get("student_run"):
        return f"student {Path(config['student_run']).name}"
    if config.get("student_bundle"):
        return f"student bundle {Path(config['student_bundle']).name} (fp32 ONNX encoder)"
    return "teacher litemedsam"


def training_commands(run: Path) -> str:
    """The train_interactive command of each stage that made the run, the first stage first, after what made
    the bundle a first stage started from (``--init-bundle``): its own recorded commands and their install."""
    made_by = stages(run)
    first = json.loads((made_by[0] / "config.json").read_text())
    earlier = []
    if first.get("init_bundle"):
        bundle = load_bundle(first["init_bundle"])
        record = bundle.manifest.get("interactive")
        if record:
            earlier = [record["command"], f"python -m imis_lite.distill.export_interactive --run runs/{record['run']} "
                                          f"--bundle weights/{bundle.root.name}"]
    return "\n".join([*earlier, *(_training_command(stage) for stage in made_by)])


def _training_command(run: Path) -> str:
    config = json.loads((run / "config.json").read_text())
    return (
        f"python -m imis_lite.distill.train_interactive --cache {config['cache']} "
        f"--max-views {config['cache_views']} --out runs/{run.name}"
        + (f" --student-run {config['student_run']}" if config.get("student_run") else "")
        + (f" --student-bundle {config['student_bundle']}" if config.get("student_bundle") else "")
        + (f" --train {config['train']}" if config.get("train", "prompt") != "prompt" else "")
        + (f" --box-weight {config['box_weight']}" if config.get("train") == "decoder" else "")
        + (f" --box-target {_box_target(config)} --boundary-weight {config['boundary_weight']}" if _box_target(config) else "")
        + (" --teacher-objects" if config.get("teacher_objects") else "")
        + (f" --init runs/{Path(config['init']).parent.name}/last.pt" if config.get("init") else "")
        + (f" --init-bundle {config['init_bundle']}" if config.get("init_bundle") else "")
        + (" --local" if config.get("local") else "")
        + (f" --reach-weight {config['reach_weight']}" if config.get("reach_weight") else "")
        + f" --steps {config['steps']} --batch {config['batch']} --lr {config['lr']}"
        + (f" --warmup {config['warmup']}" if config.get("warmup", WARMUP) != WARMUP else "") + f" --seed {config['seed']}")


def _box_target(config: dict) -> str | None:
    """What a decoder run's box answers learned (``--box-target``: the teacher's, or the label map's), or None
    where they were held in place."""
    if config.get("train") == "decoder" and config.get("box_target") in ("teacher", "truth"):
        return config["box_target"]
    return None


def _object_sources(config: dict) -> list[str]:
    """Corpus sources of the objects the run trained on."""
    cache = TeacherCache(config["cache"])
    train_views, _ = split_items(cache, config["cache_views"], config["validation_every"])
    views = np.unique(list_objects(cache, train_views)[:, 0])
    return sorted({cache.meta["items"][view][0].split("/")[1] for view in views})


def card_section(record: dict) -> str:
    what = "The positive, negative and padding point embeddings and the mask-input convolutions of the prompt encoder"
    frozen = "Encoder and mask decoder frozen"
    box_note = "Box-only prompts use none of these parameters (mask output 0): their answers are unchanged."
    if record.get("trained") in ("click-head", "decoder"):
        what += (", and the hypernetwork MLP of the decoder's mask output 1, which the runtime reads whenever clicks or"
                 " a mask input are present (`click_channel` in manifest.json),")
        frozen = "Encoder and every other decoder layer frozen"
    if record.get("trained") == "decoder":
        what += " and every other layer of the mask decoder"
        frozen = "Encoder frozen; box-only logits held to the original decoder's by a squared-drift term"
        if record.get("box_target") == "teacher":
            frozen = ("Encoder frozen; box-only answers distilled from the teacher's (LiteMedSAM's embedding of the"
                      " same view through its original decoder: BCE with the mask edge up-weighted, + soft Dice)")
        elif record.get("box_target") == "truth":
            frozen = ("Encoder frozen; box-only answers to jittered boxes graded against the labelled object itself"
                      " (BCE + soft Dice), not the teacher's answer")
        box_note = ("Box-only prompts read mask output 0 of the same decoder, whose shared layers moved: their held-out"
                    " DSC is the first number of each curve below; the benchmark measures it on the shared cases.")
    stages = ""
    if len(record.get("stages", [])) > 1:
        stages = " (" + " + ".join(f"{stage['steps']} in {stage['run']}, {stage['hours']} h" for stage in record["stages"]) + ")"
    local_note = ""
    if record.get("held_out_dsc_per_click_local_after"):
        local_note = (f"- each click kept where it reaches (`imis_lite.corrections`, as the runtime shows it), at the start of"
                      f" run {record['run']}: {record['held_out_dsc_per_click_local_start']}; after:"
                      f" {record['held_out_dsc_per_click_local_after']}\n")
    return f"""{SECTION}
{what}
({record['trained_parameters']} parameters) were retrained by simulated interaction
(`imis_lite.distill.train_interactive`): a box or an interior click, then up to 5 clicks at the centre of the
largest error region with the previous low-res logits fed back, plus boxes with a distorted neighbouring mask as
mask input (what 3D propagation gives). {frozen}, {record['embeddings']} embeddings from
the teacher cache. Ground truth: {record['train_objects']} objects of the `../shared/corpus` label maps
({', '.join(record['masked_sources'])}; license class {', '.join(record['license_classes'])}); nothing from
`../shared/data`. {record['steps']} steps of 8 interactions{stages}, {record['hours']} h on {record['hardware']}.
{box_note}

Held-out corpus objects, DSC after the box and after clicks 1-5:
- before: {record['held_out_dsc_per_click_before']}
- after: {record['held_out_dsc_per_click_after']}
{local_note}
Box + distorted mask as prior: {record['held_out_box_plus_prior_before']} -> {record['held_out_box_plus_prior_after']}.

Reproduce (after the bundle's export):
```
{record['command']}
python -m imis_lite.distill.export_interactive --run runs/{record['run']} --bundle <this bundle>
```
"""


def decoder_files(bundle: Path) -> set[Path]:
    """The decoder file(s) a bundle's variants use, resolved (a sibling's shared file included)."""
    manifest = json.loads((bundle / MANIFEST).read_text())
    return {(bundle / name).resolve() for by_precision in manifest["variants"].values()
            for files in by_precision.values() for name in files["decoder"]}


def decoder_targets(bundles: list[Path]) -> dict[Path, Path]:
    """Decoder file now in use -> the file the run's decoder goes to: the same file, or the bundle's own
    ``decoder.onnx`` when it reads a sibling's file and that sibling is not among ``bundles``."""
    folders = {bundle.resolve() for bundle in bundles}
    targets = {}
    for bundle in bundles:
        for path in decoder_files(bundle):
            shared_with_outsider = path.parent not in folders
            targets[path] = bundle.resolve() / OWN_DECODER if shared_with_outsider else path
    return targets


def use_own_decoder(manifest: dict, bundle: Path) -> None:
    """Point every variant of the manifest at the bundle's own decoder file and drop the sibling's entry."""
    for by_precision in manifest["variants"].values():
        for files in by_precision.values():
            files["decoder"] = [OWN_DECODER]
    manifest["files"] = {name: entry for name, entry in manifest["files"].items()
                         if not (name.startswith("../") and name.endswith("decoder.onnx"))}
    log.info("%s now reads its own %s", bundle, OWN_DECODER)


def install(bundle: Path, arrays: dict[str, np.ndarray], record: dict, own_decoder: bool = False) -> None:
    manifest = json.loads((bundle / MANIFEST).read_text())
    if own_decoder:
        use_own_decoder(manifest, bundle)
    target = bundle / manifest["prompt_encoder"]
    staging = target.with_suffix(".tmp.npz")
    np.savez(staging, **arrays)
    os.replace(staging, target)
    card = bundle / CARD
    if card.is_file():
        text = card.read_text().split(SECTION)[0].rstrip() + "\n\n"
        if own_decoder:
            text = re.sub(r"\s+".join(map(re.escape, SHARED_DECODER_NOTE.split())), OWN_DECODER_NOTE, text)
    else:
        text = f"# {manifest['name']}\n\nSource, export command and parity: manifest.json.\n\n"
    card.write_text(text + card_section(record))  # before the manifest, which hashes it
    manifest["interactive"] = record
    if record["trained"] in ("click-head", "decoder"):
        manifest["click_channel"] = CLICK_CHANNEL
    rewrite_manifest(bundle, manifest)  # a shared decoder may have just been replaced
    log.info("installed into %s", bundle)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="folder written by distill.train_interactive")
    parser.add_argument("--bundle", type=Path, action="append", required=True, help="bundle folder; repeat for several")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    arrays, record = trained_arrays(args.run), run_record(args.run)
    own: set[Path] = set()
    if record["trained"] in ("click-head", "decoder"):
        targets = decoder_targets(args.bundle)
        current = {target: source for source, target in targets.items()}
        change = replace_decoders(args.run, current, box_identical=record["trained"] == "click-head")
        record["box_logit_max_change_random_inputs"] = round(change, 4)
        own = {target.parent for source, target in targets.items() if source != target}
    for bundle in args.bundle:
        install(bundle, arrays, record, own_decoder=bundle.resolve() in own)
    return 0


if __name__ == "__main__":
    sys.exit(main())
