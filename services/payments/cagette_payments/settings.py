"""The payments service's settings: the runtime's (CAGETTE_*) plus the card provider's.

The provider keys are secrets (SecretStr: never printed in logs, reprs or API answers)."""

from __future__ import annotations

from pydantic import Field, SecretStr

from cagette_runtime.settings import ServiceSettings


class PaymentsSettings(ServiceSettings):
    service_name: str = "payments"
    # The platform's Stripe secret key (sk_test_... / sk_live_... or a restricted rk_...).
    stripe_api_key: SecretStr | None = None
    # The signing secret of the webhook endpoint (whsec_...), and of the Connect endpoint when
    # the connected accounts' events come through a second endpoint.
    stripe_webhook_secret: SecretStr | None = None
    stripe_connect_webhook_secret: SecretStr | None = None
    # Seconds a webhook signature stays valid (replay window).
    stripe_webhook_tolerance: int = 300
    # Largest webhook body read (Stripe's events are a few kilobytes): larger is 413, unread.
    stripe_webhook_max_bytes: int = 256 * 1024
    # Another API address (a local stand-in in tests); default: Stripe's.
    stripe_api_base: str | None = None
    stripe_max_network_retries: int = 2
    stripe_timeout: float = 20.0
    # Where Stripe's hosted checkout page sends the member back (the front end). Placeholders:
    # {group_id}, {order_id}, {payment_id}. Only the webhook confirms a payment, never this page.
    card_success_url: str = (
        "http://127.0.0.1:8005/groups/{group_id}/orders/{order_id}?card_payment={payment_id}&result=success"
    )
    card_cancel_url: str = (
        "http://127.0.0.1:8005/groups/{group_id}/orders/{order_id}?card_payment={payment_id}&result=cancel"
    )
    # Stripe Connect onboarding (Account Links): where Stripe's hosted pages send the coordinator
    # back when done, and where an expired link asks for a new one (the web's payment settings
    # page). Placeholder: {group_id}. New connected accounts are opened in this country.
    card_onboarding_return_url: str = "http://127.0.0.1:8005/groups/{group_id}/settings?onboarding=returned"
    card_onboarding_refresh_url: str = "http://127.0.0.1:8005/groups/{group_id}/settings?onboarding=expired"
    # Web's card settings page of a group ({group_id}): the link in the coordinators' email when
    # card payments stop because of the group's connected account.
    card_settings_url: str = "http://127.0.0.1:8005/groups/{group_id}/settings"
    card_account_country: str = Field(default="FR", pattern=r"^[A-Z]{2}$")
    # Checkout sessions expire after this many minutes unpaid (Stripe: 30 to 1440).
    card_session_minutes: int = 60
    # Background provider jobs (fees): poll interval in seconds.
    card_jobs_interval: float = 2.0

    @property
    def card_enabled(self) -> bool:
        return self.stripe_api_key is not None and bool(self.stripe_api_key.get_secret_value())

    def webhook_secrets(self) -> list[str]:
        return [
            s.get_secret_value()
            for s in (self.stripe_webhook_secret, self.stripe_connect_webhook_secret)
            if s is not None and s.get_secret_value()
        ]
