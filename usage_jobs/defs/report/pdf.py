"""A finance period's PDF: its print page (global, teams and chargeback) printed by headless Chromium.

One headless Chromium a build prints the PDFs one after the other over its DevTools pipe, with a
profile of its own in a temporary folder, in a session of its own so that a timeout kills it and
every process it started (SIGKILL: a hung Chromium may ignore SIGTERM); the next PDF then starts
another. A PDF that fails is reported by its period; the build goes on without it.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import html
import json
import os
import re
import select
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
# Chromium calls home and probes the desktop unless told not to; none of it is needed to print a local file. (--no-pdf-header-footer,
# a --print-to-pdf flag, makes Page.printToPDF fail: no header or footer is its default.)
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--disable-dev-shm-usage", "--disable-extensions", "--mute-audio")
# The events that end a page's loading: loaded, or its renderer gone.
LOAD_ENDS = ("Page.loadEventFired", "Inspector.targetCrashed", "Inspector.detached")


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


class _BrowserGone(Exception):
    """Chromium exited, or closed its end of the pipe."""


class Browser:
    """One headless Chromium printing page after page, driven over its DevTools pipe (`--remote-debugging-pipe`: commands on
    its fd 3, replies and events on its fd 4, each a JSON message ended by NUL). Its start-up is paid once a build, not once a
    PDF: three PDFs cost 4.7 CPU-s in one browser against 7.4 in three `--print-to-pdf` processes. It runs in a session of its
    own with a profile of its own; should the command die, the pipe closes and Chromium exits with it."""

    def __init__(self, chromium: Path):
        self.chromium = chromium
        self.process: subprocess.Popen | None = None
        self._profile: str | None = None
        self._commands = self._replies = -1
        self._sent = 0
        self._buffer = bytearray()
        self._events: list[dict] = []

    def start(self) -> None:
        """Start Chromium (if not running) without waiting for it: the first print waits, within its own timeout."""
        if self.process is not None:
            return
        self._profile = tempfile.mkdtemp(prefix="usage-report-chromium-")
        self._commands, chromium_reads = os.pipe()[::-1]
        self._replies, chromium_writes = os.pipe()
        self._poll = select.poll()
        self._poll.register(self._replies, select.POLLIN)
        try:
            with open(Path(self._profile) / "stderr.log", "wb") as stderr:
                # sh hands Chromium the pipes as fds 3 and 4, where it looks for them (no preexec_fn in a threaded process).
                self.process = subprocess.Popen(
                    ["/bin/sh", "-c", 'exec "$0" "$@" 3<&0 4>&1 </dev/null >/dev/null', str(self.chromium), *FLAGS,
                     "--remote-debugging-pipe", f"--user-data-dir={self._profile}", "about:blank"],
                    stdin=chromium_reads, stdout=chromium_writes, stderr=stderr, start_new_session=True,
                    env=os.environ | {"HOME": self._profile})
        except OSError:
            self.close()  # its pipes and profile: a later start makes new ones
            raise
        finally:
            os.close(chromium_reads)
            os.close(chromium_writes)

    def _send(self, message: dict) -> None:
        data = memoryview(json.dumps(message).encode() + b"\0")
        try:
            while data:
                data = data[os.write(self._commands, data):]
        except OSError as error:
            raise _BrowserGone from error

    def _receive(self, deadline: float) -> dict:
        scanned = 0
        while (end := self._buffer.find(b"\0", scanned)) < 0:
            scanned = len(self._buffer)
            remaining = deadline - time.monotonic()
            # poll, not select: select refuses a descriptor numbered 1024 or more, which a busy process may hold
            if remaining <= 0 or not self._poll.poll(remaining * 1000):
                raise TimeoutError
            chunk = os.read(self._replies, 1 << 20)
            if not chunk:
                raise _BrowserGone
            self._buffer += chunk
        message = json.loads(self._buffer[:end])
        del self._buffer[:end + 1]
        return message

    def _call(self, method: str, deadline: float, session: str | None = None, **params) -> dict:
        self._sent += 1
        self._send({"id": self._sent, "method": method, "params": params} | ({"sessionId": session} if session else {}))
        while True:
            message = self._receive(deadline)
            if message.get("id") == self._sent:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error'].get('message', message['error'])}")
                return message["result"]
            self._events.append(message)

    def _loaded(self, session: str, deadline: float) -> None:
        """Wait for the page's load event (its styles and charts in); its renderer gone is an error."""
        while True:
            for event in self._events:
                if event.get("sessionId") == session and event.get("method") in LOAD_ENDS:
                    self._events.clear()
                    if event["method"] != "Page.loadEventFired":
                        raise RuntimeError(f"its renderer stopped ({event['method']}: {event.get('params')})")
                    return
            self._events.append(self._receive(deadline))

    def print(self, job: PdfJob, timeout: float) -> PdfFailure | None:
        """Print one page; None when its PDF is written, else why not (the period named). After a failure the browser is
        stopped, and the next print starts another."""
        deadline = time.monotonic() + timeout
        job.pdf.unlink(missing_ok=True)
        try:
            self.start()
            target = self._call("Target.createTarget", deadline, url="about:blank")["targetId"]
            session = self._call("Target.attachToTarget", deadline, targetId=target, flatten=True)["sessionId"]
            self._call("Page.enable", deadline, session)
            loading = self._call("Page.navigate", deadline, session, url=job.html.resolve().as_uri())
            if loading.get("errorText"):
                raise RuntimeError(f"not loaded ({loading['errorText']})")
            self._loaded(session, deadline)
            printed = self._call("Page.printToPDF", deadline, session, generateDocumentOutline=True, generateTaggedPDF=True)
            job.pdf.write_bytes(base64.b64decode(printed["data"]))
            self._call("Target.closeTarget", deadline, targetId=target)
            return None
        except TimeoutError:  # before OSError: it is one
            failure = f"{self.chromium} did not finish within {timeout:g} s and was killed"
        except _BrowserGone:
            self._stop(kill=True)
            failure = f"{self.chromium} exited with code {self.process.returncode} without writing {job.pdf.name}{self._last_error()}"
        except OSError as error:
            failure = f"{self.chromium} could not be started ({error})" if self.process is None else f"{job.pdf.name} not written ({error})"
        except RuntimeError as error:
            failure = f"{self.chromium} could not print {job.html.name}: {error}"
        job.pdf.unlink(missing_ok=True)
        self.close(kill=True)
        return PdfFailure(job.slug, failure)

    def _last_error(self) -> str:
        try:
            lines = (Path(self._profile) / "stderr.log").read_text("utf-8", "replace").splitlines()
        except OSError:
            return ""
        last = [line for line in lines if line.strip() and "dbus" not in line]
        return f": {last[-1].strip()[:300]}" if last else ""

    def _stop(self, *, kill: bool) -> None:
        """Chromium and every process it started gone: asked to close, else (or when `kill`) SIGKILL to its session."""
        if not kill:
            with contextlib.suppress(_BrowserGone, TimeoutError, RuntimeError):
                self._call("Browser.close", time.monotonic() + 5)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=5)
        # Chromium's helpers (zygote, GPU, renderer) share its session: none outlives the browser.
        if self.process.returncode is None or _group_alive(self.process.pid):
            _kill_group(self.process)
            deadline = time.monotonic() + 5
            while _group_alive(self.process.pid) and time.monotonic() < deadline:
                time.sleep(0.05)

    def close(self, *, kill: bool = False) -> None:
        """Stop the browser (if started) and remove its profile."""
        if self.process is not None:
            self._stop(kill=kill)
            self.process = None
        for fd in (self._commands, self._replies):
            if fd >= 0:
                os.close(fd)
        self._commands = self._replies = -1
        self._buffer, self._events = bytearray(), []
        if self._profile:
            shutil.rmtree(self._profile, ignore_errors=True)
            self._profile = None


# Browsers started ahead of a build in this process, by Chromium: the build's printer takes its own.
_AHEAD: dict[Path, Browser] = {}


def start_ahead(configured: Path | str | None) -> None:
    """Start the browser a build later in this process will print with, beside work that leaves a core idle (a run's days):
    its start-up then costs the build nothing. One no build takes is closed as the process exits."""
    chromium = find_chromium(configured)
    if chromium is not None and chromium not in _AHEAD:
        browser = _AHEAD[chromium] = Browser(chromium)
        atexit.register(browser.close)
        with contextlib.suppress(OSError):  # not started: the first print says why
            browser.start()


class Printer:
    """Prints each job handed to it as it comes, one at a time in one browser: a finance period is printed as soon as its print
    page and charts are complete, while the other periods are still being rendered. The browser is the one started ahead
    (start_ahead), else it starts as the printer is entered, beside the first renders. `failures()` waits for every print."""

    def __init__(self, chromium: Path, *, timeout: float | None = None):
        self.browser, self.timeout = _AHEAD.pop(chromium, None) or Browser(chromium), timeout
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="pdf")
        self.printing: list[Future] = []

    def submit(self, job: PdfJob) -> None:
        self.printing.append(self.pool.submit(self._print, job))

    def _print(self, job: PdfJob) -> PdfFailure | None:
        return self.browser.print(job, TIMEOUT_SECONDS if self.timeout is None else self.timeout)

    def failures(self) -> list[PdfFailure]:
        """Why each PDF not made was not, in the order the jobs were handed over."""
        return [failure for failure in (future.result() for future in self.printing) if failure is not None]

    def __enter__(self) -> Printer:
        self.pool.submit(self.browser.start)  # starting up beside the first renders; a failure to start is the first print's
        return self

    def __exit__(self, *exc) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.browser.close()


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
