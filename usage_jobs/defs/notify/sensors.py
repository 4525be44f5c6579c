"""When the digest and alerts are sent: after the site is published (once per report day), and
when a run of the product fails."""

import dagster as dg

from usage_jobs.cli import last_complete_day, run_outcome
from usage_jobs.defs.notify.jobs import DIGEST_DAY_TAG
from usage_jobs.defs.notify.render import failure_message
from usage_jobs.defs.notify.resources import NOT_CONFIGURED, NotifyResource
from usage_jobs.defs.notify.send import send_all
from usage_jobs.settings import Settings


def digest_sensor(settings: Settings, site_job: dg.JobDefinition, digest_job: dg.JobDefinition) -> dg.SensorDefinition:
    """After each successful site run, the digest of the last complete day.

    Its run key is the day's: Dagster launches one run per run key and sensor, so a site rebuilt
    again the same day (a backfill, `usage-report site`) sends no second digest."""

    @dg.run_status_sensor(run_status=dg.DagsterRunStatus.SUCCESS, monitored_jobs=[site_job], request_job=digest_job, name="digest_after_site_run",
                          default_status=dg.DefaultSensorStatus.RUNNING,
                          description="Once per report day, after the site is published: the admins' digest of the last complete day.")
    def digest_after_site_run(context: dg.RunStatusSensorContext, notify: NotifyResource):
        if not notify.configured:
            return dg.SkipReason(NOT_CONFIGURED)
        day = last_complete_day(settings).isoformat()
        return dg.RunRequest(run_key=f"digest-{day}", run_config={"ops": {"send_digest": {"config": {"day": day}}}},
                             tags={DIGEST_DAY_TAG: day})

    return digest_after_site_run


def failure_sensor(monitored_jobs: list[dg.JobDefinition]) -> dg.SensorDefinition:
    """An alert for each failed run of the product's jobs: job, run id, the failed steps and why, a link to the run."""

    @dg.run_failure_sensor(monitored_jobs=monitored_jobs, name="alert_on_run_failure", default_status=dg.DefaultSensorStatus.RUNNING,
                           description="Alert the admins (e-mail and/or webhook) when a run of the product's jobs fails.")
    def alert_on_run_failure(context: dg.RunFailureSensorContext, notify: NotifyResource):
        if not notify.configured:
            return dg.SkipReason(NOT_CONFIGURED)
        run = context.dagster_run
        outcome = run_outcome(context.instance, run.run_id)
        checks = outcome.check_lines()
        steps = outcome.failed_steps or ([] if checks else [("run", context.failure_event.message or "failed")])
        message = failure_message(run.job_name, run.run_id, steps, checks, notify.links, notify.dagster_url)
        # A channel that fails raises NotifyError: the sensor's tick shows it, naming the channel.
        context.log.info(f"alerted about run {run.run_id} by {', '.join(send_all(message, notify.channels()))}")
        return None

    return alert_on_run_failure
