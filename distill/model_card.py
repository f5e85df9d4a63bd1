"""MODEL_CARD.md for a distilled bundle: what it is, what it learned from, how to make it again, how good it is."""

from __future__ import annotations

import json
import platform
from pathlib import Path


def _training_summary(run: Path) -> dict:
    lines = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if line.strip()]
    last = lines[-1]
    validated = [line for line in lines if "validation" in line]
    return {"steps": last["step"], "hours": round(last["elapsed_s"] / 3600, 2), "final": last,
            "validation": validated[-1]["validation"] if validated else {}}


def cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def write_model_card(path: Path, manifest: dict, run: Path) -> None:
    config = json.loads((run / "config.json").read_text())
    cache_meta = json.loads((Path(config["cache"]) / "meta.json").read_text())
    summary = _training_summary(run)
    teacher = cache_meta["teacher"]
    used = json.loads((Path(config["cache"]) / "progress.json").read_text())["complete"]
    images = len({path for path, _ in cache_meta["items"][:used]})
    student = manifest["student"]
    parity = "\n".join(f"| {key} | {value} |" for key, value in manifest["parity"].items())
    text = f"""# {manifest['name']}: a student of LiteMedSAM

An EfficientViT-style image encoder ({student['architecture']}: {student['params'] / 1e6:.2f} M parameters,
{student['gflops']} GFLOPs per 256x256 image; LiteMedSAM's TinyViT: 5.73 M, 74.9 GFLOPs) distilled from
LiteMedSAM. The mask decoder is LiteMedSAM's, unchanged (the bundle uses `../litemedsam/decoder.onnx`, checked
by sha256), and so is the prompt encoder's box path. Licence: Apache-2.0, as the teacher.

## Training data
Only `../shared/corpus/`, license classes **{', '.join(cache_meta['license_classes'])}**
({images} images from {', '.join(cache_meta['sources'])}), {used} views: view 0 of every image as the runtime
sees it, then augmented views (crops, flips, rotations, windows, gamma, noise, blur, mixing). Every
{config['validation_every']}th image was held out to watch the loss. Nothing from `../shared/data/` (the
evaluation cases) was used. INT8 calibration: {len(manifest['calibration']['images'])} permissive corpus images.

## Training
Loss: normalised embedding MSE to the teacher + {config['prompt_weight']} x (box mask + 0.5 x click mask) decoded
through the frozen teacher decoder (BCE to the teacher's probabilities + soft Dice), the decoder term every
{config['prompt_every']} steps. AdamW, lr {config['lr']} (cosine, {config['warmup']} warm-up steps), batch
{config['batch']}, {summary['steps']} steps, seed {config['seed']}; {summary['hours']} h on {config['device']}
({cpu_name()}, {config['threads'] or 'all'} threads, world size {config['world_size']}).
Held-out corpus views at the end: {json.dumps(summary['validation'])}.

## Reproduce
```
python -m imis_lite.distill.teacher_cache --out runs/cache-{teacher} --views {cache_meta['views_per_image']} \\
    --seed {cache_meta['seed']} --limit {used}
python -m imis_lite.distill.train --cache runs/cache-{teacher} --out runs/{manifest['name']} --student {student['architecture']} \\
    --steps {config['steps']} --batch {config['batch']} --lr {config['lr']} --prompt-weight {config['prompt_weight']} \\
    --prompt-every {config['prompt_every']} --seed {config['seed']}
{manifest['command']}
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
