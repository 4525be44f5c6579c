"""`usage-report`: the demo, date-range runs, site rebuilds, exports of any range and a configuration check.

Runs are the jobs of the definitions built from the settings, executed on the Dagster
instance in DAGSTER_HOME (so `dagster dev` shows them under their job names); progress and
failures are read back from the instance's records. Dagster is imported only when a
command needs it, so `check-config` stays quick.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import datetime as dt
import functools
import os
import secrets
import shutil
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from usage_jobs import collector, worker_processes
from usage_jobs.settings import ENV_NAMES, SECRET_ENV_NAMES, Settings, SettingsError, load_settings

DAGSTER_YAML = """# Dagster instance of usage-report (created by the usage-report command).
telemetry:
  enabled: false
# DuckDB allows one writing process per database file: one step at a time in every pool.
concurrency:
  pools:
    default_limit: 1
"""


class CommandError(ValueError):
    """A command line the product cannot carry out as asked; the message says what to do instead."""


def _say(message: str) -> None:
    print(message, flush=True)


def _date(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a date in YYYY-MM-DD form") from None


def _month(value: str) -> str:
    try:
        return dt.datetime.strptime(value, "%Y-%m").strftime("%Y-%m")
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a month in YYYY-MM form") from None


def _prepare_dagster_home(settings: Settings) -> None:
    home = settings.dagster_home.resolve()
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        (home / "dagster.yaml").write_text(DAGSTER_YAML)
    os.environ["DAGSTER_HOME"] = str(home)


# The CLI prints its own progress and error lines; Dagster's run history keeps the full logs.
# Step retries off: Dagster retries a step interrupted by SIGINT/SIGTERM under its RetryPolicy,
# where the command must stop; its HTTP clients still retry transient errors themselves.
# (execute_in_process ignores this executor setting: the command uses dg.execute_job.)
CLI_RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}, "execution": {"config": {"retries": {"disabled": {}}}}}
# Assets whose step commits to the warehouse (raw_gateway_logs only lands files).
DAY_WRITERS = ("gateway_requests", "daily_usage", "gateway_completeness", "key_anomalies")
RUN_KEY_TAG = "usage_report/run_key"
SOURCE_NAMES = {"key_inventory": ("Key inventory", "the key inventory"), "commit_status": ("IG1 commit status", "IG1's commit status")}


@dataclass
class RunOutcome:
    """What a finished run did, as the Dagster instance recorded it."""

    run_id: str
    success: bool
    failed_steps: list[tuple[str, str]]  # (asset, message): a dg.Failure's description, else the error's root cause
    checks: list  # AssetCheckEvaluation records of the run
    materialized: dict[str, dict]  # asset → metadata of its materialisation

    def failed_checks(self, severity: str = "ERROR") -> list:
        return [check for check in self.checks if not check.passed and check.severity.value == severity]

    def check_lines(self, severity: str = "ERROR") -> list[str]:
        """Checks that did not pass, at one severity: ERROR fails the run, WARN is reported."""
        return [f"check {c.check_name} {'failed' if severity == 'ERROR' else 'warns'}: {c.description or ''}".strip() for c in self.failed_checks(severity)]

    def problems(self) -> list[str]:
        return [message for _, message in self.failed_steps] + self.check_lines()


def _failed_steps(events: list) -> list[tuple[str, str]]:
    """(step, message) of each failed step, but a blocking check's own failure: its check line says why."""
    return [(event.step_key, _failure_message(event)) for event in events
            if not (event.step_failure_data.error and event.step_failure_data.error.cls_name == "DagsterAssetCheckFailedError")]


def _failure_message(event) -> str:
    data = event.step_failure_data
    if data.user_failure_data and data.user_failure_data.description:
        return data.user_failure_data.description
    return (data.error.cause or data.error).message.strip() if data.error else "step failed"


def run_outcome(instance, run_id: str) -> RunOutcome:
    """A run's status, failed steps, check evaluations and materialisations, from the instance's records."""
    import dagster as dg

    def events(event_type) -> list:
        return [record.event_log_entry.dagster_event for record in instance.get_records_for_run(run_id, of_type=event_type).records]

    run = instance.get_run_by_id(run_id)
    return RunOutcome(
        run_id=run_id,
        success=run is not None and run.status == dg.DagsterRunStatus.SUCCESS,
        failed_steps=_failed_steps(events(dg.DagsterEventType.STEP_FAILURE)),
        checks=[event.asset_check_evaluation_data for event in events(dg.DagsterEventType.ASSET_CHECK_EVALUATION)],
        materialized={event.asset_key.to_user_string(): event.step_materialization_data.materialization.metadata
                      for event in events(dg.DagsterEventType.ASSET_MATERIALIZATION)},
    )


class Session:
    """One `usage-report` command on the Dagster instance: the jobs of the definitions built from
    its settings, run on the instance in DAGSTER_HOME; one command at a time (it waits for
    another one, saying which), runs tagged with this process, the slots of dead runs freed
    before each run, and SIGINT/SIGTERM turned into a clean stop between steps."""

    def __init__(self, environ: Mapping[str, str], command: str, refetch: bool = False):
        self.settings, self.command, self.refetch = load_settings(environ), command, refetch
        # What rebuilds the runs' job (recorded in each run's origin): the settings but the secrets,
        # which the job's resources read from the process environment (dg.EnvVar).
        self.job_arguments = {"settings_env": {name: environ[name] for name in ENV_NAMES if name in environ and name not in SECRET_ENV_NAMES},
                              "refetch": refetch}
        self.doing: tuple = ("start",)

    def __enter__(self) -> Session:
        from usage_jobs import run_guard

        self.stop = run_guard.StopSignals(self._force).__enter__()
        try:
            import dagster as dg

            _prepare_dagster_home(self.settings)
            self.instance = dg.DagsterInstance.get()
            self.lock = run_guard.CommandLock(self.settings.dagster_home.resolve(), self.command)
            self.check()
            self.doing = ("waiting",)
            self.lock.acquire(self.instance, _say, self.check)
            self.doing = ("start",)
        except BaseException:
            self.__exit__(*sys.exc_info())
            raise
        return self

    def __exit__(self, *exc) -> None:
        if getattr(self, "lock", None):
            self.lock.release()
        if getattr(self, "instance", None):
            self.instance.dispose()
        self.stop.__exit__(*exc)

    # --- stopping ---------------------------------------------------------------------

    def check(self) -> None:
        """A checkpoint: raise Stopped (saying what was stopped and what it left) after SIGINT/SIGTERM."""
        from usage_jobs.run_guard import Stopped

        signum = self.stop.poll()
        if signum is not None:
            raise Stopped(signum, self.describe_stop(signum))

    def describe_stop(self, signum: int) -> str:
        from usage_jobs.run_guard import SIGNAL_NAMES

        name = SIGNAL_NAMES.get(signum, f"signal {signum}")
        kind, *what = self.doing
        if kind == "day":
            day, key = what
            materialized: dict = {}
            with contextlib.suppress(Exception):  # from the watchdog thread the instance may be busy: stored assets go unnamed
                materialized = run_outcome(self.instance, self.run_id(key)).materialized
            stored = [node for node in DAY_WRITERS if node in materialized]
            if stored:
                return (f"stopped by {name} during {day}; {', '.join(stored)} of that day were stored and the step in progress "
                        f"was rolled back (run the day again), nothing was published")
            return f"stopped by {name} during {day}; that day was rolled back, nothing was published"
        if kind == "days":
            days, key, lines = what
            materialized = {}
            with contextlib.suppress(Exception):  # as above
                lines.poll()
                materialized = run_outcome(self.instance, self.run_id(key)).materialized
            if "gateway_requests" in materialized:
                stored = [node for node in DAY_WRITERS if node in materialized]
                return (f"stopped by {name} during {days[0]} to {days[-1]}; {', '.join(stored)} of those days were stored and the step in "
                        f"progress was rolled back (run the days again), nothing was published")
            done = lines.stored  # stored one at a time, in order: their requests, not yet their aggregates
            text = f"stopped by {name} during {days[min(len(done), len(days) - 1)]}; that day was rolled back"
            if done:
                text += (f", {done[0]} was stored without its aggregates (run it again)" if len(done) == 1 else
                         f", {done[0]} to {done[-1]} were stored without their aggregates (run them again)")
            return text + ", nothing was published"
        if kind == "after":
            (day,) = what
            return f"stopped by {name} after {day} was stored; no later day was started, nothing was published"
        if kind == "failed":
            (day,) = what
            return f"stopped by {name} after {day} failed; no later day was started, nothing was published"
        if kind == "after billing":
            return f"stopped by {name} after billing; the site was not rebuilt, nothing was published"
        if kind == "billing":
            start, end = what
            return f"stopped by {name} during billing of {start} to {end}; the billing step in progress was rolled back, nothing was published"
        if kind == "refresh":
            return f"stopped by {name} while refreshing the key inventory and IG1's commit status; the site was not rebuilt, nothing was published"
        if kind == "site":
            return f"stopped by {name} while building the site; the published site is unchanged"
        if kind == "waiting":
            return f"stopped by {name} while waiting for another run to finish; nothing was run"
        return f"stopped by {name} before anything was run; nothing was published"

    def _force(self, signum: int) -> None:
        """The watchdog's way out when the command does not stop in time (or on a second signal)."""
        from usage_jobs import run_guard

        with contextlib.suppress(Exception):
            run_guard.cancel_own_runs(self.instance, f"stopped by {run_guard.SIGNAL_NAMES.get(signum, signum)}")
        print(f"usage-report: {self.describe_stop(signum)} (it did not stop in time: it exits now, and what a step had not "
              "committed is rolled back)", file=sys.stderr, flush=True)
        run_guard.exit_now(128 + signum)

    # --- runs -----------------------------------------------------------------------------

    def run_job(self, job_name: str, key: str, assets: list | None = None, partition_key: str | None = None,
                tags: dict | None = None, ops_config: dict | None = None) -> RunOutcome:
        """One run of a job of the definitions (of some of its assets) on the instance, once the
        warehouse pool is free (dead runs' slots freed); its outcome read back from the instance.
        `key` tags the run, so that it is found while it runs."""
        import dagster as dg

        from usage_jobs.defs.resources import WAREHOUSE_POOL
        from usage_jobs.run_guard import cli_tags, wait_for_pool

        self.check()
        wait_for_pool(self.instance, WAREHOUSE_POOL, _say, self.check)
        self.check()
        job = dg.build_reconstructable_job(__name__, cli_job.__name__, reconstructable_kwargs={
            "job_name": job_name, "assets": [asset.key.to_user_string() for asset in assets] if assets else None, **self.job_arguments})
        run_tags = {**(tags or {}), RUN_KEY_TAG: key} | ({"dagster/partition": partition_key} if partition_key else {})
        self.stop.forward_to_dagster = True
        try:
            run_config = CLI_RUN_CONFIG | ({"ops": ops_config} if ops_config else {})
            result = dg.execute_job(job, instance=self.instance, run_config=run_config, tags=cli_tags(**run_tags))
        finally:
            self.stop.forward_to_dagster = False
        return run_outcome(self.instance, result.run_id)

    def run_id(self, key: str) -> str | None:
        import dagster as dg

        runs = self.instance.get_runs(filters=dg.RunsFilter(tags={RUN_KEY_TAG: key}), limit=1)
        return runs[0].run_id if runs else None

    @contextlib.contextmanager
    def warehouse(self, run_id: str):
        """The warehouse, read-only, holding the pool's slot (as a step of run `run_id`) while open."""
        from usage_jobs import warehouse
        from usage_jobs.defs.resources import WAREHOUSE_POOL
        from usage_jobs.run_guard import pool_slot

        with pool_slot(self.instance, WAREHOUSE_POOL, run_id, "usage_report_read", _say, self.check), \
                warehouse.session(self.settings.warehouse, read_only=True) as conn:
            yield conn


@functools.lru_cache(maxsize=4)
def _definitions(environment: tuple[tuple[str, str], ...], refetch: bool):
    """The definitions of an environment, built once a process: dg.execute_job rebuilds a run's job about four times."""
    from usage_jobs.definitions import build_definitions

    return build_definitions(load_settings(dict(environment)), refetch=refetch)


def cli_job(job_name: str, settings_env: dict[str, str], refetch: bool, assets: list[str] | None = None):
    """A job of the definitions built from `settings_env` and the process environment's secrets (some of its assets, with
    the job's checks on them): what dg.execute_job rebuilds for each run of the command."""
    import dagster as dg

    job = _definitions(tuple(sorted({**os.environ, **settings_env}.items())), refetch).resolve_job_def(job_name)
    if not assets:
        return job
    keys = {dg.AssetKey.from_user_string(name) for name in assets}
    # The job's own checks on those assets: an asset selection alone would add every check of the assets, the freshness
    # checks too, which are the freshness sensor's to run (they judge whether the runs came, not what a run stored).
    checks = {check for check in job.asset_layer.asset_graph.asset_check_keys if check.asset_key in keys}
    return job.get_subset(asset_selection=keys, asset_check_selection=checks)


def run_days(session: Session, start: dt.date, end: dt.date, refetch_billing_month: str | None = None) -> list[tuple[dt.date | str, str]]:
    """Run the daily job's gateway assets for every day from start to end (inclusive), with progress; then its billing
    assets over the whole range in one run.

    Several days run together, in one run (a single-run backfill: the days read and validated by worker processes, stored
    one at a time), which spares a run's overhead per day. Should that run fail, each day is run again on its own: a range
    is one step per asset, so one bad day (logs missing, too many records rejected) fails the range, and a run per day
    stores every good day and names each bad one. Failures are (day, message) for a day and (asset, message) for billing."""
    days = [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]
    began = time.monotonic()
    failures = _run_together(session, days) if len(days) > 1 else None
    if failures is None:
        failures = [failure for index, day in enumerate(days, start=1) if (failure := _run_day(session, day, index, len(days)))]
    _say(f"{len(days) - len(failures)}/{len(days)} days ingested in {time.monotonic() - began:.1f} s")
    if session.settings.billing_configured:
        failures += run_billing(session, start, end, refetch_billing_month)
    else:
        _say("Billing: not configured (IG1_MASTER_KEY not set); the report shows gateway estimates only")
    return failures


def _run_day(session: Session, day: dt.date, index: int, count: int) -> tuple[dt.date, str] | None:
    """One day in a run of its own; its line printed; (day, message) if it failed."""
    from usage_jobs.definitions import DAILY_JOB, GATEWAY_ASSETS

    session.check()
    started = time.monotonic()
    key = str(uuid.uuid4())
    session.doing = ("day", day, key)
    outcome = session.run_job(DAILY_JOB, key, assets=GATEWAY_ASSETS, partition_key=day.isoformat())
    if outcome.success:
        session.doing = ("after", day)
    session.check()
    problems = outcome.problems()
    if problems:
        _say(f"{_day_prefix(index, count, day)}  FAILED: {'; '.join(problems)}")
        session.doing = ("failed", day)
        return day, "; ".join(problems)
    stats = {name: value.value for name, value in outcome.materialized["gateway_requests"].items()}
    _say(_day_line(index, count, day, stats["rows"], stats["rejected"], stats["duplicates"], stats["id collisions"], stats["tokens estimated"],
                   stats["unpriced"], time.monotonic() - started, _landed(outcome.materialized["raw_gateway_logs"])))
    _after_days(session, outcome, [day])
    return None


def _run_together(session: Session, days: list[dt.date]) -> list[tuple[dt.date, str]] | None:
    """The days in one run, each one's line printed as it is stored; [] once done, None if the run failed (after saying so)."""
    from usage_jobs.definitions import DAILY_JOB, GATEWAY_ASSETS

    session.check()
    key = str(uuid.uuid4())
    lines = DayLines(session, key, days)
    session.doing = ("days", days, key, lines)
    with lines:
        outcome = session.run_job(DAILY_JOB, key, assets=GATEWAY_ASSETS, tags={
            "dagster/asset_partition_range_start": days[0].isoformat(), "dagster/asset_partition_range_end": days[-1].isoformat()})
    session.check()
    problems = outcome.problems()
    if problems:
        _say(f"  FAILED: {'; '.join(problems)}")
        _say(f"  The {len(days)} days run together failed: each one is run again on its own, so that every good day is stored")
        return None
    session.doing = ("after", days[-1])
    _after_days(session, outcome, days)
    return []


def _after_days(session: Session, outcome: RunOutcome, days: list[dt.date]) -> None:
    """The files of the days that are not request logs, and the warnings of the run's checks."""
    with session.warehouse(outcome.run_id) as conn:
        unrecognised = conn.execute("SELECT day, source_file, bytes, holds_data FROM unrecognised_files WHERE day BETWEEN ? AND ? "
                                    "ORDER BY day, source_file", [days[0], days[-1]]).fetchall()
    for day, name, size, holds_data in unrecognised:
        _say(f"    not a request log{' (holds data!)' if holds_data else ''}: {name} ({size:,} bytes)" + (f", {day}" if len(days) > 1 else ""))
    for warning in outcome.check_lines("WARN"):
        _say(f"    warning: {warning}")


def _day_prefix(index: int, count: int, day) -> str:
    return f"[{index:>{len(str(count))}}/{count}] {day}"


def _day_line(index: int, count: int, day, rows: int, rejected: int, duplicates: int, collisions: int, estimated: int, unpriced: int,
              seconds: float, landed: str) -> str:
    """A stored day's progress line, whether its run was its own or the range's."""
    return (f"{_day_prefix(index, count, day)}  {rows:>9,} requests  {rejected:>5,} rejected  {duplicates:>4,} duplicates  "
            f"{collisions:>3,} id collisions  {estimated:>5,} estimated  {unpriced:>4,} unpriced  ({seconds:.1f} s){landed}")


class DayLines:
    """While the days of a run are stored, each one's line, from the run's own log (what gateway_requests and
    raw_gateway_logs say of each day), printed as it comes; polled by a thread of its own."""

    def __init__(self, session: Session, key: str, days: list[dt.date]):
        self.session, self.key, self.days = session, key, days
        self.stored: list[dt.date] = []
        self.landed: dict[str, str] = {}
        self.last: float | None = None  # when the run's log said the previous day was stored (its first event, at first)
        self._cursor = None
        self._run_id = None
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._follow, daemon=True)

    def __enter__(self) -> DayLines:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join()
        self.poll()

    def _follow(self) -> None:
        while not self._done.wait(0.25):
            with contextlib.suppress(Exception):  # the instance's SQLite file may be busy with the run's writes: next time
                self.poll()

    def poll(self) -> None:
        from usage_jobs.defs.gateway.assets import DAY_LANDED, DAY_STORED, parse_day_log

        with self._lock:
            self._run_id = self._run_id or self.session.run_id(self.key)
            if self._run_id is None:
                return
            while True:
                result = self.session.instance.get_records_for_run(self._run_id, cursor=self._cursor, limit=1000)
                self._cursor = result.cursor
                for record in result.records:
                    # A day's seconds from the log's own times: polling would give two days stored within a poll 0.0 s.
                    self.last = self.last or record.event_log_entry.timestamp
                    message = record.event_log_entry.user_message if record.event_log_entry.dagster_event is None else ""
                    if landed := parse_day_log(DAY_LANDED, message):
                        self.landed[landed["day"]] = _landed_text(landed["fetched"], landed["mb"], landed["already"])
                    elif day := parse_day_log(DAY_STORED, message):
                        self.stored.append(dt.date.fromisoformat(day["day"]))
                        now = record.event_log_entry.timestamp
                        _say(_day_line(len(self.stored), len(self.days), day["day"], day["rows"], day["rejected"], day["duplicates"],
                                       day["id_collisions"], day["tokens_estimated"], day["unpriced"], now - self.last, self.landed.get(day["day"], "")))
                        self.last = now
                if not result.has_more:
                    return


def _landed(metadata: dict) -> str:
    """What landing a remote source cost, from raw_gateway_logs' metadata; empty for a local folder."""
    if "objects fetched" not in metadata:
        return ""
    return _landed_text(metadata["objects fetched"].value, metadata["MB fetched"].value, metadata["already landed"].value)


def _landed_text(fetched: int, mb: float, already: int) -> str:
    return f"; landed {fetched:,} objects ({mb:,.1f} MB), {already:,} already there"


def last_complete_day(settings: Settings, now: dt.datetime | None = None) -> dt.date:
    """Yesterday in the report time zone: today's logs are still being written."""
    return (now or dt.datetime.now(dt.UTC)).astimezone(settings.tz).date() - dt.timedelta(days=1)


def run_billing(session: Session, start: dt.date, end: dt.date, refetch_billing_month: str | None = None) -> list[tuple[str, str]]:
    """Fetch, reconcile and allocate IG1's billing of start..end: the daily job's billing assets in one run (a single-run backfill);
    with `refetch_billing_month` (YYYY-MM), that whole invoice month is asked of IG1 again (restatements, withdrawn days)."""
    from usage_jobs.definitions import BILLING_ASSETS, DAILY_JOB
    from usage_jobs.defs.billing.reconcile import variance_pct

    settings = session.settings
    again = f", and the whole of {refetch_billing_month} again" if refetch_billing_month else ""
    _say(f"Billing: asking IG1 ({settings.ig1_base_url}) for {start} to {end}{again} and reconciling")
    started = time.monotonic()
    session.doing = ("billing", start, end)
    outcome = session.run_job(DAILY_JOB, str(uuid.uuid4()), assets=BILLING_ASSETS,
                              tags={"dagster/asset_partition_range_start": start.isoformat(), "dagster/asset_partition_range_end": end.isoformat()},
                              ops_config={"billed_usage": {"config": {"refetch_month": refetch_billing_month}}} if refetch_billing_month else None)
    session.check()
    session.doing = ("after billing",)
    failed = outcome.failed_steps + [(f"{c.asset_key.to_user_string()} (check {c.check_name})", c.description or "check failed")
                                     for c in outcome.failed_checks()]
    for warning in outcome.check_lines("WARN"):
        _say(f"  warning: {warning}")
    if failed:
        _say(f"  Billing FAILED: {'; '.join(f'{asset}: {message}' for asset, message in failed)}")
        return failed
    with session.warehouse(outcome.run_id) as conn:
        billed, unbilled = conn.execute("SELECT count(*) FILTER (billed), count(*) FILTER (NOT billed) FROM billing_days WHERE day BETWEEN ? AND ?",
                                        [start, end]).fetchone()
        totals = conn.execute(
            "SELECT model, sum(billed_input_tokens + billed_output_tokens), sum(estimated_input_tokens + estimated_output_tokens), "
            "sum(billed_cost_usd), sum(estimated_cost_usd) FROM reconciliation "
            "WHERE day BETWEEN ? AND ? AND status = 'reconciled' GROUP BY model ORDER BY model", [start, end]).fetchall()
    _say(f"  {billed} days billed, {unbilled} not billed yet, in {time.monotonic() - started:.1f} s; variance (billed vs estimated):")
    for model, billed_tokens, estimated_tokens, billed_usd, estimated_usd in totals:
        tokens, cost = variance_pct(billed_tokens, estimated_tokens, places=1), variance_pct(billed_usd, estimated_usd, places=1)
        _say(f"    {model:<36} tokens {tokens:+6.1f}%   cost (USD) {'n/a' if cost is None else f'{cost:+6.1f}%'}")
    return []


def build_site(session: Session) -> list[tuple[str, str]]:
    """Refresh the inventory and IG1's commit status (each may fail on its own), then build the
    site from what the warehouse holds, in a run of its own: an outage of either source is
    stated on the pages instead of holding the site back. The failed assets are returned."""
    from usage_jobs.definitions import REFRESH_JOB, SITE_JOB

    session.doing = ("refresh",)
    refreshed = session.run_job(REFRESH_JOB, str(uuid.uuid4()))
    session.check()
    for asset, message in refreshed.failed_steps:
        _say(f"{SOURCE_NAMES.get(asset, (asset,))[0]} FAILED ({asset}): {message}")
    started = time.monotonic()
    session.doing = ("site",)
    outcome = session.run_job(SITE_JOB, str(uuid.uuid4()))
    if not outcome.success:
        session.check()
        _say(f"Site build FAILED: {'; '.join(outcome.problems())}")
        return refreshed.failed_steps + outcome.failed_steps
    metadata = outcome.materialized["usage_report_site"]
    _say(f"Site built in {time.monotonic() - started:.1f} s: {metadata['pages'].value} pages, {metadata['charts'].value} charts, "
         f"{metadata['export files'].value} export files, {metadata['pdfs'].value} PDFs; {metadata['periods rendered'].value} periods rendered, "
         f"{metadata['periods unchanged (copied)'].value} unchanged")
    for note in filter(None, metadata["pdf notes"].value.splitlines()):  # no Chromium (said once), or a period whose PDF failed
        _say(f"  {note}")
    if refreshed.failed_steps:
        _say(f"  from what the warehouse holds: its pages say that {' and '.join(SOURCE_NAMES.get(a, (a, a))[1] for a, _ in refreshed.failed_steps)} "
             "could not be refreshed")
    _say(f"Open {(session.settings.site_dir / 'index.html').resolve()}")
    return refreshed.failed_steps


def _report_failures(failures: list[tuple[dt.date | str, str]], published: bool) -> int:
    """The closing line(s) naming what failed; the exit code."""
    days = [day.isoformat() for day, _ in failures if isinstance(day, dt.date)]
    assets = list(dict.fromkeys(asset for asset, _ in failures if isinstance(asset, str)))
    if days:
        _say(f"{len(days)} day(s) failed: " + ", ".join(days))
    if assets:
        _say(f"{len(assets)} asset(s) failed: " + ", ".join(assets) +
             ("; the site was published from what the warehouse holds" if published else ""))
    return 1 if failures else 0


def cmd_check_config(args) -> int:
    settings = load_settings()
    width = max(map(len, ENV_NAMES))
    for name, value in settings.describe():
        _say(f"{name:<{width}}  {value}")
    _say(f"inventory source: {settings.inventory_source}; billing: {'configured' if settings.billing_configured else 'not configured'}")
    if settings.logs_source == "logs-dir" and not settings.logs_in_bucket and not Path(settings.logs_dir).is_dir():
        _say(f"warning: USAGE_LOGS_DIR {settings.logs_dir} does not exist yet")
    _say("configuration OK")
    return 0


def cmd_run(args) -> int:
    if args.end < args.start:
        raise CommandError(f"--end {args.end} is before --start {args.start}")
    settings = load_settings()
    if args.refetch_billing_month and not settings.billing_configured:
        raise CommandError("--refetch-billing-month needs IG1 billing: IG1_MASTER_KEY is not set")
    last = last_complete_day(settings)
    if args.end > last:
        raise CommandError(f"{args.end} is not over yet in {settings.timezone}: the last complete day is {last}. "
                           f"Run up to --end {last}; the daily schedule ingests each day once it is over.")
    # The partitions reach back to the range asked for.
    environ = {**os.environ, "USAGE_START_DATE": min(args.start, settings.first_day).isoformat()}
    with Session(environ, args.command_line, refetch=args.refetch) as session:
        if not args.no_site or args.end > args.start:  # workers will be started: their server imports while the days are read
            worker_processes.start()
        if not args.no_site:  # and the browser printing the PDFs starts up meanwhile
            from usage_jobs.defs.report.pdf import start_ahead

            start_ahead(settings.chromium)
        failures = run_days(session, args.start, args.end, args.refetch_billing_month)
        site_failures = build_site(session) if not args.no_site else []
    published = not args.no_site and not any(asset == "usage_report_site" for asset, _ in site_failures)
    return _report_failures(failures + site_failures, published)


def cmd_site(args) -> int:
    with Session(os.environ, args.command_line) as session:
        failures = build_site(session)
    return _report_failures(failures, published=not any(asset == "usage_report_site" for asset, _ in failures))


def _export_period(args, conn):
    """The period `usage-report export` was asked for: --period SLUG, else --start/--end as a range."""
    from usage_jobs.defs.report.periods import period_from_slug, range_period
    from usage_jobs.defs.report.range_export import ingested_days

    if args.period:
        if args.start or args.end:
            raise CommandError("--period names the whole span: give either --period or --start and --end")
        days = ingested_days(conn)
        try:
            return period_from_slug(args.period, last_day=days[-1] if days else None)
        except ValueError as exc:
            raise CommandError(f"--period {exc}") from None
    if not (args.start and args.end):
        raise CommandError("give --start YYYY-MM-DD and --end YYYY-MM-DD (both included), or --period SLUG")
    if args.end < args.start:
        raise CommandError(f"--end {args.end} is before --start {args.start}")
    return range_period(args.start, args.end)


@contextlib.contextmanager
def _read_warehouse(path: Path):
    """The warehouse, read-only, for the export's few seconds (DuckDB refuses a writer meanwhile, and a reader while a run writes)."""
    import duckdb

    from usage_jobs import warehouse

    if not path.is_file():
        raise CommandError(f"no warehouse at {path}: run `usage-report run --start … --end …` (or `make demo`) first, "
                           "or point USAGE_WAREHOUSE at it")
    try:
        conn = warehouse.connect(path, read_only=True)
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            raise CommandError(f"the warehouse {path} is being written by a run right now: export again once it has finished") from None
        raise CommandError(f"cannot read the warehouse {path}: {exc}") from None
    try:
        yield conn
    finally:
        conn.close()


def cmd_export(args) -> int:
    """Export files for any range of days or any period, as the site's (same tables, columns and rules)."""
    import duckdb

    from usage_jobs.defs.report.periods import day_runs
    from usage_jobs.defs.report.range_export import ExportError, export_period

    settings = load_settings()
    formats = (args.format,) if args.format else ("csv", "json")
    with _read_warehouse(settings.warehouse) as conn:
        period = _export_period(args, conn)
        folder = args.out or Path("exports") / period.slug
        try:
            result = export_period(conn, period, folder, types=args.type, formats=formats, timezone=settings.timezone,
                                   billing_configured=settings.billing_configured, billing_timezone=settings.billing_timezone,
                                   hide_user_agent_tags=settings.hide_user_agent_tags)
        except ExportError as exc:
            raise CommandError(str(exc)) from None
        except duckdb.CatalogException as exc:  # a warehouse of an earlier version, not migrated yet (read-only cannot)
            raise CommandError(f"the warehouse {settings.warehouse} predates this version ({exc}): run `usage-report site` once "
                               "to bring it up to date, then export again") from None
    if result.missing_days:
        _say(f"warning: {len(result.missing_days)} of the {period.length} days are not in the warehouse ({day_runs(result.missing_days)}): "
             "the exports cover the ingested days, and their metadata's missing_days lists the others")
    _say(f"Exported {period.label} ({period.start} to {period.end}, {settings.timezone}) into {folder}/:")
    width = max(len(entry["file"]) for entry in result.files) if result.files else 0
    for entry in result.files:
        _say(f"  {entry['file']:<{width}}  {entry['rows']:>8,} rows")
    _say(f"  {'manifest.json':<{width}}  (files, rows, sha256)")
    return 0


def cmd_digest(args) -> int:
    from usage_jobs.defs.notify.command import digest_command

    return digest_command(load_settings(), args.day, args.dry_run)


def cmd_generate(args) -> int:
    from usage_jobs.demo.generator import default_days, generate

    end = args.end or dt.date.today() - dt.timedelta(days=1)
    days = args.days or default_days(end + dt.timedelta(days=1))
    if args.out.exists():
        shutil.rmtree(args.out)
    summary = generate(args.out, days=days, end=end, seed=args.seed, requests_per_day=args.requests_per_day,
                       progress=lambda done, total, day, n: _say(f"  generated {day} ({n:,} requests) [{done}/{total}]")
                       if done % 7 == 0 or done == total else None)
    _say(f"Demo organisation in {args.out}: {summary['requests']:,} requests from {summary['first_day']} to {summary['last_day']}, "
         f"{summary['keys']} keys in {summary['teams']} teams, {summary['anomalies']} injected anomalies")
    return 0


def cmd_demo(args) -> int:
    out = Path("demo_data")
    args.out = out
    _say("1/3 Generating the demo organisation (gateway logs in LiteLLM's layouts, key/team inventory)")
    cmd_generate(args)
    import json

    summary = json.loads((out / "summary.json").read_text())
    with _demo_billing(out / "billing") as (emulator, billing):
        environ = {**os.environ, "USAGE_LOGS_DIR": str(out / "logs"), "USAGE_INVENTORY_FILE": str(out / "inventory.json"),
                   "USAGE_START_DATE": summary["first_day"], **billing}
        settings = load_settings(environ)
        start, end = dt.date.fromisoformat(summary["first_day"]), dt.date.fromisoformat(summary["last_day"])
        _say(f"2/3 Materialising {start} to {end} into {settings.warehouse} (IG1 billing emulator on {emulator.url})")
        with Session(environ, args.command_line) as session:
            if settings.warehouse.exists():
                settings.warehouse.unlink()  # the demo starts from an empty warehouse (no other command runs now)
            failures = run_days(session, start, end)
            _say("3/3 Building the report site")
            failures += build_site(session)
    return _report_failures(failures, published=not any(asset == "usage_report_site" for asset, _ in failures))


@contextlib.contextmanager
def _demo_billing(folder: Path):
    """The local IG1 emulator over the demo's ledger, with a throwaway master key, for the demo's
    duration, and the billing settings that point at it.

    Like IG1, it has not billed yesterday yet: the report shows that day as awaiting billing."""
    from usage_jobs.demo.emulator import Faults, IG1Emulator

    master_key = "demo-" + secrets.token_urlsafe(24)
    with IG1Emulator.from_file(folder / "ledger.json", master_key, faults=Faults(delay_days=1)) as emulator:
        # The billing resource reads the key from the environment (dg.EnvVar), never from run config.
        os.environ["IG1_MASTER_KEY"] = master_key
        yield emulator, {"IG1_BASE_URL": emulator.url, "IG1_MASTER_KEY": master_key,
                         "IG1_USD_RATE": os.environ.get("IG1_USD_RATE") or str(folder / "usd_per_eur.csv")}


def cmd_serve(args) -> int:
    """Serve the site to admins only, until interrupted."""
    from usage_jobs.serve import AccessPolicy, make_server

    settings = load_settings()
    if not settings.gateway_base_url and not settings.admin_tokens:
        raise SettingsError("nobody could be admitted: set GATEWAY_BASE_URL (admins sign in with their gateway key) or USAGE_ADMIN_TOKENS")
    if not (settings.site_dir / "index.html").is_file():
        raise SettingsError(f"no site in {settings.site_dir}: run `usage-report site` (or `make demo`) first")
    policy = AccessPolicy(settings.gateway_base_url, list(settings.admin_tokens), cache_seconds=settings.auth_cache_seconds)
    host, port = args.host or settings.serve_host, args.port or settings.serve_port
    server = make_server(settings.site_dir, policy, host=host, port=port, log=_say if args.verbose else None)
    _say(f"Serving {settings.site_dir} to admins on http://{host}:{server.server_address[1]}/ "
         "(sign in with your gateway key as the password); Ctrl-C to stop")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def cmd_emulator(args) -> int:
    """Serve the demo ledger as IG1's billing API until interrupted (for `dagster dev` on the demo)."""
    from usage_jobs.demo.emulator import IG1Emulator

    master_key = load_settings().ig1_master_key
    if not master_key:
        raise SettingsError("IG1_MASTER_KEY must be set: the emulator admits only that key (export the same value for dagster dev)")
    if not args.ledger.is_file():
        raise SettingsError(f"no ledger at {args.ledger}: run `usage-report generate` (or `make demo`) first")
    with IG1Emulator.from_file(args.ledger, master_key.get_secret_value(), port=args.port) as emulator:
        _say(f"IG1 billing emulator on {emulator.url} (set IG1_BASE_URL={emulator.url}); Ctrl-C to stop")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            return 0


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="usage-report", description="IG1 usage reports: gateway logs → DuckDB warehouse → static report site. "
                                   "Settings come from environment variables; see `usage-report check-config` and the README.")
    commands = main.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="materialise a date range (both ends included) and rebuild the site")
    run.add_argument("--start", type=_date, required=True, help="first day, YYYY-MM-DD (report time zone)")
    run.add_argument("--end", type=_date, required=True, help="last day, YYYY-MM-DD (included)")
    run.add_argument("--no-site", action="store_true", help="do not rebuild the site afterwards")
    run.add_argument("--refetch", action="store_true", help="fetch a bucket's or the gateway API's objects again even where already landed")
    run.add_argument("--refetch-billing-month", type=_month, default=None, metavar="YYYY-MM",
                     help="ask IG1 for that whole invoice month again (restated and withdrawn days), and rebuild its reconciliation and chargeback")
    run.set_defaults(handler=cmd_run)

    site = commands.add_parser("site", help="rebuild the report site from the warehouse")
    site.set_defaults(handler=cmd_site)

    export = commands.add_parser("export", help="write the export files (CSV/JSON + manifest) of any range of days, as the site's")
    export.add_argument("--start", type=_date, default=None, help="first day, YYYY-MM-DD (report time zone)")
    export.add_argument("--end", type=_date, default=None, help="last day, YYYY-MM-DD (included)")
    export.add_argument("--period", default=None, metavar="SLUG",
                        help="a period of the site instead (2026-11-20, 2026-W47, 2026-11, 2026-Q4, 2026, last-7-days, last-30-days): "
                             "the same files as its exports/ folder")
    export.add_argument("--type", action="extend", nargs="+", default=None, metavar="NAME",
                        help="only these exports (daily, teams, keys, models, …; default: every export of the site)")
    export.add_argument("--format", choices=("csv", "json"), default=None, help="only CSV or only JSON (default: both)")
    export.add_argument("--out", type=Path, default=None, help="folder to write into (default: exports/<period>/)")
    export.set_defaults(handler=cmd_export)

    digest = commands.add_parser("digest", help="print a day's admin digest and send it (e-mail and/or webhook) unless --dry-run")
    digest.add_argument("--day", type=_date, required=True, help="the report day, YYYY-MM-DD")
    digest.add_argument("--dry-run", action="store_true", help="print it only")
    digest.set_defaults(handler=cmd_digest)

    serve = commands.add_parser("serve", help="serve the site to admins only (gateway role proxy_admin / proxy_admin_viewer, or an admin token)")
    serve.add_argument("--host", default=None, help="listen address (default USAGE_SERVE_HOST, 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port (default USAGE_SERVE_PORT, 8080)")
    serve.add_argument("--verbose", action="store_true", help="print one line per request")
    serve.set_defaults(handler=cmd_serve)

    emulator = commands.add_parser("emulator", help="serve the demo's IG1 billing API on 127.0.0.1 (admits IG1_MASTER_KEY only)")
    emulator.add_argument("--port", type=int, default=8765)
    emulator.add_argument("--ledger", type=Path, default=Path("demo_data/billing/ledger.json"))
    emulator.set_defaults(handler=cmd_emulator)

    check = commands.add_parser("check-config", help="print the effective settings (secrets masked) and validate them")
    check.set_defaults(handler=cmd_check_config)

    for name, handler, text in (("demo", cmd_demo, "generate the demo organisation, materialise every day and build the site"),
                                ("generate", cmd_generate, "only generate a demo organisation's logs and inventory")):
        command = commands.add_parser(name, help=text)
        command.add_argument("--days", type=int, default=None, help="days of traffic (default: from the first of last month to yesterday)")
        command.add_argument("--end", type=_date, default=None, help="last day of traffic (default: yesterday)")
        command.add_argument("--requests-per-day", type=int, default=1500, help="mean requests on a weekday (default 1500)")
        command.add_argument("--seed", type=int, default=7)
        if name == "generate":
            command.add_argument("--out", type=Path, default=Path("demo_data"))
        command.set_defaults(handler=handler)
    return main


def main(argv: list[str] | None = None) -> int:
    from usage_jobs.run_guard import Stopped

    collector.tune()
    if argv is None:  # the program itself (not a test calling main): it exits on return
        atexit.register(collector.freeze_for_exit)
    argv = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(argv)
    args.command_line = " ".join(argv)
    # Single-run backfills (BackfillPolicy) are marked beta by Dagster; the notice is noise here.
    warnings.filterwarnings("ignore", message=".*is currently in beta.*")
    try:
        return args.handler(args)
    except SettingsError as exc:
        print(f"usage-report: configuration error: {exc}", file=sys.stderr)
        return 2
    except CommandError as exc:
        print(f"usage-report: {exc}", file=sys.stderr)
        return 2
    except Stopped as exc:
        print(f"usage-report: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("usage-report: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
