"""The raw landing folder: a local copy of what a remote log source holds for a day.

Remote sources (a bucket, the gateway's /spend/logs/v2 API) are copied here first, so
ingest always reads local files and a re-run of a day is reproducible offline. Each
source lands under its own stable folder, mirroring the source's object names.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import functools
import json
import logging
import os
import random
import re
import secrets
import shutil
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from usage_jobs.defs.gateway import layout
from usage_jobs.defs.gateway.fold import fold_tree, remove_shards


@dataclass(frozen=True)
class LandingStats:
    """What landing one report day cost: objects listed, fetched, skipped as already landed."""

    source: str
    day: str
    listed: int = 0
    fetched: int = 0
    already_landed: int = 0
    bytes_fetched: int = 0
    retries: int = 0
    seconds: float = 0.0


class LandingError(RuntimeError):
    """A remote source could not be copied; the message names the source and what to check."""


def landing_root(landing_dir: Path, source: str) -> Path:
    """The stable local folder of one source, e.g. `s3://logs/gw` → `<landing_dir>/s3/logs/gw`."""
    scheme, _, rest = source.partition("://")
    parts = [re.sub(r"[^A-Za-z0-9._-]", "_", p) for p in rest.strip("/").split("/") if p not in ("", ".", "..")] if rest else []
    return landing_dir.joinpath(re.sub(r"[^a-z0-9-]", "_", scheme.lower()) or "source", *parts)


# --------------------------------------------------------------------------------------
# Buckets: s3:// gs:// az:// → the landing folder, one report day at a time
# --------------------------------------------------------------------------------------

BUCKET_SCHEMES = {"s3": "s3", "s3a": "s3", "gs": "gs", "gcs": "gs", "az": "az", "abfs": "az", "abfss": "az"}
# Hidden folder of a landing root: completion markers of date folders, and per-run temp files.
STATE_FOLDER = ".landed"
PROGRESS_OBJECTS = 10_000
PROGRESS_SECONDS = 5.0
BACKOFF_BASE = 0.25  # seconds; the n-th retry waits uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2**n))
BACKOFF_CAP = 8.0
LARGE_OBJECT = 64 * 2**20  # above this, the client may split one object into parallel ranged reads
STALE_TEMP = dt.timedelta(hours=6)

log = logging.getLogger(__name__)


def is_bucket_url(value: str) -> bool:
    """True for `s3://…`, `gs://…`, `az://…` (and their aliases s3a, gcs, abfs, abfss)."""
    scheme, sep, rest = value.partition("://")
    return bool(sep) and scheme.lower() in BUCKET_SCHEMES and bool(rest.strip("/"))


def open_bucket(url: str, *, endpoint_url: str | None = None, concurrency: int = 32):
    """The fsspec filesystem of a bucket URL and the URL's path in it (`bucket/prefix`).

    Credentials come from each cloud's standard chain, never from here:
    * s3: boto's chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/AWS_SESSION_TOKEN, AWS_PROFILE and
      ~/.aws files, web identity, container and instance roles); `endpoint_url` (or botocore's own
      AWS_ENDPOINT_URL_S3) for an S3-compatible store (MinIO, Ceph, R2, an emulator);
    * gs: Google application default credentials (GOOGLE_APPLICATION_CREDENTIALS, gcloud's ADC
      file, the metadata server), anonymous when STORAGE_EMULATOR_HOST points at an emulator;
    * az: AZURE_STORAGE_CONNECTION_STRING, or AZURE_STORAGE_ACCOUNT_NAME with AZURE_STORAGE_ACCOUNT_KEY /
      AZURE_STORAGE_SAS_TOKEN / a service principal (AZURE_STORAGE_CLIENT_ID, …_SECRET, …_TENANT_ID) /
      DefaultAzureCredential (managed identity, az login).
    """
    import fsspec

    scheme = url.partition("://")[0].lower()
    kind = BUCKET_SCHEMES.get(scheme)
    if kind is None or not is_bucket_url(url):
        raise LandingError(f"{url!r} is not a bucket URL: expected s3://bucket/prefix, gs://bucket/prefix or az://container/prefix")
    options: dict = {"skip_instance_cache": True}
    if kind == "s3":
        options.update(
            endpoint_url=endpoint_url or None,
            config_kwargs={"max_pool_connections": max(10, concurrency + 4), "connect_timeout": 10, "read_timeout": 60,
                           "retries": {"mode": "standard", "max_attempts": 3}},
        )
    elif kind == "gs":
        if os.environ.get("STORAGE_EMULATOR_HOST"):
            options["token"] = "anon"  # as Google's own client libraries do with an emulator
    try:
        if kind == "gs":
            # gcsfs' default class first asks the gRPC control plane for the bucket's layout (zonal,
            # hierarchical), a call per bucket that emulators and proxies do not answer; log objects
            # are read through the JSON API alone.
            from gcsfs.core import GCSFileSystem

            fs = GCSFileSystem(**options)
            path = fs._strip_protocol(url)
        else:
            fs, path = fsspec.core.url_to_fs(url, **options)
    except Exception as exc:  # noqa: BLE001 - every cause becomes one clear message
        raise LandingError(f"cannot open {url}: {_short(exc)}; check {_CREDENTIAL_HINTS[kind]}") from None
    return fs, path.rstrip("/")


def land_bucket_day(
    url: str,
    day: dt.date,
    timezone: str,
    landing_dir: Path,
    *,
    endpoint_url: str | None = None,
    concurrency: int = 32,
    max_retries: int = 4,
    refetch: bool = False,
    progress: Callable[[str], None] | None = None,
    filesystem=None,
) -> LandingStats:
    """Copy what a report day needs from a bucket into `landing_root(landing_dir, url)`.

    Lists only the day's date folders (`layout.candidate_folder_days`: the day's UTC dates and the
    next day's) below any team/key alias folders, walking the other folders with delimiter
    listings and skipping `audit_logs/` and hidden folders; objects outside any date folder are
    landed when last modified within `layout.undated_window`. Each object lands at its key relative to
    the URL's prefix, written atomically (temp file, then rename) with the object's last-modified
    time as mtime. An object already landed with the same size is not fetched again, and a date
    folder listed completely more than WRITE_LAG (+1 h) after its day ended is marked complete
    under `.landed/` so later runs do not list it again; `refetch=True` ignores both.

    `listed` counts the objects the day needs (those of folders marked complete are counted from
    the marker, not listed again); `already_landed` those not fetched because they were there.
    `filesystem` replaces the one built from the URL (any fsspec filesystem; tests).
    Raises LandingError for a missing bucket, missing or refused credentials, an unreachable
    endpoint, and objects that still fail after `max_retries` retries.
    """
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    started = time.monotonic()
    if filesystem is None:
        fs, root = open_bucket(url, endpoint_url=endpoint_url, concurrency=concurrency)
    else:
        fs, root = filesystem, filesystem._strip_protocol(url).rstrip("/")
    run = _BucketDay(url, fs, root, day, timezone, landing_root(landing_dir, url), concurrency=concurrency,
                     max_retries=max_retries, refetch=refetch, progress=progress, endpoint_url=endpoint_url)
    if getattr(fs, "async_impl", False):
        if getattr(fs, "asynchronous", False):
            raise ValueError("pass a filesystem created with asynchronous=False: landing runs it on its own loop")
        from fsspec.asyn import sync

        sync(fs.loop, run.main)
    else:
        asyncio.run(run.main())
    return dataclasses.replace(run.stats(), seconds=round(time.monotonic() - started, 3))


# --- what can go wrong, in words a data engineer can act on ------------------------------

_CREDENTIAL_HINTS = {
    "s3": "the AWS credentials in the environment (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, an instance or "
          "pod role) and, for an S3-compatible store, USAGE_S3_ENDPOINT_URL",
    "gs": "the Google application default credentials (GOOGLE_APPLICATION_CREDENTIALS or `gcloud auth application-default login`)",
    "az": "AZURE_STORAGE_CONNECTION_STRING, or AZURE_STORAGE_ACCOUNT_NAME with a key, SAS token, service principal or managed identity",
}


class _Fatal(Exception):
    """Stops the whole landing: carries the message of the LandingError."""


_SECRET_VARIABLES = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AZURE_STORAGE_ACCOUNT_KEY", "AZURE_STORAGE_CONNECTION_STRING",
                     "AZURE_STORAGE_SAS_TOKEN", "AZURE_STORAGE_CLIENT_SECRET")
_SECRET_PATTERNS = re.compile(r"(AccountKey=|SharedAccessSignature=|[?&]sig=|Signature=|X-Amz-Signature=|X-Amz-Security-Token=|"
                              r"Authorization:\s*)[^;&\s\"']+", re.IGNORECASE)


def _short(exc: BaseException, limit: int = 300) -> str:
    """An error's message on one line, shortened, with anything that may be a credential removed."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    for name in _SECRET_VARIABLES:
        secret = os.environ.get(name)
        if secret and len(secret) >= 8:
            text = text.replace(secret, "***")
    text = _SECRET_PATTERNS.sub(lambda m: m.group(1) + "***", text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _names(exc: BaseException) -> set[str]:
    return {cls.__name__ for cls in type(exc).__mro__}


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


_NO_CREDENTIALS = {"NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError", "DefaultCredentialsError",
                   "RefreshError", "CredentialUnavailableError", "ClientAuthenticationError"}
_UNREACHABLE = {"EndpointConnectionError", "ConnectTimeoutError", "ClientConnectorError", "ServerDisconnectedError",
                "ServiceRequestError", "ConnectionRefusedError", "ConnectionError", "gaierror", "TimeoutError"}


def _problem(exc: BaseException) -> str | None:
    """'credentials', 'denied', 'missing', 'unreachable', or None (anything else) for an error of the store."""
    for item in _chain(exc):
        names = _names(item)
        if names & _NO_CREDENTIALS:
            return "credentials"
        text = str(item)
        if isinstance(item, PermissionError) or "Forbidden" in text or "AuthorizationFailure" in text \
                or "AuthorizationPermissionMismatch" in text or getattr(item, "code", None) in (401, 403):
            return "denied"
        if isinstance(item, FileNotFoundError) or "ResourceNotFoundError" in names or "NoSuchBucket" in text \
                or "ContainerNotFound" in text:
            return "missing"
        if names & _UNREACHABLE:
            return "unreachable"
    return None


def _permanent(exc: BaseException) -> bool:
    """Errors a retry cannot cure."""
    return _problem(exc) in ("credentials", "denied", "missing") or isinstance(exc, (IsADirectoryError, NotADirectoryError, ValueError, TypeError))


# --- one run --------------------------------------------------------------------------------

class _Entry(NamedTuple):
    name: str  # path in the filesystem, `bucket/prefix/…`
    is_dir: bool
    size: int
    mtime: float | None  # last modified, epoch seconds


@dataclass
class _Folder:
    """A date folder being landed: when listed and every object landed, it may be marked complete."""

    rel: str
    markable: bool
    pending: int = 0
    objects: int = 0
    bytes: int = 0
    failed: int = 0
    listed: bool = False


class _BucketDay:
    def __init__(self, url, fs, root, day, timezone, local_root: Path, *, concurrency, max_retries, refetch, progress, endpoint_url):
        self.url, self.fs, self.root, self.day = url, fs, root, day
        self.local_root = local_root
        self.concurrency, self.max_retries, self.refetch, self.progress = concurrency, max_retries, refetch, progress
        self.endpoint_url = endpoint_url
        self.kind = BUCKET_SCHEMES.get(url.partition("://")[0].lower(), "")
        self.wanted = set(layout.candidate_folder_days(day, timezone))
        low, high = layout.undated_window(day, timezone)
        self.window = (low.timestamp(), high.timestamp())
        self.listed = self.fetched = self.already = self.bytes = self.retries = 0
        self.failures: list[str] = []
        self.failed = 0
        self.unsafe = 0
        self.unsafe_names: list[str] = []
        self.dirs_made: set[str] = set()
        self.complete: list[_Folder] = []  # date folders listed and landed whole, to fold and mark once the fetches are done
        self.temp_counter = 0
        self.last_progress = time.monotonic()
        self.progress_mark = 0
        self.started = time.monotonic()

    def stats(self) -> LandingStats:
        return LandingStats(source=self.url, day=self.day.isoformat(), listed=self.listed, fetched=self.fetched,
                            already_landed=self.already, bytes_fetched=self.bytes, retries=self.retries)

    # -- the run ------------------------------------------------------------------------
    async def main(self) -> None:
        self.store = _store_for(self.fs, self.concurrency)
        self.state = self.local_root / STATE_FOLDER
        self.temp = self.state / "tmp" / f"{os.getpid()}-{secrets.token_hex(4)}"
        self.temp.mkdir(parents=True, exist_ok=True)
        self._clear_stale_temp()
        self.queue: asyncio.Queue = asyncio.Queue(maxsize=self.concurrency * 4)
        self.list_slots = asyncio.Semaphore(max(2, min(16, self.concurrency // 4)))
        try:
            async with asyncio.TaskGroup() as workers:
                for _ in range(self.concurrency):
                    workers.create_task(self._worker())
                async with asyncio.TaskGroup() as listings:
                    self.listings = listings
                    listings.create_task(self._walk(self.root))
                for _ in range(self.concurrency):  # listed: each worker stops after the last object
                    await self.queue.put(None)
        except BaseExceptionGroup as group:
            fatal = _first(group, _Fatal)
            if fatal is not None:
                raise LandingError(str(fatal)) from None
            raise
        else:
            for folder in self.complete:
                self._fold_and_mark(folder)
        finally:
            shutil.rmtree(self.temp, ignore_errors=True)
            self.store.close()
        if self.unsafe:
            line = f"{self.unsafe:,} object(s) not landed, their names are not safe local paths: {', '.join(self.unsafe_names)}"
            log.warning("%s %s: %s", self.url, self.day, line)
            self._say(line)
        if self.failed:
            shown = "; ".join(self.failures[:5]) + (f"; … and {self.failed - 5:,} more" if self.failed > 5 else "")
            raise LandingError(f"{self.failed:,} object(s) of {self.url} could not be fetched ({self.fetched:,} were; transient errors "
                               f"are retried {self.max_retries} times): {shown}")
        self._say(self._progress_line(final=True))

    # -- listing --------------------------------------------------------------------------
    async def _walk(self, path: str) -> None:
        """A non-date folder: its date folders of the day are landed, its other folders walked."""
        async with self.list_slots:
            try:
                async for entry in self.store.listdir(path):
                    if entry.name.endswith("/") or entry.name.rstrip("/") == path:
                        continue  # the folder's own marker object
                    base = entry.name.rsplit("/", 1)[-1]
                    if entry.is_dir:
                        if base in layout.SKIPPED_FOLDERS or base.startswith("."):
                            continue
                        folder_day = layout.folder_date(base)
                        if folder_day is None:
                            self.listings.create_task(self._walk(entry.name))
                        elif folder_day in self.wanted:
                            self.listings.create_task(self._date_folder(entry.name, folder_day))
                    elif entry.mtime is None or self.window[0] <= entry.mtime < self.window[1]:
                        await self._offer(entry, None)
            except (_Fatal, asyncio.CancelledError):
                raise
            except Exception as exc:  # noqa: BLE001
                raise _Fatal(self._listing_message(path, exc)) from None

    async def _date_folder(self, path: str, folder_day: dt.date) -> None:
        rel = self._rel(path)
        marker = self.state / "complete" / f"{rel}.json"
        if not self.refetch and marker.is_file():
            with contextlib.suppress(OSError, ValueError):
                count = int(json.loads(marker.read_text())["objects"])
                self.listed += count
                self.already += count
                return
        remove_shards(self.local_root / rel)  # an unmarked folder's shards are an interrupted fold's (or refetched): its objects land again
        listed_at = time.time()
        end = dt.datetime.combine(folder_day + dt.timedelta(days=1), dt.time(), dt.UTC)
        folder = _Folder(rel, markable=listed_at >= (end + layout.WRITE_LAG + layout.MTIME_SLACK).timestamp())
        async with self.list_slots:
            try:
                async for entry in self.store.listtree(path):
                    if not entry.is_dir and not entry.name.endswith("/"):
                        await self._offer(entry, folder)
            except (_Fatal, asyncio.CancelledError):
                raise
            except Exception as exc:  # noqa: BLE001
                raise _Fatal(self._listing_message(path, exc)) from None
        folder.listed = True
        self._maybe_mark(folder)

    async def _offer(self, entry: _Entry, folder: _Folder | None) -> None:
        rel = self._rel(entry.name)
        local = self._local(rel)
        if local is None:
            self.unsafe += 1
            if len(self.unsafe_names) < 5:
                self.unsafe_names.append(entry.name)
            return
        self.listed += 1
        if folder is not None:
            folder.objects += 1
            folder.bytes += entry.size
        if not self.refetch:
            try:
                landed = os.stat(local).st_size == entry.size
            except OSError:
                landed = False
            if landed:
                self.already += 1
                self._tick()
                return
        if folder is not None:
            folder.pending += 1
        await self.queue.put((entry, local, folder))

    # -- fetching -------------------------------------------------------------------------
    async def _worker(self) -> None:
        while (item := await self.queue.get()) is not None:
            entry, local, folder = item
            try:
                ok = await self._fetch(entry, local)
            finally:
                if folder is not None:
                    folder.pending -= 1
            if folder is not None:
                folder.failed += not ok
                self._maybe_mark(folder)
            self._tick()

    async def _fetch(self, entry: _Entry, local: str) -> bool:
        for attempt in range(self.max_retries + 1):
            self.temp_counter += 1
            temp = str(self.temp / f"{self.temp_counter}.part")
            try:
                await self.store.fetch(entry.name, temp, entry.size)
                size = os.stat(temp).st_size
                if entry.mtime is not None:
                    os.utime(temp, (entry.mtime, entry.mtime))
                parent = os.path.dirname(local)
                if parent not in self.dirs_made:
                    os.makedirs(parent, exist_ok=True)
                    self.dirs_made.add(parent)
                os.replace(temp, local)
            except asyncio.CancelledError:
                _remove(temp)
                raise
            except Exception as exc:  # noqa: BLE001
                _remove(temp)
                problem = _problem(exc)
                if problem == "credentials" or (problem == "denied" and not _is_local(exc, self.local_root)):
                    raise _Fatal(self._message(problem, f"reading {self._url_of(entry.name)}", exc)) from None
                if _permanent(exc) or attempt == self.max_retries or _is_local(exc, self.local_root):
                    self.failed += 1
                    if len(self.failures) < 5:
                        self.failures.append(f"{self._url_of(entry.name)}: {_short(exc, 160)}")
                    return False
                self.retries += 1
                await asyncio.sleep(random.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2**attempt)))
                continue
            self.fetched += 1
            self.bytes += size
            return True
        return False  # pragma: no cover - the loop returns

    # -- markers, progress, paths -----------------------------------------------------------
    def _maybe_mark(self, folder: _Folder) -> None:
        if not (folder.listed and folder.pending == 0 and folder.failed == 0 and folder.markable):
            return
        folder.markable = False  # once
        self.complete.append(folder)

    def _fold_and_mark(self, folder: _Folder) -> None:
        """A complete date folder's one-request files folded into a few NDJSON shards (read by ingest as the files they
        were: each line names its object) and removed, then the folder marked complete. The marker commits the fold: a
        folder found unmarked has its shards removed and its objects landed again."""
        shards = fold_tree(self.local_root / folder.rel, self.local_root, self.temp)
        for path in shards.folded:  # the shards hold them now
            os.remove(path)
        marker = self.state / "complete" / f"{folder.rel}.json"
        marker.parent.mkdir(parents=True, exist_ok=True)
        temp = self.temp / f"marker-{secrets.token_hex(4)}"
        temp.write_text(json.dumps({"folder": folder.rel, "objects": folder.objects, "bytes": folder.bytes, "folded": shards.files,
                                    "shards": shards.shards, "landed_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}))
        os.replace(temp, marker)

    def _tick(self) -> None:
        if self.progress is None:
            return
        done = self.fetched + self.already + self.failed
        now = time.monotonic()
        if done - self.progress_mark >= PROGRESS_OBJECTS or now - self.last_progress >= PROGRESS_SECONDS:
            self.progress_mark, self.last_progress = done, now
            self._say(self._progress_line())

    def _progress_line(self, final: bool = False) -> str:
        seconds = max(time.monotonic() - self.started, 1e-6)
        return (f"{self.url} {self.day}: {'done, ' if final else ''}{self.listed:,} objects listed, {self.fetched:,} fetched "
                f"({self.bytes / 1e6:,.1f} MB), {self.already:,} already landed, {self.retries:,} retries, "
                f"{(self.fetched + self.already) / seconds:,.0f} objects/s")

    def _say(self, line: str) -> None:
        if self.progress is not None:
            self.progress(line)

    def _rel(self, name: str) -> str:
        return name[len(self.root) + 1:] if self.root and name.startswith(self.root + "/") else name.lstrip("/")

    def _local(self, rel: str) -> str | None:
        parts = rel.split("/")
        if not rel or any(p in ("", ".", "..") or "\x00" in p for p in parts) or parts[0] == STATE_FOLDER:
            return None
        return os.path.join(self.local_root, *parts)

    def _url_of(self, name: str) -> str:
        scheme = self.url.partition("://")[0]
        return f"{scheme}://{name}" if scheme else name

    def _listing_message(self, path: str, exc: BaseException) -> str:
        return self._message(_problem(exc), f"listing {self._url_of(path)}", exc)

    def _message(self, problem: str | None, doing: str, exc: BaseException) -> str:
        hint = _CREDENTIAL_HINTS.get(self.kind, "the credentials of the store")
        bucket = self.root.split("/", 1)[0]
        if problem == "credentials":
            return f"no usable credentials for {self.url} ({doing}): {_short(exc, 200)}; check {hint}"
        if problem == "denied":
            return f"access denied {doing}: {_short(exc, 200)}; check that the identity in use may list and read {self.url} ({hint})"
        if problem == "missing":
            what = "container" if self.kind == "az" else "bucket"
            return f"the {what} {bucket!r} of {self.url} does not exist or is not visible ({doing}); check the URL and the account or endpoint it is read from"
        if problem == "unreachable":
            where = f"endpoint {self.endpoint_url}" if self.endpoint_url else "the store's endpoint"
            return (f"cannot reach {where} for {self.url} ({doing}): {_short(exc, 200)}; check the endpoint setting "
                    f"(USAGE_S3_ENDPOINT_URL for S3-compatible stores), the network and any proxy")
        return f"{doing} failed: {_short(exc)}"

    def _clear_stale_temp(self) -> None:
        """Temp folders of runs killed long ago (a live run's folder is younger than STALE_TEMP)."""
        cutoff = time.time() - STALE_TEMP.total_seconds()
        with contextlib.suppress(OSError):
            for child in (self.state / "tmp").iterdir():
                if child != self.temp and child.stat().st_mtime < cutoff:
                    shutil.rmtree(child, ignore_errors=True)


def _first(group: BaseExceptionGroup, kind: type) -> BaseException | None:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            found = _first(exc, kind)
            if found is not None:
                return found
        elif isinstance(exc, kind):
            return exc
    return None


def _remove(path: str) -> None:
    with contextlib.suppress(OSError):
        os.remove(path)


def _is_local(exc: BaseException, local_root: Path) -> bool:
    """An error of the local disk (landing folder), not of the store."""
    filename = getattr(exc, "filename", None)
    return isinstance(exc, OSError) and isinstance(filename, str) and filename.startswith(str(local_root))


def _epoch(value) -> float | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).timestamp()
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return _epoch(dt.datetime.fromisoformat(value.replace("Z", "+00:00")))
    return None


def _info_entry(info: dict) -> _Entry:
    modified = next((info[k] for k in ("LastModified", "last_modified", "mtime", "updated", "created") if info.get(k) is not None), None)
    return _Entry(info["name"], info.get("type") == "directory", int(info.get("size") or 0), _epoch(modified))


# --- listing and fetching, per kind of store ------------------------------------------------
# Each lists page by page (a page is ~1,000 entries), so memory does not grow with the number
# of objects in a folder; fsspec's own _ls/_find collect (and cache) whole listings.

class _Store:
    def __init__(self, fs):
        self.fs = fs

    async def listdir(self, path: str) -> AsyncIterator[_Entry]:  # one level, folders as entries
        for info in await self.fs._ls(path, detail=True):
            yield _info_entry(info)

    async def listtree(self, path: str) -> AsyncIterator[_Entry]:  # every object below
        for info in (await self.fs._find(path, detail=True)).values():
            yield _info_entry(info)

    async def fetch(self, name: str, local: str, size: int) -> None:
        await self.fs._get_file(name, local)

    def close(self) -> None:
        pass


class _S3Store(_Store):
    def _split(self, path: str) -> tuple[str, str]:
        bucket, _, key = path.partition("/")
        return bucket, (key.rstrip("/") + "/") if key else ""

    async def _iterate(self, path: str, delimiter: str) -> AsyncIterator[_Entry]:
        bucket, prefix = self._split(path)
        async for info in self.fs._iterdir(bucket, prefix=prefix, delimiter=delimiter):
            yield _info_entry(info)

    def listdir(self, path):
        return self._iterate(path, "/")

    def listtree(self, path):
        return self._iterate(path, "")

    async def fetch(self, name, local, size):
        # One GET streamed to the file (s3fs' _cat_file would first HEAD the object).
        await self.fs._get_file(name, local)


class _GCSStore(_Store):
    async def _iterate(self, path: str, delimiter: str | None) -> AsyncIterator[_Entry]:
        bucket, _, key = path.partition("/")
        prefix = (key.rstrip("/") + "/") if key else None
        token = None
        while True:
            page = await self.fs._call("GET", "b/{}/o", bucket, json_out=True, prefix=prefix, delimiter=delimiter,
                                       maxResults=1000, pageToken=token)
            for folder in page.get("prefixes", []):
                yield _Entry(f"{bucket}/{folder.rstrip('/')}", True, 0, None)
            for item in page.get("items", []):
                info = self.fs._process_object(bucket, item)
                yield _Entry(info["name"], False, int(info.get("size") or 0), _epoch(info.get("mtime") or info.get("updated")))
            token = page.get("nextPageToken")
            if not token:
                return

    def listdir(self, path):
        return self._iterate(path, "/")

    def listtree(self, path):
        return self._iterate(path, None)

    async def fetch(self, name, local, size):
        # concurrency=1: one GET streamed to the file, no metadata request first
        await self.fs._get_file(name, local, **({} if size > LARGE_OBJECT else {"concurrency": 1}))


class _AzureStore(_Store):
    async def _iterate(self, path: str, delimiter: str | None) -> AsyncIterator[_Entry]:
        container, _, key = path.partition("/")
        prefix = (key.rstrip("/") + "/") if key else None
        async with self.fs.service_client.get_container_client(container) as client:
            blobs = client.walk_blobs(name_starts_with=prefix, delimiter=delimiter) if delimiter else client.list_blobs(name_starts_with=prefix)
            async for blob in blobs:
                if delimiter and not hasattr(blob, "size"):  # BlobPrefix: a folder
                    yield _Entry(f"{container}/{blob.name.rstrip('/')}", True, 0, None)
                elif (blob.metadata or {}).get("hdi_isfolder") != "true":
                    yield _Entry(f"{container}/{blob.name}", False, int(blob.size or 0), _epoch(blob.last_modified))

    def listdir(self, path):
        return self._iterate(path, "/")

    def listtree(self, path):
        return self._iterate(path, None)


class _SyncStore(_Store):
    """A filesystem without an async API (local, memory, …): its calls run in a thread pool."""

    def __init__(self, fs, threads: int = 32):
        super().__init__(fs)
        from concurrent.futures import ThreadPoolExecutor

        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="landing")

    async def _run(self, fn, *args, **kwargs):
        return await asyncio.get_running_loop().run_in_executor(self.pool, functools.partial(fn, *args, **kwargs))

    async def listdir(self, path):
        for info in await self._run(self.fs.ls, path, detail=True):
            yield _info_entry(info)

    async def listtree(self, path):
        for info in (await self._run(self.fs.find, path, detail=True)).values():
            yield _info_entry(info)

    async def fetch(self, name, local, size):
        await self._run(self.fs.get_file, name, local)

    def close(self) -> None:
        self.pool.shutdown(wait=False)


def _store_for(fs, concurrency: int) -> _Store:
    if not getattr(fs, "async_impl", False):
        return _SyncStore(fs, concurrency)
    protocols = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    if "s3" in protocols and hasattr(fs, "_iterdir"):
        return _S3Store(fs)
    if "gs" in protocols and hasattr(fs, "_process_object"):
        return _GCSStore(fs)
    if ("az" in protocols or "abfs" in protocols) and hasattr(fs, "service_client"):
        return _AzureStore(fs)
    return _Store(fs)
