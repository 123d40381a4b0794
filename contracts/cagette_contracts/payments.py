"""Events the payments service publishes (routing keys `payments.*`).

Amounts are positive: the direction is in the event type (received credits the member, refunded
debits the member back)."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal
from uuid import UUID

from pydantic import Field, model_validator

from . import routing
from .common import PaymentMethod
from .envelope import Event
from .money import Money, MoneyError, PositiveMoney


class _PaymentEvent(Event):
    payment_id: UUID
    member_id: UUID
    amount: PositiveMoney
    order_id: UUID | None = None
    amendment_id: UUID | None = None
    subscription_id: UUID | None = None
    distribution_id: UUID | None = None

    @model_validator(mode="after")
    def _positive_amount(self) -> _PaymentEvent:
        if self.amount.amount <= 0:
            raise MoneyError(f"{self.routing_key()} needs a positive amount, got {self.amount}")
        return self


class PaymentDeclared(_PaymentEvent):
    """A cheque, transfer, cash or on-the-spot payment is expected: pending, not in the balance (R16)."""

    event_type: Literal["payments.payment.declared"] = routing.PAYMENT_DECLARED
    schema_version: Literal[1] = 1
    method: PaymentMethod
    reference: str | None = Field(
        default=None, description="ISO 11649 RF creditor reference, printed in groups of four"
    )


class PaymentReceived(_PaymentEvent):
    """Money arrived: credits the member. `amount` may differ from what was declared (corrected at
    validation), and `method` is the actual one (e.g. cash for an on-the-spot payment)."""

    event_type: Literal["payments.payment.received"] = routing.PAYMENT_RECEIVED
    schema_version: Literal[1] = 1
    method: PaymentMethod
    declared_amount: Money | None = Field(default=None, description="Set when it confirms a declared payment")
    reference: str | None = None
    label: str | None = Field(default=None, description="e.g. the cheque number")
    recorded_by: UUID | None = None
    card_terminal: bool = Field(default=False, description="method card, paid on a card terminal at the distribution")


class PaymentCancelled(_PaymentEvent):
    """A declared payment will not come: its pending entry is voided."""

    event_type: Literal["payments.payment.cancelled"] = routing.PAYMENT_CANCELLED
    schema_version: Literal[1] = 1
    method: PaymentMethod
    reason: str = ""
    recorded_by: UUID | None = None


class PaymentRefunded(_PaymentEvent):
    """Money given back to the member (card refund or overpayment returned): debits the member."""

    event_type: Literal["payments.payment.refunded"] = routing.PAYMENT_REFUNDED
    schema_version: Literal[1] = 1
    refund_id: UUID
    method: PaymentMethod
    reason: str = ""
    recorded_by: UUID | None = None
    card_terminal: bool = Field(default=False, description="method card, given back on a card terminal")
    reverses_payment_id: UUID | None = Field(
        default=None, description="Set when this corrects a received payment recorded by mistake (a reversal)"
    )


class PaymentReversed(_PaymentEvent):
    """A received payment was recorded by mistake (on the wrong member, twice, a wrong amount)
    and a coordinator reversed it: a correction, not a refund. No money moved back: the
    ledger posts a reversal of the payment's own transaction (kind reversal), the member is
    sent no refund email. `payment_id` is the reversed payment; `reversal_id` the reversing
    entry payments recorded (once per payment)."""

    event_type: Literal["payments.payment.reversed"] = routing.PAYMENT_REVERSED
    schema_version: Literal[1] = 1
    reversal_id: UUID
    method: PaymentMethod
    card_terminal: bool = Field(default=False, description="method card, paid on a card terminal")
    reason: str = Field(min_length=1)
    recorded_by: UUID


class CardPaymentSucceeded(_PaymentEvent):
    event_type: Literal["payments.card_payment.succeeded"] = routing.CARD_PAYMENT_SUCCEEDED
    schema_version: Literal[1] = 1
    provider_payment_id: str


class CardPaymentFailed(_PaymentEvent):
    event_type: Literal["payments.card_payment.failed"] = routing.CARD_PAYMENT_FAILED
    schema_version: Literal[1] = 1
    provider_payment_id: str | None = None
    reason: str = ""
    retry_url: str | None = None


class CardFeeCharged(_PaymentEvent):
    """The card provider's fee for a payment: the group's fee account bears it."""

    event_type: Literal["payments.card_fee.charged"] = routing.CARD_FEE_CHARGED
    schema_version: Literal[1] = 1
    provider_payment_id: str


class CardPaymentDisputed(_PaymentEvent):
    """The card holder disputed a card payment (a chargeback): recorded and flagged to the group's
    coordinators. No money moves yet: `amount` is what is disputed; the provider's decision
    (won or lost) comes later."""

    event_type: Literal["payments.card_payment.disputed"] = routing.CARD_PAYMENT_DISPUTED
    schema_version: Literal[1] = 1
    provider_payment_id: str
    dispute_id: str = Field(description="The provider's dispute id")
    reason: str = Field(default="", description="The provider's dispute reason, e.g. fraudulent")
    status: str = Field(default="", description="The provider's dispute status, e.g. needs_response")


class CardDisputeUpdated(_PaymentEvent):
    """A dispute on a card payment changed (status, evidence asked, closed): for the group's
    coordinators. `amount` is what is disputed. Money moves only with the funds events."""

    event_type: Literal["payments.card_dispute.updated"] = routing.CARD_DISPUTE_UPDATED
    schema_version: Literal[1] = 1
    provider_payment_id: str
    dispute_id: str = Field(description="The provider's dispute id")
    status: str = Field(description="needs_response, under_review, won, lost, warning_closed, ...")
    reason: str = Field(default="", description="The provider's dispute reason, e.g. fraudulent")
    closed: bool = Field(default=False, description="The dispute is over (won, lost or warning_closed)")


class CardDisputeFundsWithdrawn(_PaymentEvent):
    """The provider took a disputed payment's `amount` back (to the card holder) and charged its
    dispute `fee`, out of the group's card clearing account. The member's payment no longer
    stands: the member is debited `amount` (owes it again); the group's card-fee account bears
    the fee. Once per provider balance transaction."""

    event_type: Literal["payments.card_dispute.funds_withdrawn"] = routing.CARD_DISPUTE_FUNDS_WITHDRAWN
    schema_version: Literal[1] = 1
    provider_payment_id: str
    dispute_id: str
    transaction_id: str = Field(description="The provider's balance transaction: the posting's key")
    fee: Money = Field(description="The dispute fee (may be zero)")


class CardDisputeFundsReinstated(_PaymentEvent):
    """The dispute was won: the provider gave `amount` back to the group's card clearing
    account (and `fee_returned` of the fee, often zero). The member's payment stands again: the
    member is credited `amount`. Once per provider balance transaction."""

    event_type: Literal["payments.card_dispute.funds_reinstated"] = routing.CARD_DISPUTE_FUNDS_REINSTATED
    schema_version: Literal[1] = 1
    provider_payment_id: str
    dispute_id: str
    transaction_id: str = Field(description="The provider's balance transaction: the posting's key")
    fee_returned: Money = Field(description="The part of the dispute fee given back (may be zero)")


class BasketValidated(Event):
    """A coordinator validated one member's basket for one distribution (R20): orders locks it."""

    event_type: Literal["payments.basket.validated"] = routing.BASKET_VALIDATED
    schema_version: Literal[1] = 1
    distribution_id: UUID
    member_id: UUID
    validated_by: UUID


class BasketUnvalidated(Event):
    """A platform administrator undid a basket validation: orders unlocks it."""

    event_type: Literal["payments.basket.unvalidated"] = routing.BASKET_UNVALIDATED
    schema_version: Literal[1] = 1
    distribution_id: UUID
    member_id: UUID
    unvalidated_by: UUID


class CardAccountProblem(StrEnum):
    """Why the group's connected card provider account cannot take card payments."""

    DEAUTHORIZED = "deauthorized"  # the account's holder revoked the platform's access to it
    NOT_CHECKED = "not_checked"  # the provider has not told us the account's state yet
    CHARGES_DISABLED = "charges_disabled"  # onboarding unfinished, or the provider restricted it
    CARD_PAYMENTS_INACTIVE = "card_payments_inactive"  # its card_payments capability is not active


class CardAccountChange(StrEnum):
    """What an announcement tells the coordinators about the group's connected account."""

    BECAME_UNUSABLE = "became_unusable"  # card payments were possible and stopped because of the account
    BECAME_USABLE = "became_usable"  # the account can take card payments (again)


class CardSettingsChanged(Event):
    """A group's card readiness was set or changed on the payments service (full state, not a
    diff). The orders service offers card payment only while `card_payments_ready` is true.

    Never carries a secret: not the platform's keys, not the connected account's id."""

    event_type: Literal["payments.card_settings.changed"] = routing.CARD_SETTINGS_CHANGED
    schema_version: Literal[1] = 1
    card_payments_ready: bool = Field(
        description="Card payments can work for this group now: the platform's provider keys (API key and webhook "
        "secret) are configured and the group's card settings are enabled"
    )
    enabled: bool = Field(description="The group's card settings are enabled (a coordinator's choice)")
    provider_configured: bool = Field(description="The platform's provider keys are configured (never shown)")
    uses_connected_account: bool = Field(
        default=False, description="Payments go to the group's own connected account (false: the platform's account)"
    )
    account_problem: CardAccountProblem | None = Field(
        default=None,
        description="Why the group's connected account cannot take card payments now (null: it can, or the "
        "platform's account is used)",
    )
    account_change: CardAccountChange | None = Field(
        default=None,
        description="Set only when this announcement is the change the coordinators are told about: card payments "
        "stopped because of the connected account (became_unusable), or it can take them again (became_usable). "
        "Null for any other change (a coordinator's setting, the platform's keys) and for a new problem while the "
        "account was already unusable",
    )
    settings_url: str | None = Field(
        default=None,
        description="Where a coordinator opens the group's card settings and continues the provider's onboarding "
        "(set with a connected account)",
    )


__all__ = [
    "BasketUnvalidated",
    "BasketValidated",
    "CardAccountChange",
    "CardAccountProblem",
    "CardDisputeFundsReinstated",
    "CardDisputeFundsWithdrawn",
    "CardDisputeUpdated",
    "CardFeeCharged",
    "CardPaymentDisputed",
    "CardPaymentFailed",
    "CardPaymentSucceeded",
    "CardSettingsChanged",
    "PaymentCancelled",
    "PaymentDeclared",
    "PaymentReceived",
    "PaymentRefunded",
    "PaymentReversed",
]
