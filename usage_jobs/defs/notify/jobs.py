"""The digest job: one op that reads the warehouse and sends the day's digest."""

import datetime as dt
from pathlib import Path

import dagster as dg

from usage_jobs.cli import run_outcome
from usage_jobs.defs.billing.resources import BillingResource
from usage_jobs.defs.notify.digest import Digest, FailedCheck, build_digest
from usage_jobs.defs.notify.render import digest_message
from usage_jobs.defs.notify.resources import NOT_CONFIGURED, NotifyResource
from usage_jobs.defs.notify.send import NotifyError, send_all
from usage_jobs.defs.resources import WAREHOUSE_POOL, WarehouseResource
from usage_jobs.warehouse import session

DIGEST_JOB = "digest_job"
DIGEST_DAY_TAG = "usage_report/digest_day"
SENT_TAG = "usage_report/digest_sent"  # set on a digest run once its message is sent


class DigestConfig(dg.Config):
    day: str  # the report day, YYYY-MM-DD
    resend: bool = False  # send even when a run has already sent that day's digest


def sent_by(instance: dg.DagsterInstance, day: str) -> str | None:
    """The run that already sent `day`'s digest, if any."""
    runs = instance.get_runs(filters=dg.RunsFilter(job_name=DIGEST_JOB, tags={DIGEST_DAY_TAG: day, SENT_TAG: "true"}), limit=1)
    return runs[0].run_id if runs else None


def day_run_checks(instance: dg.DagsterInstance, daily_job: str, day: dt.date) -> tuple[FailedCheck, ...]:
    """The checks that did not pass in the latest run of `daily_job` for `day`'s partition."""
    runs = instance.get_runs(filters=dg.RunsFilter(job_name=daily_job, tags={"dagster/partition": day.isoformat()}), limit=1)
    if not runs:
        return ()
    return tuple(FailedCheck(check.asset_key.to_user_string(), check.check_name, check.severity.value, check.description or "")
                 for check in run_outcome(instance, runs[0].run_id).checks if not check.passed)


def read_digest(warehouse: WarehouseResource, billing: BillingResource, day: dt.date, failed_checks: tuple[FailedCheck, ...] = ()) -> Digest:
    # Read-only: the digest never writes, and the pool keeps writers out meanwhile.
    with session(Path(warehouse.path), read_only=True, memory_limit=warehouse.memory_limit) as conn:
        return build_digest(conn, day, variance_warn_pct=billing.variance_warn_pct, refresh_days=billing.refresh_days,
                            billing_configured=billing.configured, failed_checks=failed_checks)


def digest_job(daily_job: str) -> dg.JobDefinition:
    """The job sending the digest of a report day (run config `ops.send_digest.config.day`)."""

    @dg.op(pool=WAREHOUSE_POOL)
    def send_digest(context: dg.OpExecutionContext, config: DigestConfig, warehouse: WarehouseResource, billing: BillingResource,
                    notify: NotifyResource) -> dg.Output[None]:
        """Send the digest of `day` (e-mail and/or webhook): the day against the usual, what needs attention,
        variance outliers, the commit forecast and the checks the day's run did not pass."""
        if not notify.configured:
            context.log.info(NOT_CONFIGURED)
            return dg.Output(None, metadata={"sent": "nothing: " + NOT_CONFIGURED})
        # Dagster launches one run per run key; this also holds for a run launched by hand or a sensor whose history was reset.
        if (earlier := sent_by(context.instance, config.day)) and not config.resend:
            context.log.info(f"the digest of {config.day} was already sent by run {earlier}; not sending it again (config resend: true does)")
            return dg.Output(None, metadata={"sent": f"nothing: already sent by run {earlier}"})
        day = dt.date.fromisoformat(config.day)
        digest = read_digest(warehouse, billing, day, day_run_checks(context.instance, daily_job, day))
        message = digest_message(digest, notify.links)
        try:
            sent = send_all(message, notify.channels())
        except NotifyError as exc:
            raise dg.Failure(description=str(exc), allow_retries=False) from None
        context.instance.add_run_tags(context.run_id, {DIGEST_DAY_TAG: config.day, SENT_TAG: "true"})
        return dg.Output(None, metadata={"day": day.isoformat(), "subject": message.subject, "sent": ", ".join(sent),
                                         "attention items": len(digest.attention), "variance outliers": len(digest.outliers)})

    @dg.job(name=DIGEST_JOB, executor_def=dg.in_process_executor, tags={"usage_report/kind": "digest"},
            description="E-mail and/or post the admins' digest of a report day; requested once per day after the site is published.")
    def job():
        send_digest()

    return job
