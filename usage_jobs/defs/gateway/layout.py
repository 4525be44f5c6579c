"""Where a report day's gateway log files are, in every layout LiteLLM writes.

S3 writes `[s3_path/][team_alias/][key_alias/]YYYY-MM-DD/[HH/]time-…_<id>.json` (or
`batch_…jsonl`), GCS `YYYY-MM-DD/batch-….ndjson` or, unbatched, `YYYY-MM-DD/<response id>`
with no extension, Azure `YYYY-MM-DD/<id>.json` or, with Azure AD, `<id>.json` at the
root; SpendLogs exports are JSON arrays, NDJSON or `/spend/logs/v2` pages. `audit_logs/`
holds no request data. A folder's date is the day the file was *written* (UTC), at or
after the request's start, so a report day reads every folder its UTC span touches plus
the next one. Files outside any date folder are dated by their records; one written
before the day began cannot hold it, so only those modified since are read.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

DAY_FOLDER = re.compile(r"^\d{4}-\d{2}-\d{2}$")
SKIPPED_FOLDERS = {"audit_logs"}
LINE_SUFFIXES = (".jsonl", ".ndjson", ".jsonl.gz", ".ndjson.gz")
DOCUMENT_SUFFIXES = (".json", ".json.gz")
# Requests are written at most this long after they start (long streams, batching).
WRITE_LAG = dt.timedelta(days=1)
# Clock skew allowed between the writer's and the store's modification times.
MTIME_SLACK = dt.timedelta(hours=1)
# What a file's folder date means: the day it was written (loggers), the report day it was
# asked for (pages of the gateway's API, landed per report day), or nothing (undated files).
WRITTEN, REPORT_DAY, UNDATED = "written", "report day", "undated"
# Where a logs root comes from: a local folder (a copy's modification times may be later than the
# objects'), a bucket landed with each object's own last-modified time, or the gateway API's pages.
FOLDER, BUCKET, GATEWAY_API = "folder", "bucket", "gateway-api"


@dataclass(frozen=True)
class LogFile:
    location: str  # the file's path as text: a day can list 200,000 files, and as many Path objects cost seconds
    # The file's date folder; for an undated file, the UTC date it was last modified.
    folder_day: dt.date
    line_delimited: bool
    size: int
    folder_kind: str = WRITTEN

    @property
    def path(self) -> Path:
        return Path(self.location)

    @property
    def gzip(self) -> bool:
        return self.location.endswith(".gz")


@dataclass(frozen=True)
class UnrecognisedFile:
    """A file under the logs root that is not in a request-log format, named and counted."""

    path: Path
    folder_day: dt.date
    size: int
    holds_data: bool


@dataclass(frozen=True)
class UnreadableEntry:
    """A file or folder under the logs root that cannot be read (permissions, a dangling or looping link)."""

    path: Path
    folder_day: dt.date | None
    reason: str


def _walk(root: Path, errors: list[OSError] | None = None) -> Iterator[tuple[Path, list[str], list[str]]]:
    for dirpath, dirnames, filenames in os.walk(root, onerror=errors.append if errors is not None else None):
        dirnames[:] = sorted(n for n in dirnames if n not in SKIPPED_FOLDERS and not n.startswith("."))
        yield Path(dirpath), dirnames, sorted(n for n in filenames if not n.startswith("."))


def folder_date(name: str) -> dt.date | None:
    """The date a `YYYY-MM-DD` folder name stands for; None for any other name."""
    if not DAY_FOLDER.match(name):
        return None
    try:
        return dt.date.fromisoformat(name)
    except ValueError:
        return None


def _date_in(path: Path) -> dt.date | None:
    return next((day for day in map(folder_date, reversed(path.parts)) if day is not None), None)


def iter_day_folders(root: Path) -> Iterator[tuple[dt.date, Path]]:
    """Every `YYYY-MM-DD` folder under root, at any depth below optional prefix/team/key folders."""
    if not root.is_dir():
        return
    for folder, dirnames, _ in _walk(root):
        keep = []
        for name in dirnames:
            day = folder_date(name)
            if day is None:
                keep.append(name)
            else:
                yield day, folder / name
        dirnames[:] = keep


def utc_day_span(day: dt.date, timezone: str) -> tuple[dt.datetime, dt.datetime]:
    """Start (inclusive) and end (exclusive) of a report-time-zone day, in UTC."""
    tz = ZoneInfo(timezone)
    start = dt.datetime.combine(day, dt.time(), tz)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tz)
    return start.astimezone(dt.UTC), end.astimezone(dt.UTC)


def candidate_folder_days(day: dt.date, timezone: str) -> list[dt.date]:
    """The folder dates that can hold requests started on `day` (report time zone)."""
    start, end = utc_day_span(day, timezone)
    first = start.date()
    last = (end - dt.timedelta(microseconds=1) + WRITE_LAG).date()
    return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]


def classify(location: str) -> bool | None:
    """True for line-delimited files, False for one JSON document, None for anything else.

    GCS's unbatched logger names objects by response id, with no extension: one payload."""
    name = location.rsplit(os.sep, 1)[-1].lower()
    if name.endswith(LINE_SUFFIXES):
        return True
    if name.endswith(DOCUMENT_SUFFIXES) or "." not in name:
        return False
    return None


def _holds_data(path: Path, size: int) -> bool:
    if size == 0:
        return False
    try:
        with path.open("rb") as stream:
            return bool(stream.read(4096).strip())
    except OSError:
        return True  # unreadable, so it may hold anything


@dataclass
class DayFiles:
    files: list[LogFile]
    unrecognised: list[UnrecognisedFile]
    folders_found: list[Path]
    unreadable: list[UnreadableEntry]


def undated_window(day: dt.date, timezone: str) -> tuple[dt.datetime, dt.datetime]:
    """The modification times (UTC, start inclusive, end exclusive) of files outside any date
    folder that a report day reads: the day's UTC span, plus WRITE_LAG after it, plus the slack."""
    start, end = utc_day_span(day, timezone)
    return start - MTIME_SLACK, end + WRITE_LAG + MTIME_SLACK


def files_for_day(root: Path, day: dt.date, timezone: str, source: str = FOLDER) -> DayFiles:
    """The log files a report day must read, and the files that are not request logs.

    From the gateway API, each date folder holds what was asked for that report day, so the
    day reads its own folder only. Undated files are read when modified in the day's window;
    in a local folder, from its start on only, since a copy is modified when it is made."""
    wanted = {day} if source == GATEWAY_API else set(candidate_folder_days(day, timezone))
    dated_kind = REPORT_DAY if source == GATEWAY_API else WRITTEN
    low, high = undated_window(day, timezone)
    not_before, not_after = low.timestamp(), high.timestamp() if source == BUCKET else float("inf")
    files: list[LogFile] = []
    unrecognised: list[UnrecognisedFile] = []
    folders: list[Path] = []
    unreadable: list[UnreadableEntry] = []
    errors: list[OSError] = []

    def add(location: str, folder_day: dt.date, size: int, folder_kind: str) -> None:
        kind = classify(location)
        if kind is None:
            unrecognised.append(UnrecognisedFile(Path(location), folder_day, size, _holds_data(Path(location), size)))
        else:
            files.append(LogFile(location, folder_day, kind, size, folder_kind))

    def stat(path: Path, folder_day: dt.date | None) -> os.stat_result | None:
        try:
            return path.stat()
        except OSError as exc:
            unreadable.append(UnreadableEntry(path, folder_day, f"file cannot be read: {exc.strerror or exc}"))
            return None

    if root.is_dir():
        for folder, dirnames, filenames in _walk(root, errors):
            for name in filenames:
                # A link's own time dates an undated file that cannot be followed.
                written = dt.datetime.fromtimestamp((folder / name).lstat().st_mtime, dt.UTC)
                if not not_before <= written.timestamp() < not_after:
                    continue
                status = stat(folder / name, written.date())
                if status is not None:
                    add(str(folder / name), written.date(), status.st_size, UNDATED)
            keep = []
            for name in dirnames:
                folder_day = folder_date(name)
                if folder_day is None:
                    keep.append(name)
                elif folder_day in wanted:
                    folders.append(folder / name)
                    # Hourly partitions (S3_PARTITION_GRANULARITY=hour) nest `HH/` folders inside the day.
                    for inner, _, inner_files in _walk(folder / name, errors):
                        prefix = f"{inner}{os.sep}"
                        for inner_name in inner_files:
                            # os.stat on the name: a Path per call costs more than the system call (200,000 files a day).
                            try:
                                size = os.stat(prefix + inner_name).st_size
                            except OSError:
                                status = stat(inner / inner_name, folder_day)
                                if status is None:
                                    continue
                                size = status.st_size
                            add(prefix + inner_name, folder_day, size, dated_kind)
            dirnames[:] = keep
    # A folder that cannot be listed belongs to the date folder it is in (or is), else to every day that reads it.
    unreadable += [UnreadableEntry(Path(error.filename), _date_in(Path(error.filename)), f"folder cannot be read: {error.strerror or error}")
                   for error in errors]
    files.sort(key=lambda f: f.location)
    return DayFiles(files=files, unrecognised=sorted(unrecognised, key=lambda f: str(f.path)), folders_found=sorted(folders),
                    unreadable=sorted(unreadable, key=lambda f: str(f.path)))
