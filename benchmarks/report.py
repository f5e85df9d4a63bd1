"""Markdown tables and PNG plots of benchmark results."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .speed import Variant


def speed_table(variants: list[Variant], machine: dict) -> str:
    baseline = np.median(variants[0].encoder_ms)
    lines = [
        f"Machine: {machine['cpu']} ({', '.join(machine['flags']) or 'no AVX-512/VNNI'}), {machine['threads']} threads",
        "",
        f"| model | engine | weights | arithmetic | encoder median ms | encoder p90 ms | decoder ms/prompt | encoder speed-up vs {variants[0].engine} {variants[0].precision} |",
        "|---|---|---|---|---:|---:|---:|---:|",
    ]
    for v in variants:
        median = np.median(v.encoder_ms)
        lines.append(
            f"| {v.model} | {v.engine} | {v.precision} | {v.arithmetic} | {median:.0f} | "
            f"{np.percentile(v.encoder_ms, 90):.0f} | {np.median(v.decoder_ms):.1f} | {baseline / median:.2f}x |"
        )
    return "\n".join(lines)


def speed_plot(variants: list[Variant], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [v.label for v in variants]
    medians = [np.median(v.encoder_ms) for v in variants]
    figure, axis = plt.subplots(figsize=(8, 0.5 * len(labels) + 1.5))
    axis.barh(labels, medians, color="tab:blue")
    axis.set_xlabel("encoder median latency (ms), lower is better")
    axis.invert_yaxis()
    for y, value in enumerate(medians):
        axis.text(value, y, f" {value:.0f}", va="center")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
