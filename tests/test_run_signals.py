"""`usage-report run` killed with real signals at several points, as real subprocesses on a
real Dagster instance (in a temporary DAGSTER_HOME): the next run always completes, freeing
what a dead run held and saying so; SIGTERM/SIGINT stop the command cleanly (the day in
progress rolled back, no later day, no site, one line, 143/130); a second run waits, naming
the run it waits for, and never fails on the warehouse's lock.

The demo organisation gets one large day (DEMO_END - 1) so that its ingest lasts long enough
to be interrupted; the tests watch the instance's pool to signal a run at a known step."""

import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from conftest import DEMO_END
from usage_jobs.cli import DAGSTER_YAML
from usage_jobs.demo.emulator import Faults, IG1Emulator

USAGE_REPORT = Path(sys.executable).with_name("usage-report")
POOL = "duckdb_warehouse"
FIRST, BIG, LAST = DEMO_END - dt.timedelta(days=2), DEMO_END - dt.timedelta(days=1), DEMO_END
MASTER_KEY = "ig1-signals-test-master-key"


@pytest.fixture(scope="module")
def big_logs(demo_org, tmp_path_factory) -> Path:
    """The demo logs plus 20,000 more requests on BIG (a copy of its own gcs batch, new ids)."""
    logs = tmp_path_factory.mktemp("signals") / "logs"
    shutil.copytree(demo_org / "logs", logs)
    folder = logs / "gcs" / BIG.isoformat()
    records = [json.loads(line) for path in sorted(folder.glob("*.ndjson")) for line in path.read_text().splitlines() if line.strip()]
    with (folder / "batch-large.ndjson").open("w") as out:
        for i in range(20_000):
            out.write(json.dumps({**records[i % len(records)], "id": f"large-{i}"}) + "\n")
    return logs


@pytest.fixture
def env(big_logs, demo_org, tmp_path) -> dict:
    home = tmp_path / "dagster"
    home.mkdir()
    (home / "dagster.yaml").write_text(DAGSTER_YAML)
    environment = {**os.environ, "USAGE_LOGS_DIR": str(big_logs), "USAGE_WAREHOUSE": str(tmp_path / "w.duckdb"),
                   "USAGE_SITE_DIR": str(tmp_path / "site"), "USAGE_INVENTORY_FILE": str(demo_org / "inventory.json"),
                   "DAGSTER_HOME": str(home), "USAGE_START_DATE": "2026-01-01", "USAGE_TIMEZONE": "UTC"}
    for name in ("IG1_MASTER_KEY", "GATEWAY_BASE_URL", "GATEWAY_ADMIN_KEY"):
        environment.pop(name, None)
    return environment


@pytest.fixture
def instance(env):
    """The same instance the command uses, opened here first (so that both do not create its tables at once)."""
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as opened:
        yield opened


class Run:
    """`usage-report run` as a subprocess, its output collected line by line."""

    def __init__(self, env: dict, *args: str, own_group: bool = False):
        self.process = subprocess.Popen([str(USAGE_REPORT), "run", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                        start_new_session=own_group)
        self.out: list[str] = []
        self.err: list[str] = []
        self._readers = [threading.Thread(target=self._read, args=(stream, lines), daemon=True)
                         for stream, lines in ((self.process.stdout, self.out), (self.process.stderr, self.err))]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream, lines):
        for line in stream:
            lines.append(line.rstrip("\n"))

    @property
    def pid(self) -> int:
        return self.process.pid

    def signal(self, signum: int) -> float:
        os.kill(self.pid, signum)
        return time.monotonic()

    def finish(self, timeout: float = 240) -> tuple[int, str, str]:
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"usage-report run did not finish within {timeout:.0f} s:\n" + "\n".join(self.out + self.err)) from None
        for reader in self._readers:
            reader.join(timeout=10)
        return code, "\n".join(self.out), "\n".join(self.err)

    def wait_for_line(self, text: str, timeout: float = 120) -> str:
        return _wait(lambda: next((line for line in self.out + self.err if text in line), None), timeout,
                     lambda: f"no line with {text!r}:\n" + "\n".join(self.out + self.err))


def _wait(found, timeout: float, why, every: float = 0.005):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = found()
        except Exception:  # noqa: BLE001 (the instance's SQLite file may be busy with the command's writes)
            value = None
        if value:
            return value
        time.sleep(every)
    raise AssertionError(why())


def _run_of(instance, day: dt.date) -> dg.DagsterRun | None:
    runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/partition": day.isoformat()}), limit=1)
    return runs[0] if runs else None


def _holding(instance, step: str, day: dt.date | None = None) -> str | None:
    """The id of the run whose `step` holds the pool's slot (for `day` when given), else None."""
    storage = instance.event_log_storage
    if POOL not in storage.get_concurrency_keys():
        return None
    for slot in storage.get_concurrency_info(POOL).claimed_slots:
        if slot.step_key == step:
            run = instance.get_run_by_id(slot.run_id)
            if day is None or (run and day.isoformat() in _days_of(run)):
                return slot.run_id
    return None


def _days_of(run: dg.DagsterRun) -> set[str]:
    """The days a run is for: its partition, or every day of its range (the command runs several days together)."""
    if "dagster/partition" in run.tags:
        return {run.tags["dagster/partition"]}
    start, end = run.tags.get("dagster/asset_partition_range_start"), run.tags.get("dagster/asset_partition_range_end")
    if not start:
        return set()
    first, last = dt.date.fromisoformat(start), dt.date.fromisoformat(end)
    return {(first + dt.timedelta(days=i)).isoformat() for i in range((last - first).days + 1)}


def _when_ingesting_big(instance, run: Run) -> str:
    """Once FIRST is stored and gateway_requests holds the pool: the days are stored in order, so it is BIG's turn."""
    run.wait_for_line(f"[1/3] {FIRST}")
    return _when_holding(instance, run, "gateway_requests", BIG)


def _when_holding(instance, run: Run, step: str, day: dt.date | None = None, timeout: float = 180) -> str:
    return _wait(lambda: _holding(instance, step, day), timeout, lambda: f"{step} never held the pool:\n" + "\n".join(run.out + run.err))


def _pool(instance):
    info = instance.event_log_storage.get_concurrency_info(POOL)
    return [(s.run_id, s.step_key) for s in info.claimed_slots], [(s.run_id, s.step_key) for s in info.pending_steps]


def _stored_days(env) -> list[dt.date]:
    with duckdb.connect(env["USAGE_WAREHOUSE"], read_only=True) as conn:
        return [row[0] for row in conn.execute("SELECT day FROM ingest_days ORDER BY day").fetchall()]


def _requests_on(env, day: dt.date) -> int:
    with duckdb.connect(env["USAGE_WAREHOUSE"], read_only=True) as conn:
        return conn.execute("SELECT count(*) FROM requests WHERE day = ?", [day]).fetchone()[0]


def _next_run_completes(env, *args: str) -> str:
    code, out, err = Run(env, "--start", FIRST.isoformat(), "--end", LAST.isoformat(), "--no-site", *args).finish()
    assert code == 0, out + err
    assert "Traceback" not in out + err
    assert _stored_days(env) == [FIRST, BIG, LAST]
    return out + "\n" + err


# --- SIGKILL: the next run frees what the dead one held --------------------------------------

def test_sigkill_during_a_days_ingest_then_the_next_run_frees_its_slot_and_completes(env, instance):
    run = Run(env, "--start", FIRST.isoformat(), "--end", LAST.isoformat(), "--no-site")
    killed = _when_ingesting_big(instance, run)
    run.signal(signal.SIGKILL)
    run.finish()
    assert _pool(instance)[0] == [(killed, "gateway_requests")]  # what blocked every later run
    output = _next_run_completes(env)
    assert f"usage-report: freed the {POOL} slot of run {killed} (process {run.pid} is gone); marked it failed" in output
    assert instance.get_run_by_id(killed).status == dg.DagsterRunStatus.FAILURE
    assert _pool(instance) == ([], [])


def test_sigkill_between_days_and_right_after_a_run_started_then_the_next_run_completes(env, instance):
    between = Run(env, "--start", FIRST.isoformat(), "--end", LAST.isoformat(), "--no-site")
    between.wait_for_line(f"[1/3] {FIRST}")
    between.signal(signal.SIGKILL)
    between.finish()
    _next_run_completes(env)

    # Killed as soon as its run of LAST exists, before or while its first steps run.
    started = Run(env, "--start", LAST.isoformat(), "--end", LAST.isoformat(), "--no-site")
    previous = getattr(_run_of(instance, LAST), "run_id", None)  # the runs before ran the days together
    run_id = _wait(lambda: next((r.run_id for r in [_run_of(instance, LAST)] if r and r.run_id != previous), None), 120, lambda: "no new run")
    started.signal(signal.SIGKILL)
    started.finish()
    _next_run_completes(env)
    assert instance.get_run_by_id(run_id).is_finished  # marked failed (or canceled) if the kill left it unfinished
    assert _pool(instance) == ([], [])


def test_sigkill_during_billing_then_the_next_run_completes(env, instance, demo_org):
    with IG1Emulator.from_file(demo_org / "billing" / "ledger.json", MASTER_KEY, today=DEMO_END + dt.timedelta(days=1),
                               faults=Faults(latency_seconds=4)) as emulator:
        billing = {**env, "IG1_BASE_URL": emulator.url, "IG1_MASTER_KEY": MASTER_KEY, "IG1_USD_RATE": str(demo_org / "billing" / "usd_per_eur.csv")}
        run = Run(billing, "--start", FIRST.isoformat(), "--end", LAST.isoformat(), "--no-site")
        killed = _when_holding(instance, run, "billed_usage")
        run.signal(signal.SIGKILL)
        run.finish()
        emulator.faults.latency_seconds = 0
        output = _next_run_completes(billing)
    assert f"freed the {POOL} slot of run {killed} (process {run.pid} is gone)" in output
    assert "days billed" in output


def test_a_second_run_waits_and_runs_killed_while_queued_leave_nothing_blocked(env, instance, demo_org, tmp_path):
    with IG1Emulator.from_file(demo_org / "billing" / "ledger.json", MASTER_KEY, today=DEMO_END + dt.timedelta(days=1),
                               faults=Faults(latency_seconds=25)) as emulator:
        billing = {**env, "IG1_BASE_URL": emulator.url, "IG1_MASTER_KEY": MASTER_KEY, "IG1_USD_RATE": str(demo_org / "billing" / "usd_per_eur.csv")}
        first = Run(billing, "--start", FIRST.isoformat(), "--end", LAST.isoformat(), "--no-site")
        holder = _when_holding(instance, first, "billed_usage")  # held while IG1 takes its time
        second = Run(billing, "--start", FIRST.isoformat(), "--end", LAST.isoformat(), "--no-site")
        waiting = second.wait_for_line("waiting for ")
        assert waiting.startswith(f"usage-report: waiting for run {holder} (process {first.pid}, `usage-report run --start {FIRST}"), waiting
        assert waiting.endswith("to finish…")

        # A run queued in Dagster's pool behind the first one (as a scheduled run, or an older
        # usage-report, would be), in a process of its own.
        script = tmp_path / "queued.py"
        script.write_text(
            "import dagster as dg\n"
            "from usage_jobs.definitions import DAILY_JOB, GATEWAY_ASSETS, build_definitions\n"
            "from usage_jobs.run_guard import cli_tags\n"
            "from usage_jobs.settings import load_settings\n"
            "job = build_definitions(load_settings()).resolve_job_def(DAILY_JOB)\n"
            f"job.execute_in_process(partition_key='{LAST}', asset_selection=[a.key for a in GATEWAY_ASSETS], "
            "instance=dg.DagsterInstance.get(), tags=cli_tags())\n")
        queued = subprocess.Popen([sys.executable, str(script)], env=billing, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        queued_run = _wait(lambda: next((run_id for run_id, _ in _pool(instance)[1] if run_id != holder), None), 120,
                           lambda: f"no queued step: {_pool(instance)}")
        assert _holding(instance, "billed_usage") == holder
        for process in (queued, second.process, first.process):
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
        second.finish()
        first.finish()
        assert queued_run in {run_id for run_id, _ in _pool(instance)[1]}
        emulator.faults.latency_seconds = 0
        output = _next_run_completes(billing)
    assert f"freed the {POOL} slot of run {holder} (process {first.pid} is gone); marked it failed" in output
    assert f"took run {queued_run} out of the {POOL} queue (process {queued.pid} is gone); marked it failed" in output
    assert "Conflicting lock" not in output
    assert _pool(instance) == ([], [])


# --- SIGTERM / SIGINT: a clean, prompt stop ---------------------------------------------------

def _assert_clean_stop(code: int, out: str, err: str, signum: int, signalled_at: float, env) -> str:
    assert time.monotonic() - signalled_at < 15
    assert code == 128 + signum, out + err
    assert "Traceback" not in out + err and "KeyboardInterrupt" not in out + err
    name = signal.Signals(signum).name
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"usage-report: stopped by {name} "), err
    assert not Path(env["USAGE_SITE_DIR"]).exists()  # the site untouched (never built here)
    assert "Site built" not in out
    return lines[0]


def test_sigterm_during_a_days_ingest_rolls_the_day_back_and_stops_at_once(env, instance):
    run = Run(env, "--start", FIRST.isoformat(), "--end", LAST.isoformat())
    _when_ingesting_big(instance, run)
    signalled = run.signal(signal.SIGTERM)
    code, out, err = run.finish()
    line = _assert_clean_stop(code, out, err, signal.SIGTERM, signalled, env)
    assert line == (f"usage-report: stopped by SIGTERM during {BIG}; that day was rolled back, {FIRST} was stored without its aggregates "
                    "(run it again), nothing was published")
    assert _stored_days(env) == [FIRST] and _requests_on(env, BIG) == 0 and _requests_on(env, LAST) == 0  # no later day stored
    assert _pool(instance) == ([], [])
    _next_run_completes(env)


def test_sigint_between_days_stops_before_the_next_day(env, instance):
    run = Run(env, "--start", FIRST.isoformat(), "--end", LAST.isoformat())
    run.wait_for_line(f"[1/3] {FIRST}")
    signalled = run.signal(signal.SIGINT)
    code, out, err = run.finish()
    line = _assert_clean_stop(code, out, err, signal.SIGINT, signalled, env)
    assert line == (f"usage-report: stopped by SIGINT during {BIG}; that day was rolled back, {FIRST} was stored without its aggregates "
                    "(run it again), nothing was published")
    assert _stored_days(env) == [FIRST] and _requests_on(env, BIG) == 0 and _requests_on(env, LAST) == 0
    _next_run_completes(env)


def test_sigterm_during_billing_stops_without_publishing(env, instance, demo_org):
    with IG1Emulator.from_file(demo_org / "billing" / "ledger.json", MASTER_KEY, today=DEMO_END + dt.timedelta(days=1),
                               faults=Faults(latency_seconds=4)) as emulator:
        billing = {**env, "IG1_BASE_URL": emulator.url, "IG1_MASTER_KEY": MASTER_KEY, "IG1_USD_RATE": str(demo_org / "billing" / "usd_per_eur.csv")}
        run = Run(billing, "--start", FIRST.isoformat(), "--end", LAST.isoformat())
        _when_holding(instance, run, "billed_usage")
        signalled = run.signal(signal.SIGTERM)
        code, out, err = run.finish()
    line = _assert_clean_stop(code, out, err, signal.SIGTERM, signalled, env)
    assert line == (f"usage-report: stopped by SIGTERM during billing of {FIRST} to {LAST}; the billing step in progress was rolled back, "
                    "nothing was published")
    with duckdb.connect(env["USAGE_WAREHOUSE"], read_only=True) as conn:
        assert conn.execute("SELECT count(*) FROM billed_usage").fetchone()[0] == 0
    assert _pool(instance) == ([], [])


def test_ctrl_c_in_a_terminal_stops_the_run_with_one_line_from_the_command_alone(env, instance):
    """Ctrl-C signals the whole foreground process group: Dagster's log-tail helpers must not
    print their own KeyboardInterrupt tracebacks beside the command's line."""
    run = Run(env, "--start", FIRST.isoformat(), "--end", LAST.isoformat(), own_group=True)
    _when_ingesting_big(instance, run)
    signalled = time.monotonic()
    os.killpg(run.pid, signal.SIGINT)
    code, out, err = run.finish()
    line = _assert_clean_stop(code, out, err, signal.SIGINT, signalled, env)
    assert line == (f"usage-report: stopped by SIGINT during {BIG}; that day was rolled back, {FIRST} was stored without its aggregates "
                    "(run it again), nothing was published")
    assert _stored_days(env) == [FIRST] and _requests_on(env, BIG) == 0


@pytest.mark.parametrize("first", ["worker_processes.start()",
                                   "ProcessPoolExecutor(1, mp_context=worker_processes.context()).submit(int).result()"], ids=["start", "a pool"])
def test_the_first_worker_pool_leaves_sigint_blocked_where_the_command_blocked_it(first):
    """Starting the forkserver starts multiprocessing's resource tracker, which unblocks SIGINT in the calling thread: whichever
    starts it (the command ahead of the days, or a pool), the command's mask stays, and Ctrl-C stays its own."""
    code = ("import signal; from concurrent.futures import ProcessPoolExecutor; from usage_jobs import worker_processes; "
            f"signal.pthread_sigmask(signal.SIG_BLOCK, {{signal.SIGINT}}); {first}; print(signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, []))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60).stdout.strip() == "True"


def test_the_worker_server_imports_the_installed_package_from_a_folder_holding_another(tmp_path):
    """A command run from a folder that holds another `usage_jobs` (another checkout): its workers still run the installed code."""
    decoy = tmp_path / "here" / "usage_jobs"
    decoy.mkdir(parents=True)
    (decoy / "__init__.py").write_text("DECOY = True\n")
    script = tmp_path / "bin" / "probe.py"  # a script, as the usage-report command is: its own folder starts its path, not here
    script.parent.mkdir()
    script.write_text("from concurrent.futures import ProcessPoolExecutor\nfrom importlib.util import find_spec\nimport usage_jobs\n"
                      "from usage_jobs import worker_processes\n\nif __name__ == '__main__':\n    print(usage_jobs.__file__)\n"
                      "    print(ProcessPoolExecutor(1, mp_context=worker_processes.context()).submit(find_spec, 'usage_jobs.names').result().origin)\n")
    parent, worker = subprocess.run([sys.executable, str(script)], cwd=decoy.parent, capture_output=True, text=True, check=True, timeout=60).stdout.split()
    assert Path(worker).parent == Path(parent).parent != decoy
