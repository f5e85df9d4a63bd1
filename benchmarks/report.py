"""Markdown table and PNG plots of a benchmark run."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .accuracy import LOOSE_Z


def _get(row: dict, dims: str, key: str) -> str:
    value = row["accuracy"].get(dims, {}).get("all", {}).get(key)
    return "-" if value is None else f"{value:.4f}"


def _wall_clock(stages: dict[str, float]) -> str:
    parts = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in stages.items())
    return f"Wall clock {sum(stages.values()) / 60:.1f} min: {parts}"


def results_table(payload: dict) -> str:
    machine, rows = payload["machine"], payload["rows"]
    reference = np.median(rows[0]["encoder_ms"])
    lines = [
        f"Machine: {machine['cpu']} ({', '.join(machine['flags']) or 'no AVX-512/VNNI'}), {machine['threads']} threads; "
        f"CLI cold start {payload['cli_cold_start_s']['--version']} s (--version), {payload['cli_cold_start_s']['models']} s (models)",
        _wall_clock(payload.get("stage_seconds", {})),
        "",
        "| variant | arithmetic | 2D DSC | 2D NSD | 2D DSC +5 clicks | 3D DSC | 3D NSD | encoder ms (p90) | decoder ms "
        f"| 3D organ s | encoder vs {rows[0]['variant']} | peak RSS MB | size MB |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        encoder = np.median(row["encoder_ms"])
        clicks = row["accuracy"].get("clicks", {}).get("dsc_per_click")
        cells = [
            row["variant"], row["arithmetic"], _get(row, "2d", "dsc"), _get(row, "2d", "nsd"),
            f"{clicks[-1]:.4f}" if clicks else "-", _get(row, "3d", "dsc"), _get(row, "3d", "nsd"),
            f"{encoder:.0f} ({np.percentile(row['encoder_ms'], 90):.0f})", f"{np.median(row['decoder_ms']):.1f}",
            f"{row['organ_3d']['seconds']:.1f}" if row.get("organ_3d") else "-", f"{reference / encoder:.2f}x",
            str(row.get("peak_rss_mb", "-")), str(row.get("size_mb", "-")),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    modalities = sorted({m for row in rows for m in row["accuracy"].get("2d", {}) if m != "all"})
    if modalities:
        lines += ["", "2D DSC / NSD per modality:", "",
                  "| variant | " + " | ".join(modalities) + " |", "|---|" + "---:|" * len(modalities)]
        for row in (r for r in rows if "2d" in r["accuracy"]):
            cells = [row["accuracy"]["2d"].get(m) for m in modalities]
            lines.append(f"| {row['variant']} | " + " | ".join(f"{c['dsc']:.3f} / {c['nsd']:.3f}" if c else "-" for c in cells) + " |")
    with_clicks = [r for r in rows if r["accuracy"].get("clicks", {}).get("per_modality")]
    if with_clicks:
        lines += ["", "2D DSC after the box -> after 5 corrective clicks, per modality:", "",
                  "| variant | all | " + " | ".join(modalities) + " |", "|---|---:|" + "---:|" * len(modalities)]
        for row in with_clicks:
            clicks = row["accuracy"]["clicks"]
            curves = [clicks["dsc_per_click"]] + [clicks["per_modality"].get(m) for m in modalities]
            lines.append(f"| {row['variant']} | " + " | ".join(f"{c[0]:.3f} -> {c[-1]:.3f}" if c else "-" for c in curves) + " |")
    three_d = [r for r in rows if "3d" in r["accuracy"]]
    if three_d:
        lines += ["", "3D: propagated volume vs its middle slice alone (box-prompted) and vs LiteMedSAM's own propagation "
                  "scheme, mean over objects:", "",
                  "| variant | 3D DSC | LiteMedSAM scheme 3D DSC | middle slice DSC | objects | objects below middle - 0.05 "
                  "| every slice its ground-truth box: 3D DSC | ... objects below middle - 0.05 "
                  f"| z-range {LOOSE_Z} slices looser each end: 3D DSC | ... LiteMedSAM scheme |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for row in three_d:
            for group in sorted(row["accuracy"]["3d"], key=lambda g: g != "all"):
                total = row["accuracy"]["3d"][group]
                lines.append(f"| {row['variant']} ({group}) | {total['dsc']:.4f} | {total.get('litemedsam_scheme_dsc', float('nan')):.4f} "
                             f"| {total.get('middle_slice_dsc', float('nan')):.4f} "
                             f"| {total['objects']} | {total.get('objects_below_middle_minus_0.05', '-')} "
                             f"| {total.get('truth_box_per_slice_dsc', float('nan')):.4f} "
                             f"| {total.get('truth_box_per_slice_below_middle_minus_0.05', '-')} "
                             f"| {total.get('loose_z_dsc', float('nan')):.4f} "
                             f"| {total.get('loose_z_litemedsam_scheme_dsc', float('nan')):.4f} |")
    if payload.get("cli_3d"):
        lines += ["", "3D through the CLI (example_ct_sm.nii.gz, largest organ, default engine and precision):", "",
                  "| model | seconds | Dice |", "|---|---:|---:|"]
        lines += [f"| {model} | {r['seconds']} | {r['dice']} |" for model, r in payload["cli_3d"].items()]
    if payload.get("serve_3d"):
        lines += ["", "The same organ through `imis-lite serve` (nninteractive-client: a 2D box on its middle slice):", "",
                  "| model | set_image s | box s | box s, embeddings cached | Dice | CLI s |", "|---|---:|---:|---:|---:|---:|"]
        for model, r in payload["serve_3d"].items():
            cli = payload.get("cli_3d", {}).get(model, {}).get("seconds", "-")
            lines.append(f"| {model} | skipped: {r['skipped']} | | | | |" if "skipped" in r else
                         f"| {model} | {r['set_image_s']} | {r['box_s']} | {r['box_cached_s']} | {r['dice']} | {cli} |")
    for model, r in payload.get("big_volume", {}).items():
        lines += ["", f"Big CT through the CLI ({model}, {'x'.join(map(str, r['shape']))} int16, a box over {r['box_slices']} "
                  f"slices): {r['seconds']} s, peak RSS {r['peak_rss_mb']} MB"]
    return "\n".join(lines)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def accuracy_plot(rows: list[dict], path: Path) -> None:
    """2D box DSC against encoder median latency, one point per variant."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(7, 4.5))
    for row in rows:
        x, y = np.median(row["encoder_ms"]), row["accuracy"].get("2d", {}).get("all", {}).get("dsc", np.nan)
        axis.scatter(x, y)
        axis.annotate(row["variant"], (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    axis.set_xlabel("encoder median latency (ms), 2 threads")
    axis.set_ylabel("2D box-prompt DSC")
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def clicks_plot(rows: list[dict], path: Path) -> None:
    """DSC after the box (0) and after each corrective click."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(7, 4.5))
    for row in rows:
        curve = row["accuracy"].get("clicks", {}).get("dsc_per_click")
        if curve:
            axis.plot(range(len(curve)), curve, marker="o", label=row["variant"])
    axis.set_xlabel("corrective clicks after the box")
    axis.set_ylabel("mean 2D DSC")
    axis.legend(fontsize=8)
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
