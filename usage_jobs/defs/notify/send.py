"""Delivery of a message: e-mail through an SMTP server, and/or a POST to a Slack-compatible webhook.

Each channel configured is tried, whatever became of the others; a channel that fails raises
`NotifyError` naming it (the SMTP host:port, the webhook's host only: its URL embeds a token)
and never the password or the URL."""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from urllib.parse import urlsplit

import httpx

from usage_jobs.defs.notify.render import Message

TIMEOUT_SECONDS = 20.0


class NotifyError(RuntimeError):
    """A message could not be delivered; the text names the channel, never its secret."""


@dataclass(frozen=True)
class Smtp:
    host: str
    port: int
    security: str  # starttls | ssl | none
    username: str | None
    password: str | None
    sender: str
    recipients: tuple[str, ...]

    @property
    def name(self) -> str:
        return f"e-mail via {self.host}:{self.port}"

    def send(self, message: Message) -> None:
        mail = EmailMessage()
        mail["Subject"], mail["From"], mail["To"] = message.subject, self.sender, ", ".join(self.recipients)
        mail.set_content(message.text)
        mail.add_alternative(message.html, subtype="html")
        try:
            connection = (smtplib.SMTP_SSL(self.host, self.port, timeout=TIMEOUT_SECONDS, context=ssl.create_default_context())
                          if self.security == "ssl" else smtplib.SMTP(self.host, self.port, timeout=TIMEOUT_SECONDS))
            with connection as server:
                if self.security == "starttls":
                    server.starttls(context=ssl.create_default_context())
                if self.username:
                    server.login(self.username, self.password or "")
                server.send_message(mail)
        except (OSError, smtplib.SMTPException) as exc:
            detail = str(exc).replace(self.password, "***") if self.password else str(exc)
            raise NotifyError(f"could not send e-mail through the SMTP server {self.host}:{self.port} ({self.security}): "
                              f"{type(exc).__name__}: {detail}") from None


@dataclass(frozen=True)
class Webhook:
    url: str

    @property
    def name(self) -> str:
        parts = urlsplit(self.url)
        return f"webhook {parts.scheme}://{parts.hostname}/…"  # the path is the token

    def send(self, message: Message) -> None:
        try:
            response = httpx.post(self.url, json=message.slack, timeout=TIMEOUT_SECONDS)
        except httpx.HTTPError as exc:
            raise NotifyError(f"could not post to the {self.name}: {type(exc).__name__}") from None
        if response.status_code >= 300:
            raise NotifyError(f"the {self.name} answered HTTP {response.status_code}: {response.text[:200].replace(self.url, '***')}")


def send_all(message: Message, channels: list[Smtp | Webhook]) -> list[str]:
    """Send `message` on every channel; the names of those that took it, or NotifyError naming each that did not."""
    sent, errors = [], []
    for channel in channels:
        try:
            channel.send(message)
            sent.append(channel.name)
        except NotifyError as exc:
            errors.append(str(exc))
    if errors:
        raise NotifyError("; ".join(errors) + (f" (sent by {', '.join(sent)})" if sent else ""))
    return sent
