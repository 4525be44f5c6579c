"""Charts in one style: matplotlib (Agg), Okabe-Ito colour-blind-safe palette, PNG.

Names from the logs (models, teams) are drawn shortened (`usage_jobs.names.chart_labels`:
at most 40 characters, invisible bidi/format characters dropped), so a 500-character
name cannot stretch a chart; the full names are in the table beside every chart.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.collections import PolyCollection  # noqa: E402

from usage_jobs.names import chart_labels  # noqa: E402

PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000", "#999999"]
STYLE = {
    "font.size": 9, "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.3,
    "axes.prop_cycle": matplotlib.cycler(color=PALETTE), "figure.dpi": 100, "savefig.bbox": "tight",
}


def _save(fig, path: Path) -> None:
    """The figure cropped to what it draws, as `savefig.bbox: tight` crops it, but drawn once: "tight" draws the whole figure to
    measure it, then again to save it (half of a chart's time); the extent is measured without drawing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    extent = fig.get_tightbbox(fig.canvas.get_renderer()).padded(plt.rcParams["savefig.pad_inches"])
    fig.savefig(path, format="png", metadata={"Software": None}, bbox_inches=extent)
    plt.close(fig)


def _day_ticks(ax, labels: list[str]) -> None:
    """One label per day up to a month; a quarter's or a year's every 7th or 30th day, so the labels stay legible."""
    step = 1 if len(labels) <= 31 else 7 if len(labels) <= 120 else 30
    ax.set_xticks(range(0, len(labels), step), labels[::step])
    ax.tick_params(axis="x", labelrotation=45 if len(labels) > 7 else 0)


def stacked_bars(path: Path, labels: list[str], series: dict[str, list[float]], *, ylabel: str, title: str) -> None:
    """Bars per day, one stacked segment per series (legend outside, readable in print)."""
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(7.5, 3.2))
        labels = chart_labels(labels)
        series = dict(zip(chart_labels(list(series)), series.values()))
        bottom = np.zeros(len(labels))
        for index, (name, values) in enumerate(series.items()):
            # One collection of the series' bars, as ax.bar draws them (0.8 wide, from the bars below): ax.bar makes an artist a
            # bar, and a year's 9 series of 365 bars took 1.3 s to draw, a chart of each large period every day.
            top = bottom + np.asarray(values, dtype=float)
            left, right = np.arange(len(labels)) - 0.4, np.arange(len(labels)) + 0.4
            bars = PolyCollection(np.stack([np.column_stack(corner) for corner in ((left, bottom), (left, top), (right, top), (right, bottom))], axis=1),
                                  label=name, facecolors=PALETTE[index % len(PALETTE)], edgecolors="white",
                                  hatch=["", "//", "..", "xx", "\\\\", "oo", "--", "++", "**"][index // len(PALETTE) % 9],
                                  linewidths=0.4 if len(labels) <= 31 else 0)  # thin bars of a quarter or a year: no edge to wash them out
            bars.sticky_edges.y.append(0)  # as a bar's: no margin under zero
            ax.add_collection(bars)
            bottom = top
        ax.autoscale_view()
        ax.set_ylabel(ylabel)
        ax.set_title(title, loc="left")
        _day_ticks(ax, labels)
        if len(series) > 1:
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
        _save(fig, path)


def lines(path: Path, labels: list[str], series: dict[str, list[float | None]], *, ylabel: str, title: str) -> None:
    """One line per series over the days (a gap where a day has no value)."""
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(7.5, 3.0))
        for index, (name, values) in enumerate(zip(chart_labels(list(series)), series.values())):
            ax.plot(range(len(labels)), [float("nan") if v is None else v for v in values], label=name, color=PALETTE[index % len(PALETTE)],
                    linestyle=["-", "--", ":", "-."][index % 4], marker="o", markersize=3)
        _day_ticks(ax, labels)
        ax.set_ylabel(ylabel)
        ax.set_ylim(bottom=0)
        ax.set_title(title, loc="left")
        if len(series) > 1:
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
        _save(fig, path)


def horizontal_bars(path: Path, labels: list[str], values: list[float], *, xlabel: str, title: str) -> None:
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(7.5, 0.35 * max(len(labels), 3) + 0.8))
        positions = list(range(len(labels)))[::-1]  # by position, not by text: two names cut alike stay two bars
        ax.barh(positions, values, color=PALETTE[0])
        ax.set_yticks(positions, chart_labels(labels))
        ax.set_xlabel(xlabel)
        ax.set_title(title, loc="left")
        _save(fig, path)


def variance_bars(path: Path, labels: list[str], series: dict[str, list[float | None]], *, title: str) -> None:
    """Signed % variance per label, one bar per series side by side; zero line marked (gaps for n/a)."""
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(7.5, 0.45 * max(len(labels), 3) + 0.9))
        height = 0.8 / max(len(series), 1)
        positions = list(range(len(labels)))[::-1]
        for index, (name, values) in enumerate(series.items()):
            ax.barh([p + (index - (len(series) - 1) / 2) * height for p in positions], [v if v is not None else 0 for v in values],
                    height=height, label=name, color=PALETTE[index], hatch=["", "//"][index % 2], edgecolor="white", linewidth=0.4)
        ax.axvline(0, color="#000000", linewidth=0.8)
        ax.set_yticks(positions, chart_labels(labels))
        ax.set_xlabel("(billed − estimated) ÷ estimated, %")
        ax.set_title(title, loc="left")
        if len(series) > 1:
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
        _save(fig, path)


def commit_gauge(path: Path, *, spent: float, projected: float, commit: float, currency: str) -> None:
    """The month's commit as a bar: spent so far, projected month end (outline), commit line."""
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(7.5, 1.5))
        ax.barh([0], [projected], color="white", edgecolor=PALETTE[1], hatch="//", linewidth=1.2, label="projected month end")
        ax.barh([0], [spent], color=PALETTE[0], label="spent so far")
        ax.axvline(commit, color="#000000", linewidth=2, label="monthly commit")
        ax.set_yticks([])
        ax.set_xlim(0, max(projected, commit, spent) * 1.08 or 1)
        ax.set_xlabel(currency)
        ax.grid(axis="y", visible=False)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
        _save(fig, path)
