"""Notifiers: logging, a webhook against a real local HTTP server, the alert-rate check, the settings switch."""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from training_lib.config import load_settings
from training_lib.notify import (
    LogNotifier,
    Notification,
    NotificationError,
    Notifier,
    WebhookNotifier,
    alert_rate_check,
    notifier_from_settings,
)


@dataclass
class Webhook:
    """A local HTTP endpoint: what it received and the status it answers with."""

    url: str
    status: int = 200
    received: list[dict] = field(default_factory=list)


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            hook.received.append(
                {
                    "path": self.path,
                    "content_type": self.headers.get("Content-Type"),
                    "body": json.loads(self.rfile.read(length)),
                }
            )
            payload = b"ok" if hook.status < 400 else b"internal trouble"
            self.send_response(hook.status)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:  # keep test output quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    hook.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/fraud"
    try:
        yield hook
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


NOTE = Notification(
    subject="Alert rate high", body="too many alerts", severity="warning", details={"day": "2024-03-01", "rows": 10}
)


def test_notification_validates_severity() -> None:
    assert Notification("s", "b").severity == "info"
    with pytest.raises(ValueError, match="severity"):
        Notification("s", "b", severity="panic")


@pytest.mark.parametrize(("severity", "level"), [("info", "INFO"), ("warning", "WARNING"), ("critical", "ERROR")])
def test_log_notifier_logs_by_severity(caplog: pytest.LogCaptureFixture, severity: str, level: str) -> None:
    caplog.set_level(logging.INFO, logger="training_lib.notify")
    LogNotifier().send(Notification("Subject line", "the body", severity, {"rows": 3}))
    [record] = [r for r in caplog.records if r.name == "training_lib.notify"]
    assert record.levelname == level
    assert "Subject line" in record.getMessage() and "the body" in record.getMessage()
    assert '"rows": 3' in record.getMessage()


def test_webhook_posts_the_notification_as_json(webhook: Webhook) -> None:
    notifier = WebhookNotifier(webhook.url, timeout=5)
    notifier.send(Notification("s", "b", "critical", {"day": date(2024, 3, 1), "rate": 0.5}))
    [request] = webhook.received
    assert request["path"] == "/hooks/fraud"
    assert request["content_type"] == "application/json"
    assert request["body"] == {
        "subject": "s",
        "body": "b",
        "severity": "critical",
        "details": {"day": "2024-03-01", "rate": 0.5},
    }


def test_webhook_error_answer_raises_naming_url_and_status(webhook: Webhook) -> None:
    webhook.status = 500
    host = webhook.url.split("/hooks")[0]
    with pytest.raises(NotificationError, match=r"500") as error:
        WebhookNotifier(webhook.url).send(NOTE)
    assert host in str(error.value) and "internal trouble" in str(error.value)
    assert len(webhook.received) == 1


def test_webhook_unreachable_raises_and_hides_path_secrets() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/services/T000/B000/s3cr3t"
    with pytest.raises(NotificationError, match="unreachable") as error:
        WebhookNotifier(url, timeout=2).send(NOTE)
    assert "127.0.0.1" in str(error.value) and "s3cr3t" not in str(error.value)
    assert "s3cr3t" not in repr(WebhookNotifier(url))


def test_webhook_rejects_non_http_urls() -> None:
    with pytest.raises(ValueError, match="http"):
        WebhookNotifier("file:///etc/passwd")


def test_notifier_from_settings_picks_the_class(webhook: Webhook) -> None:
    logged = notifier_from_settings(load_settings({}))
    assert isinstance(logged, LogNotifier) and isinstance(logged, Notifier)
    hooked = notifier_from_settings(load_settings({"FRAUD_NOTIFY_WEBHOOK_URL": webhook.url}))
    assert isinstance(hooked, WebhookNotifier) and hooked.url == webhook.url
    hooked.send(NOTE)
    assert webhook.received[0]["body"]["subject"] == NOTE.subject


def test_alert_rate_check_both_ways() -> None:
    settings = load_settings({"FRAUD_ALERT_BUDGET": "0.01", "FRAUD_ALERT_RATE_FACTOR": "3"})
    summary = {"day": "2024-03-01", "rows": 1000, "model_version": "4"}
    assert alert_rate_check({**summary, "alert_rate": 0.02}, settings) is None
    assert alert_rate_check({**summary, "alert_rate": 0.03}, settings) is None  # at the limit: not above
    note = alert_rate_check({**summary, "alert_rate": 0.05}, settings)
    assert note is not None and note.severity == "warning"
    assert "2024-03-01" in note.subject and "5.00%" in note.subject
    assert note.details["alert_rate"] == 0.05 and note.details["limit"] == pytest.approx(0.03)
    assert note.details["model_version"] == "4" and note.details["rows"] == 1000
    json.dumps(note.to_dict())  # serialisable for the webhook
