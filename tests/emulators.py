"""Object-storage emulators on 127.0.0.1 for the bucket tests and bench/bucket.py.

Each runs as a child process on a free port in its own process group; `stop()` kills the
whole group (and any descendant that left it) with SIGKILL, since emulators may ignore SIGTERM.

    with moto_server() as s3:           # S3 (moto[server])
        s3.url                          # http://127.0.0.1:PORT, the S3 endpoint URL
    with gcs_emulator() as gcs:         # GCS JSON API (gcp-storage-emulator), in memory
        gcs.url                         # for STORAGE_EMULATOR_HOST
    with azurite() as blob:             # Azure Blob (Azurite, from npm), when installed
        blob.connection_string          # for AZURE_STORAGE_CONNECTION_STRING
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _descendants(pid: int) -> list[int]:
    """Every process below pid, from /proc (children first listed after their parent)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


class Emulator:
    """A server process on 127.0.0.1 that is ready when `ready_path` answers over HTTP."""

    def __init__(self, name: str, argv: list[str], port: int, ready_path: str = "/", env: dict | None = None):
        self.name, self.argv, self.port, self.ready_path = name, argv, port, ready_path
        self.env = {**os.environ, **(env or {})}
        self.url = f"http://127.0.0.1:{port}"
        self.process: subprocess.Popen | None = None
        self.log = tempfile.NamedTemporaryFile(prefix=f"{name}-", suffix=".log", delete=False)

    def start(self, timeout: float = 30.0) -> Emulator:
        self.process = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
                                        env=self.env, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}: {self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + self.ready_path, timeout=1):
                    return self
            except urllib.error.HTTPError:
                return self  # it answers: an HTTP error is an answer
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} did not answer on {self.url} within {timeout:.0f} s: {self.log_tail()}")

    def stop(self) -> None:
        """SIGKILL the process, its group and every descendant, by PID; then reap it."""
        process, self.process = self.process, None
        if process is None:
            return
        pids = [process.pid, *_descendants(process.pid)]
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)  # its own group (start_new_session): id = its PID
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        process.wait(timeout=10)
        self.log.close()
        with contextlib.suppress(OSError):
            os.unlink(self.log.name)

    def log_tail(self, chars: int = 2000) -> str:
        self.log.flush()
        with contextlib.suppress(OSError):
            return Path(self.log.name).read_text(errors="replace")[-chars:]
        return ""

    def __enter__(self) -> Emulator:
        return self.start() if self.process is None else self

    def __exit__(self, *exc) -> None:
        self.stop()


def _started(make, attempts: int = 3) -> Emulator:
    """Start on a free port, trying another port if the first was taken in between."""
    for attempt in range(attempts):
        emulator = make(free_port())
        try:
            return emulator.start()
        except RuntimeError:
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


@contextlib.contextmanager
def moto_server() -> Iterator[Emulator]:
    """moto's S3 (all of moto's services, in fact) on 127.0.0.1; any credentials are accepted."""
    emulator = _started(lambda port: Emulator("moto", [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                              port, "/moto-api/"))
    try:
        yield emulator
    finally:
        emulator.stop()


@contextlib.contextmanager
def gcs_emulator() -> Iterator[Emulator]:
    """gcp-storage-emulator (GCS JSON API) on 127.0.0.1, in memory."""
    emulator = _started(lambda port: Emulator(
        "gcs", [sys.executable, "-m", "gcp_storage_emulator", "start", "--host", "127.0.0.1", "--port", str(port), "--in-memory", "-q"],
        port, "/storage/v1/b"))
    try:
        yield emulator
    finally:
        emulator.stop()


AZURITE_ACCOUNT = "devstoreaccount1"
# Azurite's documented development key (public, the same in every installation).
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def azurite_binary() -> str | None:
    """azurite-blob from $AZURITE_BLOB, ./.azurite (`npm install --prefix .azurite azurite@3`) or PATH."""
    local = Path(__file__).resolve().parent.parent / ".azurite" / "node_modules" / ".bin" / "azurite-blob"
    for candidate in (os.environ.get("AZURITE_BLOB"), str(local), shutil.which("azurite-blob")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


@contextlib.contextmanager
def azurite() -> Iterator[Emulator]:
    """Azurite's Blob service on 127.0.0.1, storing in a temporary folder; `.connection_string` reaches it."""
    binary = azurite_binary()
    if binary is None:
        raise RuntimeError("azurite-blob is not installed (npm install --prefix .azurite azurite@3)")
    with tempfile.TemporaryDirectory(prefix="azurite-") as data:
        emulator = _started(lambda port: Emulator(
            "azurite", [binary, "--blobHost", "127.0.0.1", "--blobPort", str(port), "--location", data, "--silent",
                        "--skipApiVersionCheck", "--loose"], port, f"/{AZURITE_ACCOUNT}?comp=list"))
        emulator.connection_string = (f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
                                      f"BlobEndpoint={emulator.url}/{AZURITE_ACCOUNT};")
        try:
            yield emulator
        finally:
            emulator.stop()


# Credentials for the emulators, from the standard chains; instance metadata lookups are off,
# so nothing leaves 127.0.0.1.
S3_TEST_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
               "AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull}
