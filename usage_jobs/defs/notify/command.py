"""`usage-report digest --day D [--dry-run]`: an admin's preview of a day's digest, or a send by hand."""

import datetime as dt
import sys

from usage_jobs.defs.notify.digest import build_digest
from usage_jobs.defs.notify.render import digest_message
from usage_jobs.defs.notify.resources import NOT_CONFIGURED, notify_resource
from usage_jobs.defs.notify.send import NotifyError, send_all
from usage_jobs.settings import Settings
from usage_jobs.warehouse import session


def digest_command(settings: Settings, day: dt.date, dry_run: bool) -> int:
    """Print the digest of `day` (subject and text); without `dry_run`, send it too, even if the daily sensor already did.

    The checks of the day's Dagster run are left out: they are read from the run's records, which only the digest job reads."""
    with session(settings.warehouse, read_only=True, memory_limit=settings.duckdb_memory_limit) as conn:
        digest = build_digest(conn, day, variance_warn_pct=settings.variance_warn_pct, refresh_days=settings.billing_refresh_days,
                              billing_configured=settings.billing_configured)
    notify = notify_resource(settings, secrets_from_env=False)
    message = digest_message(digest, notify.links)
    print(f"Subject: {message.subject}\n\n{message.text}", end="")
    if dry_run:
        return 0
    if not notify.configured:
        print(f"usage-report: {NOT_CONFIGURED}", file=sys.stderr)
        return 1
    try:
        sent = send_all(message, notify.channels())
    except NotifyError as exc:
        print(f"usage-report: {exc}", file=sys.stderr)
        return 1
    print(f"usage-report: sent by {', '.join(sent)}")
    return 0
