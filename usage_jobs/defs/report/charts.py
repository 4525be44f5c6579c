"""Charts in one style, written as SVG: Okabe-Ito colour-blind-safe palette, hatching where colours repeat, a legend outside.

A chart is a few hundred shapes and labels, written as text in about a millisecond; matplotlib drew each one in ~90 ms, a
sixth of a new day's site at 3,000 keys (the large periods redraw ~10 charts each), and its PNG was a picture on paper where
the SVG prints as lines and text. Margins are sized from the labels they hold (a mean character width of the font).

Names from the logs (models, teams) are drawn shortened (`usage_jobs.names.chart_labels`: at most 40 characters, invisible
bidi/format characters dropped), so a 500-character name cannot stretch a chart; the full names are in the table beside every
chart. Every text is escaped: a name is never markup.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from pathlib import Path

from usage_jobs.names import chart_labels

PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000", "#999999"]
HATCHES = ["", "//", "..", "xx", "\\\\", "oo", "--", "++", "**"]  # a series past the palette's colours: the next hatch
DASHES = ["", "6 3", "2 2", "6 2 2 2"]
FONT = "DejaVu Sans, Verdana, Arial, sans-serif"
SIZE, SMALL, TITLE = 12, 10, 13  # px: tick and axis labels, legend, title
CHAR = 0.62  # the font's mean character width, in font sizes: what a label's room is sized from
PLOT_WIDTH = 560  # px: the plotting area of every chart, whatever its labels and legend
TOP, PAD = 30, 8  # px: room for the title above the plot; the margin around everything
GRID, INK = "#b0b0b0", "#000000"
OUTLINE = f'stroke="{PALETTE[1]}" stroke-width="1.2"'  # the commit gauge's projection


def _text_width(text: str, size: float) -> float:
    return len(text) * CHAR * size


def _num(value: float) -> str:
    """A coordinate: one decimal, no trailing zeros (smaller files, the same picture)."""
    text = f"{value:.1f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def ticks(low: float, high: float, count: int = 6) -> list[float]:
    """Evenly spaced round values (steps of 1, 2, 2.5 or 5 times a power of ten) covering low..high, about `count` steps."""
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        low, high = (low, low + 1) if math.isfinite(low) else (0.0, 1.0)
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw * (1 - 1e-9))
    first, last = math.floor(low / step + 1e-9), math.ceil(high / step - 1e-9)
    return [index * step for index in range(first, last + 1)]


def tick_label(value: float, values: list[float]) -> str:
    """A tick's text, in the unit of the largest (G, M from a thousand millions and a million; k from ten thousand) with the
    decimals its step needs."""
    largest = max(abs(v) for v in values)
    scale, suffix = next(((s, x) for s, x, least in ((1e9, "G", 1e9), (1e6, "M", 1e6), (1e3, "k", 1e4)) if largest >= least), (1, ""))
    step = (values[1] - values[0]) / scale if len(values) > 1 else 1
    decimals = max(0, -math.floor(math.log10(step) + 1e-9)) if step < 1 else 0
    if decimals == 1 and round(step * 10) != step * 10:  # a step of 0.25 and the like
        decimals = 2
    text = f"{value / scale:,.{decimals}f}"
    return ("0" if float(text.replace(",", "")) == 0 else text) + (suffix if value else "")


@dataclass
class _Scale:
    """Values low..high onto pixels start..end (end below start for a vertical axis)."""

    low: float
    high: float
    start: float
    end: float

    def __call__(self, value: float) -> float:
        return self.start + (value - self.low) / (self.high - self.low) * (self.end - self.start)


@dataclass
class _Svg:
    width: float
    height: float
    title: str
    parts: list[str] = field(default_factory=list)
    patterns: dict[tuple[str, str, bool], str] = field(default_factory=dict)

    def text(self, x: float, y: float, text: str, size: float = SIZE, anchor: str = "start", rotate: float | None = None) -> None:
        turn = f' transform="rotate({_num(rotate)} {_num(x)} {_num(y)})"' if rotate else ""
        self.parts.append(f'<text x="{_num(x)}" y="{_num(y)}" font-size="{_num(size)}" text-anchor="{anchor}"{turn}>{html.escape(text)}</text>')

    def line(self, x1: float, y1: float, x2: float, y2: float, colour: str = INK, width: float = 0.8, opacity: float = 1) -> None:
        fade = f' stroke-opacity="{opacity}"' if opacity != 1 else ""
        self.parts.append(f'<path d="M{_num(x1)} {_num(y1)}L{_num(x2)} {_num(y2)}" stroke="{colour}" stroke-width="{_num(width)}"{fade}/>')

    def fill(self, colour: str, hatch: str, on_white: bool = False) -> str:
        """A fill of `colour`, hatched in white (`on_white`: in `colour` on white) when `hatch` names one."""
        if not hatch:
            return colour
        key = (colour, hatch, on_white)
        if key not in self.patterns:
            self.patterns[key] = f"h{len(self.patterns)}"
        return f"url(#{self.patterns[key]})"

    def _pattern(self, key: tuple[str, str, bool], name: str) -> str:
        colour, hatch, on_white = key
        ground, ink = ("#ffffff", colour) if on_white else (colour, "#ffffff")
        strokes = {"/": "M-2 2L2 -2M0 8L8 0M6 10L10 6", "\\": "M-2 6L2 10M0 0L8 8M6 -2L10 2", "-": "M0 4H8", "+": "M0 4H8M4 0V8"}
        marks = "".join(strokes.get(mark, "") for mark in dict.fromkeys(hatch.replace("x", "/\\").replace("*", "/\\-")))
        dots = {".": '<circle cx="4" cy="4" r="1.2" fill="{ink}"/>', "o": '<circle cx="4" cy="4" r="2" fill="none" stroke="{ink}"/>'}
        shapes = "".join(dots[mark].format(ink=ink) for mark in dict.fromkeys(hatch) if mark in dots)
        lines = f'<path d="{marks}" stroke="{ink}" stroke-width="1"/>' if marks else ""
        return (f'<pattern id="{name}" patternUnits="userSpaceOnUse" width="8" height="8"><rect width="8" height="8" fill="{ground}"/>'
                f"{lines}{shapes}</pattern>")

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        defs = f"<defs>{''.join(self._pattern(key, name) for key, name in self.patterns.items())}</defs>" if self.patterns else ""
        width, height = math.ceil(self.width), math.ceil(self.height)
        path.write_text(f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
                        f'role="img" font-family="{FONT}"><title>{html.escape(self.title)}</title>{defs}'
                        f'<rect width="{width}" height="{height}" fill="#ffffff"/>{"".join(self.parts)}</svg>\n', encoding="utf-8")


def _legend(svg: _Svg, x: float, y: float, entries: list[tuple[str, str]], line_dashes: list[str] | None = None) -> None:
    """Entries (label, fill) as swatches down from (x, y); with `line_dashes`, as a line of the entry's colour and dashes."""
    for index, (label, fill) in enumerate(entries):
        top = y + index * 16
        if line_dashes is None:
            svg.parts.append(f'<rect x="{_num(x)}" y="{_num(top + 2)}" width="18" height="8" fill="{fill}"/>')
        else:
            dashes = f' stroke-dasharray="{line_dashes[index]}"' if line_dashes[index] else ""
            svg.parts.append(f'<path d="M{_num(x)} {_num(top + 6)}h18" stroke="{fill}" stroke-width="1.5"{dashes}/>'
                             f'<circle cx="{_num(x + 9)}" cy="{_num(top + 6)}" r="2" fill="{fill}"/>')
        svg.text(x + 24, top + 10, label, SMALL)


def _legend_width(labels: list[str]) -> float:
    return 24 + max(_text_width(label, SMALL) for label in labels) + PAD if len(labels) > 1 else 0


def _value_axis(svg: _Svg, scale: _Scale, values: list[float], left: float, right: float) -> None:
    """A vertical value axis: grid lines across the plot, labels left of it."""
    for value in values:
        y = scale(value)
        svg.line(left, y, right, y, GRID, 0.8, 0.6)
        svg.text(left - 5, y + 4, tick_label(value, values), anchor="end")


def _day_axis(svg: _Svg, labels: list[str], left: float, band: float, top: float, bottom: float) -> None:
    """One label per day up to a month; a quarter's or a year's every 7th or 30th day, so the labels stay legible; slanted past a
    week's."""
    step = 1 if len(labels) <= 31 else 7 if len(labels) <= 120 else 30
    for index in range(0, len(labels), step):
        x = left + band * (index + 0.5)
        svg.line(x, top, x, bottom, GRID, 0.8, 0.6)
        svg.line(x, bottom, x, bottom + 4)
        if len(labels) > 7:
            svg.text(x + 4, bottom + 14, labels[index], anchor="end", rotate=-45)
        else:
            svg.text(x, bottom + 17, labels[index], anchor="middle")


def _day_chart(labels: list[str], series: dict[str, list[float | None]], *, ylabel: str, title: str, height: float,
               stacked: bool) -> tuple[_Svg, _Scale, float, float, float]:
    """The frame of a chart over days: its axes, grid, title and legend; the value scale, the plot's left, band and bottom."""
    names = list(series)
    if stacked:
        tops = [sum(v or 0 for v in day) for day in zip(*series.values())] or [0]
        lows = [min(0.0, min(v or 0 for v in values)) for values in series.values()] or [0]
        low, high = min(lows), max(tops)
    else:
        present = [v for values in series.values() for v in values if v is not None and math.isfinite(v)]
        low, high = 0.0, max(present, default=0.0)
    values = ticks(low, high if high > low else low + 1)
    widest = max(_text_width(tick_label(v, values), SIZE) for v in values)
    left = PAD + SIZE + 10 + widest + 8
    depth = max(_text_width(label, SIZE) for label in labels) * 0.71 + 18 if len(labels) > 7 else 24
    plot_height = height - TOP - depth
    svg = _Svg(left + PLOT_WIDTH + 10 + _legend_width(names), max(height, TOP + 16 * len(names) + PAD), title)
    bottom = TOP + plot_height
    scale = _Scale(values[0], values[-1], bottom, TOP)
    band = PLOT_WIDTH / max(len(labels), 1)
    svg.text(left, TOP - 10, title, TITLE)
    svg.text(PAD + SIZE, TOP + plot_height / 2, ylabel, rotate=-90, anchor="middle")
    _value_axis(svg, scale, values, left, left + PLOT_WIDTH)
    _day_axis(svg, labels, left, band, TOP, bottom)
    return svg, scale, left, band, bottom


def _frame(svg: _Svg, left: float, top: float, bottom: float) -> None:
    """The left and bottom spines (no top or right one)."""
    svg.line(left, top, left, bottom)
    svg.line(left, bottom, left + PLOT_WIDTH, bottom)


def stacked_bars(path: Path, labels: list[str], series: dict[str, list[float]], *, ylabel: str, title: str) -> None:
    """Bars per day, one stacked segment per series, the first at the bottom (legend outside, readable in print)."""
    labels = chart_labels(labels)
    series = dict(zip(chart_labels(list(series)), series.values()))
    svg, scale, left, band, bottom = _day_chart(labels, series, ylabel=ylabel, title=title, height=320, stacked=True)
    base = [0.0] * len(labels)
    # a thin bar of a quarter or a year gets no edge to wash it out
    edge = ' stroke="#ffffff" stroke-width="0.4"' if len(labels) <= 31 else ""
    entries = []
    for index, (name, values) in enumerate(series.items()):
        colour = PALETTE[index % len(PALETTE)]
        fill = svg.fill(colour, HATCHES[index // len(PALETTE) % len(HATCHES)])
        bars = []
        for day, value in enumerate(values):
            if value:
                y0, y1 = scale(base[day]), scale(base[day] + value)
                bars.append(f"M{_num(left + band * (day + 0.1))} {_num(y0)}h{_num(band * 0.8)}V{_num(y1)}h{_num(-band * 0.8)}z")
                base[day] += value
        if bars:
            svg.parts.append(f'<path d="{"".join(bars)}" fill="{fill}"{edge}/>')
        entries.append((name, fill))
    _frame(svg, left, TOP, bottom)
    if len(entries) > 1:
        _legend(svg, left + PLOT_WIDTH + 10, TOP, entries)
    svg.save(path)


def lines(path: Path, labels: list[str], series: dict[str, list[float | None]], *, ylabel: str, title: str) -> None:
    """One line per series over the days, a dot on each day (a gap where a day has no value)."""
    series = dict(zip(chart_labels(list(series)), series.values()))
    svg, scale, left, band, bottom = _day_chart(labels, series, ylabel=ylabel, title=title, height=300, stacked=False)
    entries = []
    for index, (name, values) in enumerate(series.items()):
        colour, dash = PALETTE[index % len(PALETTE)], DASHES[index % len(DASHES)]
        points, steps, joined = [], [], False  # joined: the previous day has a value, the line goes on from it
        for day, value in enumerate(values):
            if value is None or not math.isfinite(value):
                joined = False
                continue
            points.append((left + band * (day + 0.5), scale(value)))
            steps.append(f"{'L' if joined else 'M'}{_num(points[-1][0])} {_num(points[-1][1])}")
            joined = True
        dashes = f' stroke-dasharray="{dash}"' if dash else ""
        if steps:
            svg.parts.append(f'<path d="{"".join(steps)}" fill="none" stroke="{colour}" stroke-width="1.5"{dashes}/>')
        svg.parts.extend(f'<circle cx="{_num(x)}" cy="{_num(y)}" r="2" fill="{colour}"/>' for x, y in points)
        entries.append((name, colour))
    _frame(svg, left, TOP, bottom)
    if len(entries) > 1:
        _legend(svg, left + PLOT_WIDTH + 10, TOP, entries, [DASHES[index % len(DASHES)] for index in range(len(entries))])
    svg.save(path)


def _across_axis(svg: _Svg, scale: _Scale, values: list[float], left: float, bottom: float, label: str) -> None:
    """A horizontal value axis under the plot: grid lines up through it, ticks and their labels, the axis's label."""
    for value in values:
        x = scale(value)
        svg.line(x, TOP, x, bottom, GRID, 0.8, 0.6)
        svg.line(x, bottom, x, bottom + 4)
        svg.text(x, bottom + 17, tick_label(value, values), anchor="middle")
    svg.text(left + PLOT_WIDTH / 2, bottom + 36, label, anchor="middle")


def _bar_chart(labels: list[str], low: float, high: float, row: float, legend: list[str], *, xlabel: str,
               title: str) -> tuple[_Svg, _Scale, float, float]:
    """The frame of a chart of horizontal bars, a row per label (the first at the top): the value scale, its left and top."""
    labels = chart_labels(labels)
    values = ticks(low, high if high > low else low + 1)
    left = PAD + max((_text_width(label, SIZE) for label in labels), default=0) + 10
    bottom = TOP + row * max(len(labels), 3)
    svg = _Svg(left + PLOT_WIDTH + 10 + _legend_width(legend), max(bottom + 46, TOP + 16 * len(legend) + PAD), title)
    scale = _Scale(values[0], values[-1], left, left + PLOT_WIDTH)
    svg.text(left, TOP - 10, title, TITLE)
    _across_axis(svg, scale, values, left, bottom, xlabel)
    for index, label in enumerate(labels):
        svg.text(left - 6, TOP + row * (index + 0.5) + 4, label, anchor="end")
    _frame(svg, left, TOP, bottom)
    return svg, scale, left, bottom


def horizontal_bars(path: Path, labels: list[str], values: list[float], *, xlabel: str, title: str) -> None:
    """A bar per label (by position, not by text: two names cut alike stay two bars)."""
    svg, scale, _, _ = _bar_chart(labels, min([0.0, *values]), max([0.0, *values]), 35, [], xlabel=xlabel, title=title)
    bars = [f"M{_num(scale(0))} {_num(TOP + 35 * (index + 0.1))}H{_num(scale(value))}v28H{_num(scale(0))}z"
            for index, value in enumerate(values) if value]
    if bars:
        svg.parts.append(f'<path d="{"".join(bars)}" fill="{PALETTE[0]}"/>')
    svg.save(path)


def variance_bars(path: Path, labels: list[str], series: dict[str, list[float | None]], *, title: str) -> None:
    """Signed % variance per label, one bar per series side by side; zero line marked (no bar for n/a)."""
    present = [v for values in series.values() for v in values if v is not None]
    names = list(series)
    svg, scale, _, bottom = _bar_chart(labels, min([0.0, *present]), max([0.0, *present]), 45, names if len(names) > 1 else [],
                                       xlabel="(billed − estimated) ÷ estimated, %", title=title)
    height = 45 * 0.8 / max(len(series), 1)
    entries = []
    for index, (name, values) in enumerate(series.items()):
        fill = svg.fill(PALETTE[index % len(PALETTE)], ["", "//"][index % 2])
        bars = [f"M{_num(scale(0))} {_num(TOP + 45 * (row + 0.1) + height * index)}H{_num(scale(value))}v{_num(height)}H{_num(scale(0))}z"
                for row, value in enumerate(values) if value]
        if bars:
            svg.parts.append(f'<path d="{"".join(bars)}" fill="{fill}" stroke="#ffffff" stroke-width="0.4"/>')
        entries.append((name, fill))
    svg.line(scale(0), TOP, scale(0), bottom)
    if len(entries) > 1:
        _legend(svg, svg.width - _legend_width(names), TOP, entries)
    svg.save(path)


def commit_gauge(path: Path, *, spent: float, projected: float, commit: float, currency: str) -> None:
    """The month's commit as a bar: spent so far, projected month end (outline), commit line."""
    labels = ["monthly commit", "projected month end", "spent so far"]
    values = ticks(0.0, max(projected, commit, spent) * 1.08 or 1)
    left, bottom = PAD + 4, TOP + 70
    svg = _Svg(left + PLOT_WIDTH + 10 + _legend_width(labels), bottom + 46, "Commit")
    scale = _Scale(values[0], values[-1], left, left + PLOT_WIDTH)
    _across_axis(svg, scale, values, left, bottom, currency)
    hatched = svg.fill(PALETTE[1], "//", on_white=True)
    svg.parts.append(f'<rect x="{_num(left)}" y="{TOP + 6}" width="{_num(scale(projected) - left)}" height="58" fill="{hatched}" {OUTLINE}/>')
    svg.parts.append(f'<rect x="{_num(left)}" y="{TOP + 6}" width="{_num(scale(spent) - left)}" height="58" fill="{PALETTE[0]}"/>')
    svg.line(scale(commit), TOP, scale(commit), bottom, INK, 2)
    _frame(svg, left, TOP, bottom)
    legend_x = left + PLOT_WIDTH + 10
    svg.line(legend_x, TOP + 6, legend_x + 18, TOP + 6, INK, 2)
    svg.text(legend_x + 24, TOP + 10, labels[0], SMALL)
    _legend(svg, legend_x, TOP + 16, [(labels[1], hatched), (labels[2], PALETTE[0])])
    svg.parts.append(f'<rect x="{_num(legend_x)}" y="{TOP + 18}" width="18" height="8" fill="none" {OUTLINE}/>')
    svg.save(path)
