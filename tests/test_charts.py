"""The SVG charts: round ticks covering the values, their labels, and bars drawn to scale."""

import re
from xml.etree import ElementTree

import pytest

from usage_jobs.defs.report import charts

SVG = "{http://www.w3.org/2000/svg}"


@pytest.mark.parametrize(("low", "high", "expected"), [
    (0, 4.2, [0, 1, 2, 3, 4, 5]),
    (0, 27, [0, 5, 10, 15, 20, 25, 30]),
    (-5, 13, [-5, 0, 5, 10, 15]),
    (0, 5.2e6, [0, 1e6, 2e6, 3e6, 4e6, 5e6, 6e6]),
    (0, 0, [0, 0.2, 0.4, 0.6, 0.8, 1.0]),  # nothing to show: a unit scale
])
def test_ticks_are_round_steps_covering_the_values(low, high, expected):
    assert charts.ticks(low, high) == pytest.approx(expected)


@pytest.mark.parametrize(("high", "labels"), [
    (4100, ["0", "1,000", "2,000", "3,000", "4,000", "5,000"]),
    (37000, ["0", "10k", "20k", "30k", "40k"]),
    (2.4e6, ["0", "0.5M", "1.0M", "1.5M", "2.0M", "2.5M"]),
    (0.3, ["0", "0.05", "0.10", "0.15", "0.20", "0.25", "0.30"]),
    (123456789012, ["0", "25G", "50G", "75G", "100G", "125G"]),
])
def test_tick_labels_take_the_unit_of_the_largest_and_the_decimals_of_the_step(high, labels):
    values = charts.ticks(0, high)
    assert [charts.tick_label(value, values) for value in values] == labels


def _bars(path) -> dict[str, list[tuple[float, float]]]:
    """Each series' bars (fill → [(bottom y, top y)]) of a stacked chart."""
    root = ElementTree.parse(path).getroot()
    bars = {}
    for shape in root.iter(f"{SVG}path"):
        if shape.get("fill") in charts.PALETTE:
            bars[shape.get("fill")] = [(float(y0), float(y1)) for y0, y1 in re.findall(r"M[\d.]+ ([\d.]+)h[\d.]+V([\d.]+)", shape.get("d"))]
    return bars


def test_stacked_bars_are_drawn_to_scale_each_series_on_the_one_below(tmp_path):
    path = tmp_path / "spend.svg"
    charts.stacked_bars(path, ["11-01", "11-02"], {"first": [1.0, 3.0], "second": [2.0, 0.0]}, ylabel="USD", title="Spend")
    bars = _bars(path)
    first, second = bars[charts.PALETTE[0]], bars[charts.PALETTE[1]]
    assert len(first) == 2 and len(second) == 1  # a zero draws no bar
    unit = (first[0][0] - first[0][1]) / 1.0
    assert first[1][0] - first[1][1] == pytest.approx(3 * unit, abs=0.1)
    assert second[0][0] == pytest.approx(first[0][1]) and second[0][0] - second[0][1] == pytest.approx(2 * unit, abs=0.1)
    texts = [text.text for text in ElementTree.parse(path).getroot().iter(f"{SVG}text")]
    assert {"Spend", "USD", "11-01", "11-02", "first", "second"} <= set(texts)


def test_a_name_is_text_in_the_chart_never_markup(tmp_path):
    path = tmp_path / "models.svg"
    charts.horizontal_bars(path, ["<script>alert(1)</script>", "a & b"], [2.0, 1.0], xlabel="USD", title="Spend by model")
    texts = [text.text for text in ElementTree.parse(path).getroot().iter(f"{SVG}text")]
    assert "<script>alert(1)</script>" in texts and "a & b" in texts
    assert "<script>" not in path.read_text(encoding="utf-8")
