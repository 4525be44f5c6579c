"""Where a report day's gateway log files are, in LiteLLM's object-storage layouts.

S3 writes `[team_alias/][key_alias/]YYYY-MM-DD/time-…_<id>.json`, GCS writes
`YYYY-MM-DD/batch-….ndjson`, Azure `YYYY-MM-DD/<id>.json`; `audit_logs/` holds no
request data. A folder's date is the day the file was *written* (UTC), which is at or
after the request's start, so a report day reads every folder its UTC span touches,
plus the next one for requests written after midnight.
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


@dataclass(frozen=True)
class LogFile:
    path: Path
    folder_day: dt.date
    line_delimited: bool
    size: int

    @property
    def gzip(self) -> bool:
        return self.path.name.endswith(".gz")


def iter_day_folders(root: Path) -> Iterator[tuple[dt.date, Path]]:
    """Every `YYYY-MM-DD` folder under root, at any depth below optional team/key folders."""
    if not root.is_dir():
        return
    for dirpath, dirnames, _ in os.walk(root):
        keep = []
        for name in sorted(dirnames):
            if name in SKIPPED_FOLDERS or name.startswith("."):
                continue
            if DAY_FOLDER.match(name):
                try:
                    yield dt.date.fromisoformat(name), Path(dirpath) / name
                except ValueError:
                    continue
            else:
                keep.append(name)
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


def classify(path: Path) -> bool | None:
    """True for line-delimited files, False for JSON documents, None for anything else."""
    name = path.name.lower()
    if name.endswith(LINE_SUFFIXES):
        return True
    if name.endswith(DOCUMENT_SUFFIXES):
        return False
    return None


@dataclass
class DayFiles:
    files: list[LogFile]
    ignored: list[Path]
    folders_found: list[Path]


def files_for_day(root: Path, day: dt.date, timezone: str) -> DayFiles:
    """The log files a report day must read, and the files skipped for their type."""
    wanted = set(candidate_folder_days(day, timezone))
    files: list[LogFile] = []
    ignored: list[Path] = []
    folders: list[Path] = []
    for folder_day, folder in iter_day_folders(root):
        if folder_day not in wanted:
            continue
        folders.append(folder)
        with os.scandir(folder) as entries:
            for entry in entries:
                if not entry.is_file():
                    continue
                path = Path(entry.path)
                kind = classify(path)
                if kind is None:
                    ignored.append(path)
                else:
                    files.append(LogFile(path, folder_day, kind, entry.stat().st_size))
    files.sort(key=lambda f: str(f.path))
    return DayFiles(files=files, ignored=sorted(ignored), folders_found=sorted(folders))
