"""MODEL_CARD.md for a distilled bundle: what it is, what it learned from, how to make it again, how good it is."""

from __future__ import annotations

import json
import platform
from pathlib import Path

#: what a student card says of its decoder at export; ``export_interactive`` rewrites it when it gives the
#: bundle a decoder of its own
SHARED_DECODER_NOTE = ("The mask decoder is LiteMedSAM's, unchanged (the bundle uses `../litemedsam/decoder.onnx`, checked"
                  " by sha256), and so is the prompt encoder's box path.")
OWN_DECODER_NOTE = ("The mask decoder is LiteMedSAM's, tuned for this encoder (the bundle's own `decoder.onnx`; see"
               " \"Interactive prompt path\" below), and the prompt encoder's box path is LiteMedSAM's.")

def _training_summary(run: Path) -> dict:
    lines = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if line.strip()]
    last = lines[-1]
    validated = [line for line in lines if "validation" in line]
    return {"steps": last["step"], "views": last["views"], "hours": round(last["elapsed_s"] / 3600, 2), "final": last,
            "validation": validated[-1]["validation"] if validated else {}}


def cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def from_bundle(config: dict) -> bool:
    """Whether a stage started from a released bundle's encoder.onnx rather than from a run's student.pt."""
    return str(config.get("init") or "").endswith(".onnx")


def training_stages(run: Path) -> list[Path]:
    """The run and the runs it started from (``--init``), first stage first; a bundle's ONNX ends the chain
    (its own commands are in the stage's config, ``init_commands``)."""
    stages = [run]
    while (config := json.loads((stages[0] / "config.json").read_text())).get("init") and not from_bundle(config):
        stages.insert(0, Path(config["init"]).parent)
    return stages


def _section(card: Path, heading: str) -> str:
    parts = card.read_text().split(f"\n{heading}\n", 1) if card.is_file() else []
    return parts[1].split("\n## ", 1)[0].strip() if len(parts) == 2 else ""


def reproduce_commands(card: Path) -> list[str]:
    """The commands of a model card's Reproduce block (what made that bundle's encoder), or none."""
    block = _section(card, "## Reproduce").split("```")
    return block[1].strip().splitlines() if len(block) > 1 else []


def training_paragraphs(card: Path) -> list[str]:
    """A model card's stage paragraphs (its Training section), for the card of a stage that starts from it."""
    return [paragraph for paragraph in _section(card, "## Training").split("\n\n") if paragraph.strip()]


def stage_caches(stages: list[Path]) -> list[Path]:
    """Every cache any stage trained on, main ones first, each once."""
    configs = [json.loads((stage / "config.json").read_text()) for stage in stages]
    return list(dict.fromkeys(Path(folder) for config in configs for folder in [config["cache"], *config.get("extra_cache", [])]))


def training_license_classes(run: Path) -> list[str]:
    """The license classes of every image any stage of ``run`` trained on (``user`` for a user's folders)."""
    metas = [json.loads((folder / "meta.json").read_text()) for folder in stage_caches(training_stages(run))]
    return sorted({name for meta in metas for name in meta["license_classes"]})


def _cache_command(folder: Path) -> str:
    meta = json.loads((folder / "meta.json").read_text())
    used = json.loads((folder / "progress.json").read_text())["complete"]
    excluded, only = meta.get("exclude_sources", []), meta.get("only_sources", [])
    return (f"python -m imis_lite.distill.teacher_cache --out runs/{folder.name} --views {meta['views_per_image']} "
            f"--seed {meta['seed']}" + (f" --exclude-sources {','.join(excluded)}" if excluded else "")
            + (f" --sources {','.join(only)}" if only else "")
            + (f" --per-source {meta['per_source']}" if meta.get("per_source") else "")
            + f" --limit {used}")  # the views trained on: a cache limited, or stopped early


def _train_command(config: dict) -> str:
    extra = "".join(f" --extra-cache runs/{Path(folder).name}" for folder in config.get("extra_cache", []))
    max_views = f" --max-views {config['max_views']}" if config.get("max_views") else ""
    init = (f" --init {config['init']}" if from_bundle(config)
            else f" --init runs/{Path(config['init']).parent.name}/student.pt" if config.get("init") else "")
    part = f" --train {config['train']}" if config.get("train", "all") != "all" else ""
    fresh = " --fresh-prompts" if config.get("fresh_prompts") else ""
    fresh += " --teacher-objects" if config.get("teacher_objects") else ""
    return (f"python -m imis_lite.distill.train --cache runs/{Path(config['cache']).name}{extra}{max_views}{init}{part} "
            f"--out runs/{Path(config['out']).name} --student {config['student']} --steps {config['steps']} "
            f"--batch {config['batch']} --lr {config['lr']} --warmup {config['warmup']} "
            f"--prompt-weight {config['prompt_weight']} --prompt-every {config['prompt_every']} "
            f"--boundary-weight {config.get('boundary_weight', 0.0)}{fresh}"
            + (f" --label-weight {config['label_weight']}" if config.get("label_weight") else "")
            + (f" --source-power {config['source_power']}" if config.get("source_power") else "")
            + f" --seed {config['seed']}")


def _stage_text(number: int, run: Path) -> str:
    config = json.loads((run / "config.json").read_text())
    summary = _training_summary(run)
    boundary = config.get("boundary_weight", 0.0)
    return (f"Stage {number} (`runs/{run.name}`"
            + (f", started from `{config['init']}` as released, sha256 {config.get('init_sha256', '?')[:12]}..., read back "
               "from its ONNX with every batch-norm statistic frozen" if from_bundle(config)
               else f", started from stage {number - 1}'s student" if config.get("init") else ", from scratch") + "): "
            f"normalised embedding MSE to the teacher + {config['prompt_weight']} x (box mask + 0.5 x click mask) "
            f"decoded through the frozen teacher decoder"
            + (" for a box and a click drawn anew on each labelled view at every mask term" if config.get("fresh_prompts") else "")
            + " (BCE to the teacher's probabilities"
            + (f", {boundary}x extra weight on a 5-pixel band at the mask's edge" if boundary else "")
            + ", + soft Dice)"
            + (f" + {config['label_weight']} x the box answer graded the same way against the labelled object itself"
               if config.get("label_weight") else "")
            + f", the decoder term every {config['prompt_every']} steps. AdamW, lr {config['lr']} "
            f"(cosine, {config['warmup']} warm-up steps), batch {config['batch']}, {summary['steps']} steps, "
            + (f"views drawn with weight (views of their source)^-{config['source_power']}, " if config.get("source_power") else "")
            + "seed "
            f"{config['seed']}, {summary['views']} training views; {summary['hours']} h on {config['device']} "
            f"({config.get('cpu') or cpu_name()}, {config['threads'] or 'all'} threads, world size {config['world_size']}). "
            + ("Only the refiner was trained; every other weight (and batch-norm statistic) stayed stage "
               f"{number - 1}'s. " if config.get("train") == "refiner" else "")
            + "Held-out corpus views at its end: "
            f"{json.dumps(summary['validation'])}.")


def source_table(metas: list[dict], used: list[int]) -> str:
    """Images per licence class, source and modality that training saw (held-out ones counted apart), each
    image once however many caches hold views of it."""
    from .corpus import read_corpus

    rows: dict[tuple[str, str, str], list[int]] = {}
    counted: set[str] = set()
    for meta, count in zip(metas, used):
        corpus = {image.key: image for image in read_corpus(meta["corpus"], ("permissive", "nc", "unclear"))}
        held_out = set(meta.get("held_out", []))
        for key in dict.fromkeys(path for path, _ in meta["items"][:count] if path not in counted):
            counted.add(key)
            image = corpus.get(key)
            where = (image.license_class, image.source, image.modality) if image else ("user", key.split("/")[1], "?")
            cell = rows.setdefault(where, [0, 0])
            cell[1 if key in held_out else 0] += 1
    lines = ["| licence class | source | modality | training images | held out |", "|---|---|---|---:|---:|"]
    lines += [f"| {c} | {s} | {m} | {n} | {h} |" for (c, s, m), (n, h) in sorted(rows.items())]
    return "\n".join(lines)


def write_model_card(path: Path, manifest: dict, run: Path) -> None:
    stages = training_stages(run)
    configs = [json.loads((stage / "config.json").read_text()) for stage in stages]
    caches = stage_caches(stages)
    metas = [json.loads((folder / "meta.json").read_text()) for folder in caches]
    used = [json.loads((folder / "progress.json").read_text())["complete"] for folder in caches]
    images = len({path for meta, count in zip(metas, used) for path, _ in meta["items"][:count]})
    sources = sorted({source for meta in metas for source in meta["sources"]})
    classes = sorted({name for meta in metas for name in meta["license_classes"]})
    views = " + ".join(f"{count} (`{folder.name}`)" for folder, count in zip(caches, used))
    student = manifest["student"]
    parity = "\n".join(f"| {key} | {value} |" for key, value in manifest["parity"].items())
    earlier = configs[0].get("init_training", [])  # a released bundle's own stages, when a stage started from it
    stage_texts = "\n\n".join([*earlier, *(_stage_text(number, stage)
                                             for number, stage in enumerate(stages, start=len(earlier) + 1))])
    commands = "\n".join(dict.fromkeys([  # a released bundle's own commands first, when a stage started from it
        *configs[0].get("init_commands", []), *(_cache_command(folder) for folder in caches),
        *(_train_command(config) for config in configs), manifest["command"]]))
    text = f"""# {manifest['name']}: a student of LiteMedSAM

An EfficientViT-style image encoder ({student['architecture']}: {student['params'] / 1e6:.2f} M parameters,
{student['gflops']} GFLOPs per 256x256 image; LiteMedSAM's TinyViT: 5.73 M, 74.9 GFLOPs) distilled from
LiteMedSAM. {SHARED_DECODER_NOTE} Licence: Apache-2.0, as the teacher.

## Training data
Only `../shared/corpus/`, license classes **{', '.join(classes)}**
({images} images from {', '.join(sources)}), {views} views: view 0 of every image as the runtime
sees it, then augmented views (crops, flips, rotations, coarser resolution, windows, gamma, noise, blur, mixing). Every
{configs[0]['validation_every']}th image was held out to watch the loss. Nothing from `../shared/data/` (the
evaluation cases) was used. INT8 calibration: {len(manifest['calibration']['images'])} permissive corpus images.
Images of the caches of the stages below (an earlier stage, described by its own paragraph, may have used
another cache); held-out images are every {configs[0]['validation_every']}th of each source:

{source_table(metas, used)}

## Training
{stage_texts}

## Reproduce
```
{commands}
```
(On a GPU the same commands run with CUDA and bf16; `torchrun --nproc-per-node N -m imis_lite.distill.train ...` for several.)

## Export parity (24 held-out permissive corpus images, largest object, against the PyTorch student)
| check | value |
|---|---|
{parity}

## Accuracy and speed
Measured with `python -m imis_lite.benchmarks` on `../shared/data`: see the README's benchmark section
(the numbers there are the ones to quote; this card is written at export time, before the benchmark).
"""
    path.write_text(text)
