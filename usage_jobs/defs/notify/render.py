"""Messages of the digest and the alerts: a subject, plain text, simple HTML (every name from the
logs or the inventory escaped) and a Slack-compatible `{"text": …}` in mrkdwn.

Links are the site's pages under REPORT_SITE_URL; without it, the messages say where the site is
published instead. No prompt text ever reaches a message: the digest holds counts, names and reasons."""

from __future__ import annotations

import html
from dataclasses import dataclass
from decimal import Decimal

from usage_jobs.defs.notify.digest import Digest, Item, Totals


@dataclass(frozen=True)
class Message:
    subject: str
    text: str
    html: str
    slack: dict  # the webhook's JSON body


@dataclass(frozen=True)
class Links:
    """Where the site is: its public URL (links), else only the folder it is published in."""

    site_url: str | None
    site_dir: str

    def url(self, path: str | None) -> str | None:
        return f"{self.site_url.rstrip('/')}/{path}" if self.site_url and path else None

    @property
    def where(self) -> str:
        return (f"Report: {self.site_url}/" if self.site_url
                else f"Report: published in {self.site_dir} (set REPORT_SITE_URL to get links in these messages)")


@dataclass(frozen=True)
class Line:
    """A line of a section: its text, optionally the name it is about (shown bold) and a link."""

    text: str
    subject: str | None = None
    url: str | None = None


@dataclass(frozen=True)
class Section:
    title: str
    lines: tuple[Line, ...]
    url: str | None = None


def _money(value: Decimal | None, currency: str = "USD") -> str:
    if value is None:
        return "n/a"
    return f"${value:,.2f}" if currency == "USD" else f"{value:,.2f} {currency}"


def _count(value) -> str:
    return f"{value:,.0f}" if value == int(value) else f"{value:,.1f}"  # a median of two days can be a half


def _change(value, usual, shown) -> str:
    """` (+12% vs 1,234)`: the change against the usual, and the usual."""
    if usual is None:
        return ""
    if not usual:
        return f" (usual: {shown(usual)})"
    return f" ({(Decimal(value) - Decimal(usual)) / Decimal(usual) * 100:+.0f}% vs {shown(usual)})"


def _totals_lines(totals: Totals, usual: Totals | None) -> tuple[Line, ...]:
    return (Line(f"requests: {totals.requests:,}{_change(totals.requests, usual and usual.requests, _count)}"),
            Line(f"tokens: {totals.total_tokens:,}{_change(totals.total_tokens, usual and usual.total_tokens, _count)}"),
            Line(f"estimated spend: {_money(totals.spend_usd)}{_change(totals.spend_usd, usual and usual.spend_usd, _money)}"))


def _items(items: tuple[Item, ...], links: Links) -> tuple[Line, ...]:
    return tuple(Line(f"{item.kind}: {item.text}", item.subject, links.url(item.path)) for item in items)


def digest_sections(digest: Digest, links: Links) -> list[Section]:
    weekday = digest.day.strftime("%A")
    usual = (f"against the usual: the median of the last {digest.usual_days} {weekday}s ingested" if digest.usual
             else f"no {weekday} in the previous weeks to compare with")
    sections = [Section(f"{digest.day.isoformat()} ({usual})", _totals_lines(digest.totals, digest.usual) if digest.ingested
                        else (Line("this day is not in the warehouse: its daily run failed or has not run"),), links.url(digest.day_path))]
    sections.append(Section("Needs attention", _items(digest.attention, links) or (Line("nothing: no anomaly, budget or key status to look at"),)))
    start, end = digest.variance_days
    if digest.outliers:
        sections.append(Section(f"Estimated vs billed beyond ±{digest.variance_threshold_pct:g}% (billing days {start} to {end})",
                                _items(digest.outliers, links), links.url(digest.billing_path)))
    if digest.failed_checks:
        sections.append(Section("Checks that did not pass in the day's run",
                                tuple(Line(f"{c.check} ({c.severity}): {c.description}", c.asset) for c in digest.failed_checks),
                                links.url(f"periods/{digest.day.isoformat()}/quality.html")))
    forecast = digest.forecast
    if forecast:
        currency = digest.commit_currency or "USD"
        runs_out = ("the commit is already used up" if forecast.already_exhausted
                    else f"runs out on {forecast.exhausted_on}" if forecast.exhausted_on else "lasts the month")
        sections.append(Section(f"Commit {forecast.month}", (
            Line(f"spent {_money(forecast.spent_total, currency)} of {_money(forecast.commit, currency)} ({forecast.used_share:.0%})"),
            Line(f"projected month end {_money(forecast.projected_month_end, currency)} ({forecast.projected_share:.0%}) at "
                 f"{_money(forecast.run_rate_per_day, currency)} a day; {runs_out}")), links.url(digest.billing_path)))
    return sections


def digest_message(digest: Digest, links: Links) -> Message:
    count = len(digest.attention) + len(digest.outliers) + len(digest.failed_checks) + (0 if digest.ingested else 1)
    subject = (f"IG1 usage {digest.day.isoformat()}: {count} item{'s' if count != 1 else ''} need{'s' if count == 1 else ''} attention"
               if count else f"IG1 usage {digest.day.isoformat()}: nothing needs attention")
    return compose(subject, digest_sections(digest, links), links)


def failure_message(job: str, run_id: str, failed_steps: list[tuple[str, str]], failed_checks: list[str], links: Links,
                    dagster_url: str | None) -> Message:
    """A run failed: its job, run id, the steps that failed and why, a link to the run in the Dagster UI."""
    lines = tuple(Line(message, step) for step, message in failed_steps) + tuple(Line(text) for text in failed_checks)
    run_url = f"{dagster_url.rstrip('/')}/runs/{run_id}" if dagster_url else None
    section = Section(f"Run {run_id} of {job} failed", lines, run_url)
    return compose(f"IG1 usage: {job} failed", [section], links)


def compose(subject: str, sections: list[Section], links: Links) -> Message:
    return Message(subject, _text(sections, links), _html(subject, sections, links), {"text": _slack(subject, sections, links)})


def _text(sections: list[Section], links: Links) -> str:
    out = []
    for section in sections:
        out.append(section.title + (f"\n  {section.url}" if section.url else ""))
        out += [f"  - {f'{line.subject}: ' if line.subject else ''}{line.text}" + (f"\n    {line.url}" if line.url else "") for line in section.lines]
        out.append("")
    return "\n".join(out + [links.where]) + "\n"


def _a(text: str, url: str | None) -> str:
    return f'<a href="{html.escape(url)}">{text}</a>' if url else text


def _html(subject: str, sections: list[Section], links: Links) -> str:
    body = [f"<h2>{html.escape(subject)}</h2>"]
    for section in sections:
        body.append(f"<h3>{_a(html.escape(section.title), section.url)}</h3><ul>")
        body += [f"<li>{_a(f'<b>{html.escape(line.subject)}</b>', line.url) + ': ' if line.subject else ''}{html.escape(line.text)}</li>"
                 for line in section.lines]
        body.append("</ul>")
    where = f'Report: <a href="{html.escape(links.site_url)}/">{html.escape(links.site_url)}</a>' if links.site_url else html.escape(links.where)
    return f"<!DOCTYPE html><html><body>{''.join(body)}<p>{where}</p></body></html>"


def _mrkdwn(text: str) -> str:
    """Slack's three control characters, escaped as its docs ask."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _slack_link(text: str, url: str | None) -> str:
    return f"<{url}|{text}>" if url else text


def _slack(subject: str, sections: list[Section], links: Links) -> str:
    out = [f"*{_mrkdwn(subject)}*"]
    for section in sections:
        out.append(f"*{_slack_link(_mrkdwn(section.title), section.url)}*")
        out += [f"• {_slack_link(f'*{_mrkdwn(line.subject)}*', line.url) + ': ' if line.subject else ''}{_mrkdwn(line.text)}"
                for line in section.lines]
    return "\n".join(out + [_mrkdwn(links.where)])
