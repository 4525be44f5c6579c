"""Odd names from the logs are shown safely and legibly (DESIGN §7, issue 10 item 6).

A 500-character alias or model name is shortened in charts (which keep their usual
width) and kept whole in the HTML tables and in a `title`; a right-to-left override
(`evil\u202etxt.exe`) is isolated in `<bdi>` so it cannot reorder the text around it,
checked in Chromium too, and kept as it is in CSV and JSON; a model name with white
space around it from IG1 is the same model as the one from the logs."""

import csv
import datetime as dt
import json
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path
from xml.etree import ElementTree

import pytest

from helpers import DAY, ingest, payload, write
from usage_jobs.defs.billing.client import BillingClient
from usage_jobs.defs.billing.fx import UsdRates
from usage_jobs.defs.billing.parse import BillingFormatError, parse_history
from usage_jobs.defs.billing.reconcile import reconcile, store_history
from usage_jobs.defs.gateway.aggregates import aggregate_day
from usage_jobs.defs.report.build import build_site
from usage_jobs.defs.report.table_data import read_script
from usage_jobs.demo.emulator import IG1Emulator
from usage_jobs.names import chart_labels, normalise_name, plain_label

RLO_NAME = "evil\u202etxt.exe"
LONG = "L" * 500
LONG_TWIN = "L" * 499 + "M"  # the same first 40 characters: must stay a separate bar
MASTER_KEY = "ig1-names-test-key"
USUAL_CHART_WIDTH = 1100  # px: the plot plus labels of at most 40 characters; a 500-character label made 4,110
SVG = "{http://www.w3.org/2000/svg}"


def _svg(path: Path) -> tuple[int, int, list[str]]:
    """A chart's width, height and texts: read as XML, so a name that broke the markup fails here."""
    root = ElementTree.parse(path).getroot()
    return int(root.get("width")), int(root.get("height")), [text.text for text in root.iter(f"{SVG}text")]


def _build(tmp_path: Path, names: list[str], *, tags: bool = True) -> Path:
    """One day of real logs where each name is a key alias, a team name, a model and a tag; built into a site."""
    lines = []
    for index, name in enumerate(names):
        metadata = {"user_api_key_hash": f"{index + 1:064x}", "user_api_key_alias": name, "user_api_key_team_id": f"team-{index}",
                    "user_api_key_team_alias": name}
        for repeat in range(index + 1):  # different spends, so the order of bars is fixed
            lines.append(json.dumps(payload(f"req-{index}-{repeat}", metadata=metadata, model_group=name, request_tags=[name] if tags else [])))
    write(tmp_path / "logs" / "gcs" / DAY.isoformat() / "batch.ndjson", "\n".join(lines) + "\n")
    conn, stats = ingest(tmp_path / "logs", tmp_path)
    assert stats.rejected == 0
    aggregate_day(conn, DAY)
    build_site(conn, tmp_path / "site", timezone="UTC", billing_configured=False, generated_at=dt.datetime(2026, 11, 11, tzinfo=dt.UTC))
    conn.close()
    return tmp_path / "site"


@pytest.fixture(scope="module")
def odd_site(tmp_path_factory) -> Path:
    return _build(tmp_path_factory.mktemp("odd-names"), [LONG, LONG_TWIN, RLO_NAME, "plain-model"])


# --- charts -----------------------------------------------------------------------------

def test_charts_keep_their_usual_width_whatever_the_length_of_a_name(odd_site):
    charts = sorted((odd_site / "periods").glob("*/charts/*.svg"))
    assert {p.name for p in charts} >= {"daily-spend.svg", "models-spend.svg", "teams-spend.svg"}
    for path in charts:
        width, height, texts = _svg(path)
        assert width <= USUAL_CHART_WIDTH and height <= 600, (path.parent.parent.name, path.name, width, height)
        assert all(len(text) <= 40 and "\u202e" not in text for text in texts), (path.name, texts)


def test_chart_labels_are_shortened_distinct_and_free_of_invisible_characters():
    labels = chart_labels([LONG, LONG_TWIN, RLO_NAME, "a\tb\r\nc", "gpt-4o"])
    assert all(len(label) <= 40 for label in labels)
    assert labels[0].endswith("…") and labels[0] != labels[1]  # two names cut alike stay two bars / legend entries
    assert labels[2] == "eviltxt.exe" and labels[3] == "a b c" and labels[4] == "gpt-4o"
    assert plain_label("x" * 40) == "x" * 40 and plain_label("x" * 41) == "x" * 39 + "…"


# --- HTML -------------------------------------------------------------------------------

class _NameFinder(HTMLParser):
    """Where each occurrence of a name sits: the open elements around it (text) or the attribute holding it."""

    def __init__(self, name: str):
        super().__init__(convert_charrefs=True)
        self.name, self.stack, self.in_text, self.in_attributes, self.titles = name, [], [], [], []

    def handle_starttag(self, tag, attrs):
        for attribute, value in attrs:
            if value and self.name in value:
                self.in_attributes.append((tag, attribute))
        if tag not in ("meta", "link", "img", "br", "input"):
            self.stack.append(tag)

    def handle_endtag(self, tag):
        while self.stack and self.stack.pop() != tag:
            pass

    def handle_data(self, data):
        if self.name in data:
            if self.stack and self.stack[-1] == "title":
                self.titles.append(data)
            else:
                self.in_text.append((tuple(self.stack), data))


def test_every_name_from_the_logs_is_isolated_in_bdi(odd_site):
    pages = sorted(odd_site.rglob("*.html"))
    shown = 0
    for page in pages:
        finder = _NameFinder(RLO_NAME)
        finder.feed(page.read_text(encoding="utf-8"))
        for stack, text in finder.in_text:
            if stack[-1] == "pre":  # the print page's preformatted lists hold no element in a line: FSI … PDI, as <title>
                assert f"\u2068{RLO_NAME}\u2069" in text and page.name == "print.html", (page.relative_to(odd_site), stack)
            else:
                assert stack[-1] == "bdi", (page.relative_to(odd_site), stack)
        for title in finder.titles:
            assert f"\u2068{RLO_NAME}\u2069" in title, (page.relative_to(odd_site), title)  # <title> holds no element: FSI … PDI
        assert {attribute for _, attribute in finder.in_attributes} <= {"data-name", "title"}
        shown += len(finder.in_text)
    assert shown >= 10  # as alias, team and model on the global, keys, teams, models, team and key pages


def test_a_long_name_is_whole_in_the_tables_and_shortened_with_a_title_in_headings(odd_site):
    day = odd_site / "periods" / DAY.isoformat()
    # keys.html's tables are drawn in the browser from keys-data.js, whole aliases in it (set as text in <bdi>: test_browser.py)
    keys = [key[0] for key in read_script((day / "keys-data.js").read_text(encoding="ascii"))["keys"]]
    assert LONG in keys and LONG_TWIN in keys and LONG not in (day / "keys.html").read_text(encoding="utf-8")
    models = (day / "models.html").read_text(encoding="utf-8")
    assert f"<bdi>{LONG}</bdi>" in models
    # A key's page is drawn in the browser from its month's key data, the whole alias in it (shortened in the heading with a
    # title, as names.name_html(…, 60): test_browser.py); the key page itself holds no name.
    month = odd_site / "periods" / DAY.strftime("%Y-%m")
    aliases = [key[0] for key in read_script((month / "key-data.js").read_text(encoding="ascii"))["keys"].values()]
    assert sorted(aliases) == sorted([LONG, LONG_TWIN, RLO_NAME, "plain-model"])
    assert LONG not in (month / "key.html").read_text(encoding="utf-8")


def test_csv_and_json_keep_the_names_as_they_came(odd_site):
    exports = odd_site / "periods" / DAY.isoformat() / "exports"
    with (exports / "keys.csv").open(encoding="utf-8", newline="") as stream:
        aliases = {row["key_alias"] for row in csv.DictReader(stream)}
    assert {RLO_NAME, LONG, LONG_TWIN} <= aliases
    models = {row["model"] for row in json.loads((exports / "models.json").read_text(encoding="utf-8"))["data"]}
    assert {RLO_NAME, LONG, LONG_TWIN} <= models


def test_a_right_to_left_override_does_not_reorder_the_text_after_it_in_a_browser(odd_site, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver_path = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
    assert chromium.exists() and driver_path.exists(), "Chromium is installed by `make test` (Debian packages chromium, chromium-driver)"
    options = webdriver.ChromeOptions()
    options.binary_location = str(chromium)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", "--window-size=1280,1600",
                 f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Service(str(driver_path)), options=options)
    try:
        browser.get((odd_site / "periods" / DAY.isoformat() / "keys.html").as_uri())
        # The key's cell: alias link, then the hash in <code>. With the override left open, the hash
        # would be laid out right to left, before the alias; isolated, it stays after it.
        boxes = browser.execute_script("""
            const name = arguments[0];
            for (const link of document.querySelectorAll("td a")) {
                if (link.textContent === name) {
                    const code = link.parentElement.querySelector("code");
                    return [link.getBoundingClientRect().right, code.getBoundingClientRect().left, link.parentElement.textContent];
                }
            }
            return null;""", RLO_NAME)
    finally:
        browser.quit()
    assert boxes is not None
    link_right, code_left, _ = boxes
    assert code_left >= link_right - 0.5


# --- one normalisation of model names for the logs and IG1 -------------------------------

def test_the_one_rule_trims_the_white_space_ingest_trims():
    assert normalise_name("  qwen3-32b\t\r\n") == "qwen3-32b"
    assert normalise_name("mid dle") == "mid dle" and normalise_name(" \t ") is None and normalise_name(None) is None


def test_ig1_model_names_are_normalised_and_a_blank_or_repeated_one_refused():
    history = parse_history({"currency": "EUR", "data": [
        {"date": "2026-11-10", "model": " qwen35-35b-a3b-instruct\t", "input_tokens": 1, "output_tokens": 2, "cost": 0.5}]},
        DAY, DAY)
    assert [row.model for row in history.rows] == ["qwen35-35b-a3b-instruct"]
    with pytest.raises(BillingFormatError, match="model"):
        parse_history({"currency": "EUR", "data": [{"date": "2026-11-10", "model": " \t", "input_tokens": 1, "output_tokens": 2, "cost": 0.5}]}, DAY, DAY)
    with pytest.raises(BillingFormatError, match="repeats"):
        parse_history({"currency": "EUR", "data": [
            {"date": "2026-11-10", "model": m, "input_tokens": 1, "output_tokens": 2, "cost": 0.5} for m in ("m", " m ")]}, DAY, DAY)


def _reconcile_with_ig1(tmp_path: Path, logged_model: str, billed_model: str) -> list[tuple]:
    """Logs name the model one way, IG1 (the emulator, over HTTP) another: what reconciliation holds."""
    lines = [json.dumps(payload(f"req-{i}", model_group=logged_model)) for i in range(3)]
    write(tmp_path / "logs" / "gcs" / DAY.isoformat() / "batch.ndjson", "\n".join(lines) + "\n")
    conn, _ = ingest(tmp_path / "logs", tmp_path)
    aggregate_day(conn, DAY)
    ledger = {"currency": "EUR", "commit": 100, "max_throughput": 10,
              "data": [{"date": DAY.isoformat(), "model": billed_model, "input_tokens": 300, "output_tokens": 60, "requests": 3, "cost": 0.003}]}
    with IG1Emulator(ledger, MASTER_KEY, today=DAY + dt.timedelta(days=1)) as emulator, BillingClient(emulator.url, MASTER_KEY) as client:
        store_history(conn, client.history(DAY, DAY), DAY, DAY)
    reconcile(conn, DAY, DAY, billing_timezone="UTC", report_timezone="UTC", rates=UsdRates(constant=Decimal("1.1")))
    rows = conn.execute("SELECT model, status FROM reconciliation ORDER BY model").fetchall()
    conn.close()
    return rows


def test_a_model_with_white_space_from_ig1_reconciles_with_the_same_model_from_the_logs(tmp_path):
    rows = _reconcile_with_ig1(tmp_path, "  qwen35-35b-a3b-instruct ", " qwen35-35b-a3b-instruct\t")
    assert rows == [("qwen35-35b-a3b-instruct", "reconciled")]


def test_a_model_with_only_trailing_white_space_in_the_logs_is_the_same_model_too(tmp_path):
    rows = _reconcile_with_ig1(tmp_path, "qwen35-35b-a3b-instruct  ", "qwen35-35b-a3b-instruct")
    assert rows == [("qwen35-35b-a3b-instruct", "reconciled")]
