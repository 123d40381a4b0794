"""Settings: SMTP and reminders from CAGETTE_* variables, also when the caller passes the
runtime's plain ServiceSettings."""

from __future__ import annotations

from datetime import timedelta

from cagette_notifications.app import build_service
from cagette_notifications.settings import NotificationSettings
from cagette_runtime.settings import ServiceSettings


def test_defaults_point_at_a_local_mail_catcher() -> None:
    settings = NotificationSettings()
    assert (settings.smtp_host, settings.smtp_port, settings.smtp_starttls) == ("127.0.0.1", 1025, False)
    assert settings.database_url.endswith("/cagette_notifications")
    assert settings.reminder_interval == timedelta(days=7)


def test_environment_and_plain_service_settings(monkeypatch) -> None:
    monkeypatch.setenv("CAGETTE_SMTP_HOST", "smtp.example.org")
    monkeypatch.setenv("CAGETTE_SMTP_PORT", "587")
    monkeypatch.setenv("CAGETTE_SMTP_USERNAME", "cagette")
    monkeypatch.setenv("CAGETTE_SMTP_PASSWORD", "secret")
    monkeypatch.setenv("CAGETTE_SMTP_STARTTLS", "true")
    monkeypatch.setenv("CAGETTE_SMTP_SENDER", "AMAP <amap@example.org>")
    monkeypatch.setenv("CAGETTE_REMINDER_INTERVAL", "P3D")
    url = "postgresql+asyncpg://postgres@127.0.0.1:5432/notif_x"
    service = build_service(ServiceSettings(service_name="notifications", database_url=url))
    settings = service.settings
    assert isinstance(settings, NotificationSettings) and settings.database_url == url
    assert (settings.smtp_host, settings.smtp_port, settings.smtp_username, settings.smtp_password) == (
        "smtp.example.org",
        587,
        "cagette",
        "secret",
    )
    assert settings.smtp_starttls and settings.smtp_sender == "AMAP <amap@example.org>"
    assert settings.reminder_interval == timedelta(days=3)


async def test_asyncapi_document_lists_what_notifications_publishes_and_consumes() -> None:
    import httpx

    app = build_service(
        NotificationSettings(database_url="postgresql+asyncpg://postgres@127.0.0.1:5432/unused")
    ).create_app()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://notifications") as http:
        document = (await http.get("/asyncapi.json")).json()
    operations = document["operations"]
    assert {"publish.notifications.email.sent", "publish.notifications.email.failed"} <= set(operations)
    for key in (
        "payments.payment.declared",
        "orders.order.confirmed",
        "ledger.balance.went_negative",
        "orders.member.updated",
    ):
        assert f"notifications.events.{key}" in operations
