"""A finance period's PDF: its print page (global, teams and chargeback) printed by headless Chromium.

One Chromium process per PDF (`--print-to-pdf`), each with a profile of its own in a temporary
folder, at most two at once, each in a session of its own so that a timeout kills it and every
process it started (SIGKILL: a hung Chromium may ignore SIGTERM). A PDF that fails is reported
by its period; the build goes on without it.
"""

from __future__ import annotations

import html
import os
import re
import shutil
import signal
import subprocess
import tempfile
import textwrap
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

# The finance periods: a kind not (yet) produced by periods.py simply never matches.
PDF_KINDS = ("month", "quarter", "year")
PRINT_PAGE = "print.html"
CANDIDATES = ("chromium", "google-chrome", "chromium-browser", "google-chrome-stable")
FALLBACKS = (Path("/usr/bin/chromium"),)
TIMEOUT_SECONDS = 120.0
WORKERS = 2
# Chromium calls home and probes the desktop unless told not to; none of it is needed to print a local file.
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--no-pdf-header-footer", "--generate-pdf-document-outline",
         "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
         "--disable-extensions", "--mute-audio")


# Characters of the print page's monospaced lists on a line: at 7.2 pt DejaVu Sans Mono within 12 mm margins Letter paper holds 125, A4 121.
PRINT_LINE_WIDTH = 120


def hanging_line(text: str, columns: str) -> str:
    """A line of a monospaced list on paper: its fixed-width `columns`, then `text` wrapped under itself, not under the columns.
    The lists are preformatted text, not an element per line: an element a line cost Chromium a third of a year's PDF to lay out
    and tag."""
    wrapped = textwrap.wrap(text, max(PRINT_LINE_WIDTH - len(columns), 20), break_on_hyphens=True) or [""]
    return columns + ("\n" + " " * len(columns)).join(wrapped)


def pdf_name(slug: str) -> str:
    """The file a reader downloads, in the period's folder."""
    return f"{slug}-report.pdf"


def is_pdf_kind(kind: str) -> bool:
    return kind in PDF_KINDS


@dataclass(frozen=True)
class PdfJob:
    slug: str  # the period
    html: Path  # its print page
    pdf: Path  # the PDF to write


@dataclass(frozen=True)
class PdfFailure:
    slug: str
    message: str

    def __str__(self) -> str:
        return f"PDF of {self.slug} not made: {self.message}"


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def find_chromium(configured: Path | str | None = None) -> Path | None:
    """The Chromium to print with: `configured` (REPORT_CHROMIUM) if it is an executable (a bare name is looked up on PATH),
    else None; without one, `chromium` or `google-chrome` on PATH, or /usr/bin/chromium."""
    if configured is not None and str(configured) != "":
        text = str(configured)
        found = shutil.which(text) if os.sep not in text else (text if _executable(Path(text)) else None)
        return Path(found) if found else None
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return Path(found)
    return next((path for path in FALLBACKS if _executable(path)), None)


def missing_note(configured: Path | str | None = None) -> str:
    """What the pages and the build output say when no Chromium is found."""
    if configured is not None and str(configured) != "":
        return f"No PDF was made: REPORT_CHROMIUM ({configured}) is not an executable Chromium or Chrome."
    return "No PDF was made: no Chromium or Chrome found (install chromium, or set REPORT_CHROMIUM)."


def _kill_group(process: subprocess.Popen) -> None:
    """SIGKILL the process's whole session (it leads its own group), then reap it."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


def _group_alive(pgid: int) -> bool:
    """Whether a process of the group still runs. A killed one waiting to be reaped (a zombie, its parent gone) runs no more:
    on Linux /proc tells them apart, elsewhere any member counts."""
    proc = Path("/proc")
    if proc.is_dir():
        for stat in proc.glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue  # gone meanwhile
            if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
                return True
        return False
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def print_pdf(job: PdfJob, chromium: Path, timeout: float | None = None) -> PdfFailure | None:
    """Print one page; None when its PDF is written, else why not (the period named)."""
    timeout = TIMEOUT_SECONDS if timeout is None else timeout
    job.pdf.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="usage-report-chromium-", ignore_cleanup_errors=True) as profile:
        command = [str(chromium), *FLAGS, f"--user-data-dir={profile}", f"--print-to-pdf={job.pdf}", job.html.resolve().as_uri()]
        try:
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                       start_new_session=True, env=os.environ | {"HOME": profile})
        except OSError as error:
            return PdfFailure(job.slug, f"{chromium} could not be started ({error})")
        try:
            _, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(process)
            job.pdf.unlink(missing_ok=True)
            return PdfFailure(job.slug, f"{chromium} did not finish within {timeout:g} s and was killed")
        finally:
            # Chromium's helpers (zygote, GPU, renderer) share its session: none outlives the print.
            if _group_alive(process.pid):
                _kill_group(process)
                deadline = time.monotonic() + 5
                while _group_alive(process.pid) and time.monotonic() < deadline:
                    time.sleep(0.05)
    if process.returncode != 0 or not job.pdf.is_file() or job.pdf.stat().st_size == 0:
        job.pdf.unlink(missing_ok=True)
        last = [line for line in stderr.decode("utf-8", "replace").splitlines() if line.strip() and "dbus" not in line]
        detail = f": {last[-1].strip()[:300]}" if last else ""
        return PdfFailure(job.slug, f"{chromium} exited with code {process.returncode} without writing {job.pdf.name}{detail}")
    return None


class Printer:
    """Prints each job handed to it as it comes, at most `workers` at once: a finance period is printed as soon as its print page
    and charts are complete, while the other periods are still being rendered. `failures()` waits for every print."""

    def __init__(self, chromium: Path, *, timeout: float | None = None, workers: int = WORKERS):
        self.chromium, self.timeout = chromium, timeout
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="pdf")
        self.printing: list[Future] = []

    def submit(self, job: PdfJob) -> None:
        self.printing.append(self.pool.submit(print_pdf, job, self.chromium, self.timeout))

    def failures(self) -> list[PdfFailure]:
        """Why each PDF not made was not, in the order the jobs were handed over."""
        return [failure for failure in (future.result() for future in self.printing) if failure is not None]

    def __enter__(self) -> Printer:
        return self

    def __exit__(self, *exc) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


LINK = re.compile(r"<!--pdf-link-->.*?<!--/pdf-link-->", re.S)


def withdraw_link(folder: Path, note: str) -> int:
    """A period whose PDF failed: its pages say why instead of linking a missing file. The pages changed."""
    changed = 0
    replacement = f'<!--pdf-link--><span class="pdf-link"><span class="off">{html.escape(note)}</span></span><!--/pdf-link-->'
    for page in folder.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        if "<!--pdf-link-->" in text:
            page.write_text(LINK.sub(lambda _: replacement, text), encoding="utf-8")
            changed += 1
    return changed
