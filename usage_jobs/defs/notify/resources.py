"""Where the digest and alerts go, as a Dagster resource built from the settings."""

import dagster as dg

from usage_jobs.defs.notify.render import Links
from usage_jobs.defs.notify.send import Smtp, Webhook
from usage_jobs.settings import Settings

NOT_CONFIGURED = "no digest or alert is sent: neither USAGE_SMTP_HOST (with USAGE_MAIL_TO) nor USAGE_WEBHOOK_URL is set"


class NotifyResource(dg.ConfigurableResource):
    """The SMTP server and recipients, the webhook, and the addresses messages link to."""

    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_security: str = "starttls"
    smtp_username: str | None = None
    smtp_password: str | None = None
    mail_from: str = ""
    mail_to: list[str] = []
    webhook_url: str | None = None
    site_url: str | None = None
    site_dir: str = "site_output"
    dagster_url: str | None = None

    @property
    def configured(self) -> bool:
        return bool(self.smtp_host or self.webhook_url)

    def channels(self) -> list[Smtp | Webhook]:
        channels: list[Smtp | Webhook] = []
        if self.smtp_host:
            channels.append(Smtp(self.smtp_host, self.smtp_port, self.smtp_security, self.smtp_username, self.smtp_password, self.mail_from,
                                 tuple(self.mail_to)))
        if self.webhook_url:
            channels.append(Webhook(self.webhook_url))
        return channels

    @property
    def links(self) -> Links:
        return Links(self.site_url, self.site_dir)


def notify_resource(settings: Settings, secrets_from_env: bool = True) -> NotifyResource:
    """The resource of the settings. With `secrets_from_env` (the definitions), Dagster reads the SMTP
    password and webhook URL from the environment (EnvVar), so they never enter run config or the UI."""

    def secret(value, name: str):
        if value is None:
            return None
        return dg.EnvVar(name) if secrets_from_env else value.get_secret_value()

    return NotifyResource(
        smtp_host=settings.smtp_host, smtp_port=settings.smtp_port, smtp_security=settings.smtp_security, smtp_username=settings.smtp_username,
        smtp_password=secret(settings.smtp_password, "USAGE_SMTP_PASSWORD"), mail_from=settings.mail_from, mail_to=list(settings.mail_to),
        webhook_url=secret(settings.webhook_url, "USAGE_WEBHOOK_URL"), site_url=settings.site_url, site_dir=str(settings.site_dir.resolve()),
        dagster_url=settings.dagster_url,
    )
