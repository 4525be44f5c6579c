"""The finance PDFs of a site printed as the build prints them (one browser over its DevTools pipe, pdf.Browser) against the
baseline of one `chromium --print-to-pdf` process a PDF (how the build printed them before), in the same run.

Takes the print pages of a built site (by default the 3,000-key one `bench/scale.py --orgs 3000` leaves: its month, quarter
and year, what a new day prints), prints them `--repeats` times each way, alternating, and prints for each: wall seconds and
CPU seconds, machine-wide (from /proc/stat: Chromium's helpers are not the command's children), beside the baseline and the
ratio. Run it on an otherwise idle machine. The PDFs are compared too: the same pages and text either way (pypdf).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pypdf import PdfReader

from usage_jobs.defs.report import pdf
from usage_jobs.defs.report.periods import period_from_slug

SITE = Path("bench_data/scale/run-3000k/site")
# The flags the build passed to one Chromium a PDF before it printed over the pipe.
PRINT_TO_PDF_FLAGS = (*pdf.FLAGS, "--no-pdf-header-footer", "--generate-pdf-document-outline")


def _busy_ticks() -> int:
    """Every core's non-idle time since boot, in clock ticks."""
    with open("/proc/stat") as stat:
        user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, stat.readline().split()[1:9])
    return user + nice + system + irq + softirq + steal


def _measured(print_all) -> tuple[float, float]:
    """(wall s, machine-wide CPU s) of print_all()."""
    ticks, started = _busy_ticks(), time.perf_counter()
    print_all()
    return time.perf_counter() - started, (_busy_ticks() - ticks) / os.sysconf("SC_CLK_TCK")


def _one_browser(jobs: list[pdf.PdfJob]) -> None:
    browser = pdf.Browser(pdf.find_chromium())
    try:
        for job in jobs:
            failure = browser.print(job, pdf.TIMEOUT_SECONDS)
            if failure:
                raise SystemExit(str(failure))
    finally:
        browser.close()


def _process_each(jobs: list[pdf.PdfJob]) -> None:
    for job in jobs:
        with tempfile.TemporaryDirectory(prefix="bench-chromium-") as profile:
            subprocess.run([str(pdf.find_chromium()), *PRINT_TO_PDF_FLAGS, f"--user-data-dir={profile}", f"--print-to-pdf={job.pdf}",
                            job.html.resolve().as_uri()], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           env=os.environ | {"HOME": profile})


def _text(path: Path) -> list[str]:
    return [page.extract_text() for page in PdfReader(path).pages]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--site", type=Path, default=SITE, help="a built site (its finance periods' print pages are printed)")
    parser.add_argument("--periods", default=None, help="period slugs, comma-separated (default: the latest month, quarter and year)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if pdf.find_chromium() is None:
        raise SystemExit(pdf.missing_note())
    pages = sorted(args.site.glob(f"periods/*/{pdf.PRINT_PAGE}"))
    if args.periods:
        slugs = args.periods.split(",")
    else:  # the latest month, quarter and year: what a new day prints
        latest = {period_from_slug(page.parent.name).kind: page.parent.name for page in pages}  # sorted: the latest of each kind last
        slugs = list(latest.values())
    if not slugs:
        raise SystemExit(f"no print page under {args.site}/periods: build a site first (bench/scale.py --orgs 3000, or make demo)")
    out = Path(tempfile.mkdtemp(prefix="bench-pdf-"))
    runs = {"one browser (now)": _one_browser, "a process a PDF (baseline)": _process_each}
    jobs = {name: [pdf.PdfJob(slug, args.site / "periods" / slug / pdf.PRINT_PAGE, out / f"{index}-{slug}.pdf") for slug in slugs]
            for index, name in enumerate(runs)}
    figures: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
    print(f"bench/pdf.py: {', '.join(slugs)} of {args.site}, {args.repeats} times each way, alternating", flush=True)
    for repeat in range(args.repeats):
        for name in runs if repeat % 2 == 0 else reversed(runs):
            figures[name].append(_measured(lambda name=name: runs[name](jobs[name])))
            print(f"  {name}: {figures[name][-1][0]:.2f} s, {figures[name][-1][1]:.2f} CPU-s", flush=True)
    now, baseline = (jobs[name] for name in runs)
    for mine, theirs in zip(now, baseline, strict=True):
        same = _text(mine.pdf) == _text(theirs.pdf)
        print(f"  {mine.slug}: {len(PdfReader(mine.pdf).pages)} pages, {mine.pdf.stat().st_size / 1e6:.1f} MB; the baseline's text "
              f"{'the same' if same else 'DIFFERS'}")
    (wall_now, cpu_now), (wall_base, cpu_base) = (tuple(statistics.median(f[i] for f in figures[name]) for i in (0, 1)) for name in runs)
    print("\n| PDFs | | wall | CPU |\n|---|---|---|---|")
    print(f"| {len(slugs)} | one browser (now) | {wall_now:.2f} s | {cpu_now:.2f} CPU-s |")
    print(f"| | a process a PDF (baseline) | {wall_base:.2f} s | {cpu_base:.2f} CPU-s |")
    print(f"| | ratio | {wall_now / wall_base:.2f}x | {cpu_now / cpu_base:.2f}x |")
    print("medians; CPU is machine-wide (/proc/stat): run it on an otherwise idle machine", file=sys.stderr)


if __name__ == "__main__":
    main()
