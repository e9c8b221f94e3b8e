"""Notifications: a small interface the platform sends alerts through (logged by default, or a webhook).

A notifier is anything with ``send(notification) -> None`` (:class:`Notifier`). The platform builds one
with :func:`notifier_from_settings`: a :class:`WebhookNotifier` when ``FRAUD_NOTIFY_WEBHOOK_URL`` is set
(JSON ``{subject, body, severity, details}`` POSTed to it), else a :class:`LogNotifier`.

Plugging in email or Slack means writing a class with a ``send`` method, for example::

    class EmailNotifier:
        def __init__(self, host: str, sender: str, recipients: list[str]) -> None:
            self.host, self.sender, self.recipients = host, sender, recipients

        def send(self, notification: Notification) -> None:
            import smtplib
            from email.message import EmailMessage

            message = EmailMessage()
            message["Subject"] = f"[{notification.severity}] {notification.subject}"
            message["From"], message["To"] = self.sender, ", ".join(self.recipients)
            message.set_content(notification.body)
            with smtplib.SMTP(self.host) as smtp:
                smtp.send_message(message)

A Slack incoming webhook expects ``{"text": ...}``: subclass :class:`WebhookNotifier` and override
:meth:`WebhookNotifier.payload` (e.g. ``{"text": f"*{n.subject}*\\n{n.body}"}``). A failed delivery should
raise (:class:`NotificationError`); callers decide whether it fails their task.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from training_lib.config import Settings

log = logging.getLogger(__name__)

SEVERITIES = ("info", "warning", "critical")
_LOG_LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "critical": logging.ERROR}


class NotificationError(RuntimeError):
    """A notification could not be delivered; the message names the destination and the cause."""


@dataclass(frozen=True)
class Notification:
    """One message: a one-line subject, a human-readable body, a severity and JSON-able details."""

    subject: str
    body: str
    severity: str = "info"
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {SEVERITIES}, got {self.severity!r}")

    def to_dict(self) -> dict[str, Any]:
        """The JSON payload: subject, body, severity, details."""
        return {"subject": self.subject, "body": self.body, "severity": self.severity, "details": dict(self.details)}


@runtime_checkable
class Notifier(Protocol):
    """Anything that delivers a :class:`Notification` (raising :class:`NotificationError` on failure)."""

    def send(self, notification: Notification) -> None: ...


class LogNotifier:
    """Logs notifications: info at INFO, warning at WARNING, critical at ERROR (logger ``training_lib.notify``)."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger or log

    def send(self, notification: Notification) -> None:
        self.logger.log(
            _LOG_LEVELS[notification.severity],
            "[%s] %s: %s | details=%s",
            notification.severity,
            notification.subject,
            notification.body,
            json.dumps(notification.details, default=str, sort_keys=True),
        )


def _display_url(url: str) -> str:
    """The URL for messages: scheme, host and first path segment; credentials, query and the rest hidden.

    Webhook URLs often carry a secret in their path (Slack: ``/services/T…/B…/<secret>``).
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    segments = [s for s in parts.path.split("/") if s]
    path = f"/{segments[0]}" if segments else ""
    if len(segments) > 1 or parts.query:
        path += "/***"
    return f"{parts.scheme}://{host}{path}"


class WebhookNotifier:
    """POSTs each notification as JSON to ``url``; a non-2xx answer or a network error raises NotificationError."""

    def __init__(self, url: str, timeout: float = 10) -> None:
        parts = urlsplit(url)
        if parts.scheme not in {"http", "https"} or not parts.netloc:
            raise ValueError(f"webhook URL must be http(s), got {_display_url(url)!r}")
        self.url = url
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"WebhookNotifier({_display_url(self.url)})"

    def payload(self, notification: Notification) -> dict[str, Any]:
        """The JSON body sent; override for services that expect another shape (e.g. Slack's ``text``)."""
        return notification.to_dict()

    def send(self, notification: Notification) -> None:
        where = _display_url(self.url)
        data = json.dumps(self.payload(notification), default=str).encode()
        request = urllib.request.Request(  # noqa: S310 - scheme checked in __init__
            self.url,
            data=data,
            method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "fraud-platform-notifier"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                status = response.status
        except urllib.error.HTTPError as exc:
            detail = exc.read(300).decode("utf-8", "replace").strip()
            raise NotificationError(
                f"webhook {where} answered HTTP {exc.code} {exc.reason}" + (f": {detail}" if detail else "")
            ) from exc
        except (urllib.error.URLError, OSError) as exc:  # refused, DNS, timeout
            reason = getattr(exc, "reason", exc)
            raise NotificationError(f"webhook {where} unreachable: {reason}") from exc
        if not 200 <= status < 300:
            raise NotificationError(f"webhook {where} answered HTTP {status}")
        log.info("notification %r sent to %s", notification.subject, where)


def notifier_from_settings(settings: Settings) -> Notifier:
    """A :class:`WebhookNotifier` when ``settings.notify_webhook_url`` is set, else a :class:`LogNotifier`."""
    if settings.notify_webhook_url:
        return WebhookNotifier(settings.notify_webhook_url)
    return LogNotifier()


def alert_rate_check(summary: dict[str, Any], settings: Settings) -> Notification | None:
    """A warning when a scored day alerted more than ``alert_rate_factor`` x ``alert_budget`` of its rows.

    ``summary`` is a scoring summary with ``alert_rate``, ``rows``, ``day`` and ``model_version``.
    """
    rate = summary.get("alert_rate")
    if rate is None:
        return None
    limit = settings.alert_rate_factor * settings.alert_budget
    if not float(rate) > limit:
        return None
    day, version, rows = summary.get("day"), summary.get("model_version"), summary.get("rows")
    return Notification(
        subject=f"Alert rate {float(rate):.2%} on {day} exceeds {settings.alert_rate_factor:g}x the alert budget",
        body=(
            f"Model version {version} flagged {float(rate):.2%} of {rows} scored transactions on {day}; "
            f"the alert budget is {settings.alert_budget:.2%} and the notification limit {limit:.2%}. "
            "Check the drift report of the day and the scoring threshold before the fraud team is flooded."
        ),
        severity="warning",
        details={
            "check": "alert_rate",
            "day": None if day is None else str(day),
            "alert_rate": float(rate),
            "limit": limit,
            "alert_budget": settings.alert_budget,
            "alert_rate_factor": settings.alert_rate_factor,
            "rows": rows,
            "model_version": version,
        },
    )
