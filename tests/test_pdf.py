"""A finance period's PDF: the global, teams and chargeback views on paper, read back with pypdf and
checked against the period's export files; and a build without Chromium, or with one that hangs or
fails, still publishes the site, without the PDF and saying so."""

import csv
import datetime as dt
import html
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import unicodedata
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from pathlib import Path

import pytest
from pypdf import PdfReader

from conftest import CHROMIUM, DEMO_DAYS, DEMO_END
from helpers import export_text, payload, write
from usage_jobs import warehouse
from usage_jobs.defs.gateway.aggregates import aggregate_day
from usage_jobs.defs.gateway.ingest import ingest_day
from usage_jobs.defs.gateway.pricing import load_prices
from usage_jobs.defs.report import build as site_build
from usage_jobs.defs.report import pdf
from usage_jobs.defs.report.build import build_site
from usage_jobs.defs.report.periods import Period, report_periods
from usage_jobs.names import FSI, PDI

MONTH = DEMO_END.strftime("%Y-%m")
SMALL_DAY = dt.date(2026, 11, 10)


def _finance(days: list[dt.date]) -> list[Period]:
    """The periods that get a PDF (month, and quarter and year where periods.py makes them)."""
    return [period for period in report_periods(days) if pdf.is_pdf_kind(period.kind)]


DEMO_FINANCE = _finance([DEMO_END - dt.timedelta(days=n) for n in range(DEMO_DAYS)])
SMALL_FINANCE = [period.slug for period in _finance([SMALL_DAY])]
NAVIGATION = ("Filter by team name", "Export data", "no earlier", "no later", "Last 30 days", "Data quality", "manifest.json", "All keys", "←", "→")


def _csv(path: Path) -> list[dict]:
    return list(csv.DictReader(io.StringIO(export_text(path), newline="")))


def _text(path: Path) -> str:
    """The PDF's text, whitespace collapsed (pypdf breaks lines where the page does), ligatures undone (ﬁ), names' isolates dropped."""
    text = unicodedata.normalize("NFKC", " ".join(" ".join(page.extract_text() for page in PdfReader(path).pages).split()))
    return text.replace(FSI, "").replace(PDI, "")  # the isolates around names in plain text


def _sections(path: Path) -> list[str]:
    """The PDF's top-level outline entries: one per view (its <h1>); the views' <h2> are nested under them."""
    return [entry["/Title"] for entry in PdfReader(path).outline if not isinstance(entry, list)]


def _pdf_links(folder: Path) -> dict[str, int]:
    return {page.relative_to(folder).as_posix(): page.read_text(encoding="utf-8").count(f'{pdf.pdf_name(folder.name)}"')
            for page in folder.rglob("*.html")}


@pytest.mark.parametrize("text", ["platform-code-04 · qwen35-397b (92.2%)", "search-rag-16-json-extract-1586 · " + "; ".join(
    f"qwen35-397b-a17b-instruct-general-{n} ({n}.0%)" for n in range(6))], ids=["short", "long"])
def test_a_printed_list_line_wraps_its_name_under_itself_within_the_paper_width(text):
    columns = f"{'2.37 EUR':>14} {'$2.55':>11} {'0.59%':>7}  "
    lines = pdf.hanging_line(text, columns).split("\n")
    assert lines[0].startswith(columns) and all(line.startswith(" " * len(columns)) and line.strip() for line in lines[1:])
    assert all(len(line) <= pdf.PRINT_LINE_WIDTH for line in lines)
    assert "".join(line[len(columns):] for line in lines).replace(" ", "") == text.replace(" ", "")  # every character, in order
    assert (len(lines) == 1) == (len(columns + text) <= pdf.PRINT_LINE_WIDTH)


def test_the_months_are_finance_periods():
    assert MONTH in {period.slug for period in DEMO_FINANCE} and "2026-11" in SMALL_FINANCE


@pytest.mark.parametrize("period", DEMO_FINANCE, ids=lambda period: period.slug)
def test_a_finance_pdf_holds_the_global_teams_and_chargeback_views_with_the_exports_figures(demo_site, period):
    """The demo site's (built through the site asset, Chromium found on PATH) PDF of each finance period."""
    month = demo_site.site_dir / "periods" / period.slug
    document = month / pdf.pdf_name(period.slug)
    assert document.is_file() and document.read_bytes().startswith(b"%PDF")
    assert [title.split(" ")[0] for title in _sections(document)] == ["Global", "Usage", "Chargeback"]
    text = _text(document)
    metadata = json.loads((month / "exports" / "manifest.json").read_text())["metadata"]
    for fact in (period.label, f"{metadata['start_date']} to {metadata['end_date']}", "Time zone: UTC", "Currency: USD", "Generated 20"):
        assert fact in text, fact
    teams = _csv(month / "exports" / "teams.csv")
    spend = sum((Decimal(row["spend_usd"]) for row in teams if row["spend_usd"]), Decimal(0))
    assert f"${spend:,.2f}" in text  # the global total, the teams' spend added up here
    lines = _csv(month / "exports" / "chargeback.csv")
    charged: dict[str, Decimal] = {}
    for line in lines:
        charged[line["team_id"]] = charged.get(line["team_id"], Decimal(0)) + Decimal(line["billed_cost"])
    currency = lines[0]["billed_currency"]
    assert len(charged) > 2 and f"chargeback in {currency}" in text
    for team, amount in charged.items():
        assert f"{amount:,.2f} {currency}" in text, team
    total = sum(charged.values(), Decimal(0))
    assert re.search(rf"{re.escape(f'{total:,.2f} {currency}')} \$[\d,]+\.\d\d 100\.00% Total", text)  # the statement's total line
    unbroken = "".join(text.split())  # a long line wraps where the page is full, a model's name after a hyphen too
    for team in teams:  # each team's line of the teams view: requests, failed, tokens and spend, then its name and top model
        counts = f"{int(team['requests']):,}{int(team['failed_requests']):,}{int(team['total_tokens']):,}"
        # The page rounds the exact spend to 4 decimals, the export to 6: a 6-decimal value ending in 50 may go either way.
        spends = {f"${Decimal(team['spend_usd']).quantize(Decimal('0.0001'), way):,}" for way in (ROUND_FLOOR, ROUND_CEILING)} if team["spend_usd"] else {"—"}
        name = f"{team['team_alias'] or team['team_id']} · {team['top_model'] or '—'}"
        assert any(counts + spend in unbroken for spend in spends) and "".join(name.split()) in unbroken, team["team_id"]
    for line in lines:  # each key's line of its team: its share, in USD, its share of the bill, its name and top models
        name = line["key_alias"] or line["key_hash"][:12]
        expected = (f"{Decimal(line['billed_cost']):,.2f} {currency} ${Decimal(line['billed_cost_usd']):,.2f} {Decimal(line['share_pct']):.2f}% "
                    f"{name} · {line['top_models'] or '—'}")
        assert "".join(expected.split()) in unbroken, name
    for word in NAVIGATION:  # no navigation, filter or export links on paper
        assert word not in text, word


def test_every_view_page_of_a_finance_period_links_its_pdf_and_no_other_period_has_one(demo_site):
    for period in DEMO_FINANCE:
        folder = demo_site.site_dir / "periods" / period.slug
        links = _pdf_links(folder)
        assert len(links) > 10 and all(count >= 1 for page, count in links.items() if page != "print.html"), links
        assert links["print.html"] == 0 and links["index.html"] == 2  # the navigation and the export links
        if period.kind in site_build.PAGE_KINDS:  # a month's team pages (a quarter's and a year's link those of the month)
            assert f'href="../{pdf.pdf_name(period.slug)}"' in next((folder / "teams").glob("*.html")).read_text(encoding="utf-8")
    for folder in (demo_site.site_dir / "periods").iterdir():
        if folder.name not in {period.slug for period in DEMO_FINANCE}:
            assert not list(folder.glob("*.pdf")) and not (folder / "print.html").exists(), folder.name
            assert "PDF (global" not in (folder / "index.html").read_text(encoding="utf-8"), folder.name


@pytest.fixture(scope="module")
def small_warehouse(tmp_path_factory) -> Path:
    """One day of three teams' requests, no IG1 billing: a site that builds in a few seconds."""
    root = tmp_path_factory.mktemp("small")
    lines = []
    for index in range(12):
        team = index % 3
        metadata = {"user_api_key_hash": f"{team:064x}", "user_api_key_alias": f"key-{team}", "user_api_key_team_id": f"team-{team}",
                    "user_api_key_team_alias": f"Team {team}"}
        lines.append(json.dumps(payload(f"req-{index}", metadata=metadata, response_cost=0.25 * (team + 1))))
    write(root / "logs" / "gcs" / SMALL_DAY.isoformat() / "batch.ndjson", "\n".join(lines) + "\n")
    conn = warehouse.connect(root / "w.duckdb")
    ingest_day(conn, logs_dir=root / "logs", day=SMALL_DAY, timezone="UTC", prices=load_prices(), max_record_bytes=16_000_000)
    aggregate_day(conn, SMALL_DAY)
    conn.close()
    return root / "w.duckdb"


def _build(small_warehouse: Path, site: Path, **kwargs):
    conn = warehouse.connect(small_warehouse, read_only=True)
    try:
        return build_site(conn, site, timezone="UTC", billing_configured=False, **kwargs)
    finally:
        conn.close()


def test_without_billing_the_pdf_says_so_and_an_unchanged_month_keeps_its_pdf(small_warehouse, tmp_path):
    site = tmp_path / "site"
    first = _build(small_warehouse, site, chromium=CHROMIUM)
    document = site / "periods" / "2026-11" / "2026-11-report.pdf"
    assert (first.pdfs, first.pdf_notes) == (len(SMALL_FINANCE), [])
    assert len(_sections(document)) == 3
    text = _text(document)
    assert "IG1 billing is not configured" in text and "$6.00" in text  # 4 × (0.25 + 0.50 + 0.75)
    printed = document.read_bytes()
    again = _build(small_warehouse, site, chromium=CHROMIUM)
    assert "2026-11" not in again.rendered and again.pdfs == len(SMALL_FINANCE) and document.read_bytes() == printed


def _not_executable(tmp_path: Path, monkeypatch) -> str:
    path = tmp_path / "chromium"
    path.write_text("not a program")
    return str(path)


def _none_on_path(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(site_build, "find_chromium", lambda configured=None: None)
    return None


@pytest.mark.parametrize("chromium", [_not_executable, _none_on_path], ids=["REPORT_CHROMIUM not executable", "none on PATH"])
def test_without_chromium_the_site_is_built_without_pdf_and_says_so_once(small_warehouse, tmp_path, monkeypatch, chromium):
    site = tmp_path / "site"
    result = _build(small_warehouse, site, chromium=chromium(tmp_path, monkeypatch))
    assert (site / "index.html").is_file() and result.pdfs == 0 and not list(site.rglob("*.pdf"))
    assert len(result.pdf_notes) == 1 and result.pdf_notes[0].startswith("No PDF was made")  # said once, not per period
    for slug in SMALL_FINANCE:
        month = site / "periods" / slug
        assert (month / "index.html").is_file() and (month / "print.html").is_file()
        for page, count in _pdf_links(month).items():
            assert count == 0, page
        for page in ("index.html", "teams.html", "keys.html"):
            assert "No PDF was made" in (month / page).read_text(encoding="utf-8"), page


HANGS = """#!/bin/sh
# A Chromium that never prints: it ignores SIGTERM, and so does the helper it starts.
trap '' TERM
sleep 300 &
echo "$$ $!" >> "{pids}"
wait
"""
FAILS = """#!/bin/sh
echo "$$" >> "{pids}"
echo "[0101/000000:FATAL:pdf_printer.cc] cannot print" >&2
exit 3
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A killed child not yet reaped by init is a zombie: gone for our purpose.
    status = Path(f"/proc/{pid}/stat")
    return status.exists() and status.read_text().split(") ")[-1][0] != "Z"


@pytest.mark.parametrize(("script", "reason"), [(HANGS, "did not finish within 1 s and was killed"), (FAILS, "exited with code 3")],
                         ids=["hangs", "fails"])
def test_a_chromium_that_hangs_or_fails_is_reported_by_period_and_the_build_goes_on(small_warehouse, tmp_path, monkeypatch, script, reason):
    pids = tmp_path / "pids"
    fake = tmp_path / "fake-chromium"
    fake.write_text(script.format(pids=pids))
    fake.chmod(0o755)
    monkeypatch.setattr(pdf, "TIMEOUT_SECONDS", 1.0)
    site = tmp_path / "site"
    started = time.monotonic()
    result = _build(small_warehouse, site, chromium=fake)
    assert time.monotonic() - started < 60
    assert (site / "index.html").is_file() and result.pdfs == 0 and not list(site.rglob("*.pdf"))
    for slug, note in zip(SMALL_FINANCE, result.pdf_notes, strict=True):  # one note per period, naming it
        assert note.startswith(f"PDF of {slug} not made:") and reason in note and (script is HANGS or "cannot print" in note)
        month = site / "periods" / slug
        for page, count in _pdf_links(month).items():
            assert count == 0, page
        assert html.escape(note) in (month / "index.html").read_text(encoding="utf-8")
        assert not (month / site_build.FINGERPRINT_FILE).exists()  # rendered and printed again by the next build
    pids = list(map(int, pids.read_text().split()))
    assert len(pids) == len(SMALL_FINANCE) * (2 if script is HANGS else 1)
    for pid in pids:  # each fake and the helper it started: all gone
        assert not _alive(pid), pid
    monkeypatch.undo()  # a real Chromium, its real timeout
    again = _build(small_warehouse, site, chromium=CHROMIUM)
    assert set(SMALL_FINANCE) <= set(again.rendered) and again.pdfs == len(SMALL_FINANCE) and not again.pdf_notes


LOGGED = """#!/bin/sh
echo "$$" >> "{pids}"
exec "{chromium}" "$@"
"""


def test_one_browser_prints_every_pdf_of_a_build_and_none_outlives_it(small_warehouse, tmp_path, monkeypatch):
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    logged, pids = _logged_chromium(tmp_path)
    site = tmp_path / "site"
    result = _build(small_warehouse, site, chromium=logged)
    assert result.pdfs == len(SMALL_FINANCE) > 1 and not result.pdf_notes
    for slug in SMALL_FINANCE:
        assert _sections(site / "periods" / slug / pdf.pdf_name(slug))  # a whole PDF, its outline in
    (browser,) = map(int, pids.read_text().split())  # one start for the three PDFs
    assert not pdf._group_alive(browser)  # nor any helper it started
    assert not list(temporary.glob("usage-report-chromium-*"))  # its profile removed
    again = _build(small_warehouse, site, chromium=logged)
    assert again.rendered == [] and pids.read_text().split() == [str(browser)]  # nothing to print: no browser started


def _logged_chromium(tmp_path: Path) -> tuple[Path, Path]:
    """A Chromium that writes its pid to a file each time it starts: (the program, the file)."""
    pids, logged = tmp_path / "pids", tmp_path / "logged-chromium"
    logged.write_text(LOGGED.format(pids=pids, chromium=CHROMIUM))
    logged.chmod(0o755)
    return logged, pids


def test_the_browser_a_run_starts_ahead_prints_its_build_and_one_no_build_takes_is_closed_at_exit(small_warehouse, tmp_path):
    logged, pids = _logged_chromium(tmp_path)
    pdf.start_ahead(logged)  # as `usage-report run` does before the days
    result = _build(small_warehouse, tmp_path / "site", chromium=logged)
    assert result.pdfs == len(SMALL_FINANCE) and not result.pdf_notes
    (browser,) = map(int, pids.read_text().split())  # the one started ahead, nothing else
    assert not pdf._group_alive(browser) and not pdf._AHEAD
    pids.unlink()
    subprocess.run([sys.executable, "-c", f"from usage_jobs.defs.report import pdf; pdf.start_ahead({str(logged)!r})"], check=True, timeout=60)
    (unused,) = map(int, pids.read_text().split())
    deadline = time.monotonic() + 20
    while pdf._group_alive(unused) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not pdf._group_alive(unused)


DIES = """
import sys, time
from pathlib import Path
from usage_jobs.defs.report import pdf
browser = pdf.Browser(Path(sys.argv[1]))
assert browser.print(pdf.PdfJob("page", Path(sys.argv[2]), Path(sys.argv[3])), timeout=60) is None
print(browser.process.pid, flush=True)
time.sleep(300)
"""


def test_a_browser_exits_when_the_command_holding_its_pipe_is_killed(tmp_path):
    page = tmp_path / "page.html"
    page.write_text("<!doctype html><title>Page</title><h1>On paper</h1>")
    command = subprocess.Popen([sys.executable, "-c", DIES, str(CHROMIUM), str(page), str(tmp_path / "page.pdf")], stdout=subprocess.PIPE, text=True)
    try:
        browser = int(command.stdout.readline())
        assert "On paper" in _text(tmp_path / "page.pdf") and pdf._group_alive(browser)
    finally:
        command.kill()
        command.wait()
    deadline = time.monotonic() + 20
    while pdf._group_alive(browser) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not pdf._group_alive(browser)


def test_a_browser_that_cannot_start_is_reported_and_leaves_no_pipe_or_profile(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(pdf.subprocess, "Popen", lambda *args, **kwargs: (_ for _ in ()).throw(OSError(24, "Too many open files")))
    descriptors = len(os.listdir("/proc/self/fd"))
    job = pdf.PdfJob("2026-11", tmp_path / "print.html", tmp_path / "2026-11-report.pdf")
    failure = pdf.Browser(CHROMIUM).print(job, timeout=5)
    assert str(failure) == f"PDF of 2026-11 not made: {CHROMIUM} could not be started ([Errno 24] Too many open files)"
    assert len(os.listdir("/proc/self/fd")) == descriptors and not list(tmp_path.glob("usage-report-chromium-*"))


def test_find_chromium_takes_the_setting_or_looks_on_path(tmp_path, monkeypatch):
    assert pdf.find_chromium(CHROMIUM) == CHROMIUM
    assert pdf.find_chromium(tmp_path / "missing") is None
    monkeypatch.setenv("PATH", str(tmp_path))
    for name in ("google-chrome", "chromium"):
        (tmp_path / name).write_text("#!/bin/sh\n")
        (tmp_path / name).chmod(0o755)
    assert pdf.find_chromium() == tmp_path / "chromium"
    assert pdf.find_chromium("google-chrome") == tmp_path / "google-chrome"
    assert re.search(r"REPORT_CHROMIUM \(.*missing\)", pdf.missing_note(tmp_path / "missing"))
