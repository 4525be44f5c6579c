"""Charts in one style: matplotlib (Agg), Okabe-Ito colour-blind-safe palette, PNG."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000", "#999999"]
STYLE = {
    "font.size": 9, "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.3,
    "axes.prop_cycle": matplotlib.cycler(color=PALETTE), "figure.dpi": 100, "savefig.bbox": "tight",
}


def _save(fig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", metadata={"Software": None})
    plt.close(fig)


def stacked_bars(path: Path, labels: list[str], series: dict[str, list[float]], *, ylabel: str, title: str) -> None:
    """Bars per day, one stacked segment per series (legend outside, readable in print)."""
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(7.5, 3.2))
        bottom = [0.0] * len(labels)
        for index, (name, values) in enumerate(series.items()):
            ax.bar(labels, values, bottom=bottom, label=name, color=PALETTE[index % len(PALETTE)],
                   hatch=["", "//", "..", "xx", "\\\\", "oo", "--", "++", "**"][index // len(PALETTE) % 9], edgecolor="white", linewidth=0.4)
            bottom = [b + v for b, v in zip(bottom, values)]
        ax.set_ylabel(ylabel)
        ax.set_title(title, loc="left")
        ax.tick_params(axis="x", labelrotation=45 if len(labels) > 7 else 0)
        if len(series) > 1:
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
        _save(fig, path)


def horizontal_bars(path: Path, labels: list[str], values: list[float], *, xlabel: str, title: str) -> None:
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(7.5, 0.35 * max(len(labels), 3) + 0.8))
        ax.barh(labels[::-1], values[::-1], color=PALETTE[0])
        ax.set_xlabel(xlabel)
        ax.set_title(title, loc="left")
        _save(fig, path)
