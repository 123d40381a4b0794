"""Online card payments (SPEC R14, R21, B3, B6): the card payment's state machine and the money
arithmetic of provider notifications. Pure: no I/O, no provider library.

    initiated --succeeded--> succeeded
    initiated --failed-----> failed      (a declined attempt; the member may try again)
    initiated --expired----> expired     (the checkout session ended unpaid)
    failed ----succeeded---> succeeded   (a later attempt in the same checkout session worked)
    failed ----expired-----> expired
    expired ---succeeded---> succeeded   (never expected; the money was taken, so it counts)

Once paid (SPEC B3), the payment's state follows the money and its dispute:

    succeeded ---refund--------> partially_refunded ---refund---> refunded
    succeeded | partially_refunded ---refund failed---> the state of what remains refunded
    any paid state ---dispute opened---> disputed
    disputed ---won / warning_closed---> the state of what is refunded (succeeded, partially_refunded)
    disputed ---lost---> disputed (final: the money went back to the card holder)

A paid payment never goes back to initiated/failed/expired (a failure after a success changes
nothing). A notification that implies the payment succeeded (a refund or a dispute arriving
before the success notification) applies the success first. Every transition is recorded.

Provider notifications may come twice and in any order, so refunds are derived from the
provider's *cumulative* refunded amount: what is new is that total minus what was already
recorded, never less than zero, never more than what was paid.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from cagette_contracts import CardAccountChange, CardAccountProblem, Money
from cagette_contracts.money import MoneyError


class CardState(StrEnum):
    INITIATED = "initiated"
    FAILED = "failed"
    EXPIRED = "expired"
    SUCCEEDED = "succeeded"
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"
    DISPUTED = "disputed"


# The money was taken: the payment counts (received), whatever happened after.
PAID_STATES = frozenset({CardState.SUCCEEDED, CardState.PARTIALLY_REFUNDED, CardState.REFUNDED, CardState.DISPUTED})
# Only these may be refunded on a coordinator's request (a disputed payment is the card
# network's to settle; a refunded one has nothing left).
REFUNDABLE_STATES = frozenset({CardState.SUCCEEDED, CardState.PARTIALLY_REFUNDED})


class Outcome(StrEnum):
    """What a provider notification says happened to a payment attempt."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    EXPIRED = "expired"


# A payment in one of these may still be paid by the member in the same checkout session.
OPEN_STATES = frozenset({CardState.INITIATED, CardState.FAILED})

_MOVES: dict[CardState, dict[Outcome, CardState]] = {
    CardState.INITIATED: {
        Outcome.SUCCEEDED: CardState.SUCCEEDED,
        Outcome.FAILED: CardState.FAILED,
        Outcome.EXPIRED: CardState.EXPIRED,
    },
    CardState.FAILED: {Outcome.SUCCEEDED: CardState.SUCCEEDED, Outcome.EXPIRED: CardState.EXPIRED},
    CardState.EXPIRED: {Outcome.SUCCEEDED: CardState.SUCCEEDED},
    **{state: {} for state in PAID_STATES},
}


def advance(state: CardState, outcome: Outcome) -> CardState | None:
    """The new state after `outcome`, or None when the notification changes nothing (a duplicate,
    or news older than what is known, e.g. a failure after the success)."""
    return _MOVES[state].get(outcome)


def implies_success(state: CardState) -> bool:
    """A refund or a dispute exists only for money taken: when it arrives before the success
    notification, the success is applied first."""
    return state not in PAID_STATES


def refund_state(paid: Money, refunded: Money) -> CardState:
    """The state of a paid payment (not disputed) from what is refunded of it."""
    if refunded.is_zero:
        return CardState.SUCCEEDED
    return CardState.REFUNDED if refunded.amount >= paid.amount else CardState.PARTIALLY_REFUNDED


def after_refund_change(state: CardState, paid: Money, refunded: Money) -> CardState:
    """A refund recorded or failed: a disputed payment stays disputed, another follows the money."""
    return state if state is CardState.DISPUTED else refund_state(paid, refunded)


class DisputeOutcome(StrEnum):
    OPEN = "open"
    WON = "won"
    LOST = "lost"
    WARNING_CLOSED = "warning_closed"


def dispute_outcome(status: str) -> DisputeOutcome:
    """Stripe's dispute status in our terms: only won, lost and warning_closed end it."""
    try:
        return DisputeOutcome(status)
    except ValueError:
        return DisputeOutcome.OPEN


def after_dispute(state: CardState, status: str, paid: Money, refunded: Money) -> CardState:
    """The state once a dispute has this status: disputed while open or lost; won or closed as a
    warning, back to what the refunds make it."""
    if dispute_outcome(status) in (DisputeOutcome.OPEN, DisputeOutcome.LOST):
        return CardState.DISPUTED
    return refund_state(paid, refunded) if state is CardState.DISPUTED else state


class AmountMismatch(ValueError):
    """The provider reports another amount or currency than the one we asked for."""


def check_paid_amount(expected: Money, provider_amount: int | None, provider_currency: str | None) -> None:
    """The provider's amount must be exactly ours: a card payment is confirmed for the order's
    amount, never for whatever arrived (B6: no amount heuristics)."""
    if provider_amount is None or provider_currency is None:
        return  # the notification does not carry it (e.g. a charge event): ours stands
    if provider_currency.upper() != expected.currency or provider_amount != expected.amount:
        raise AmountMismatch(
            f"the provider reports {provider_amount} {provider_currency.upper()} "
            f"for a payment of {expected.amount} {expected.currency}"
        )


class RefundOverflow(MoneyError):
    """The provider reports more refunded than was paid."""


@dataclass(frozen=True)
class RefundDelta:
    new: Money  # to record now (zero: nothing new)
    cumulative: Money  # what will have been recorded in all


def refund_delta(paid: Money, provider_refunded_total: int, already_recorded: Money) -> RefundDelta:
    """The newly refunded amount from the provider's cumulative `amount_refunded`.

    Duplicates and out-of-order notifications report a total at most what we already recorded:
    nothing new. The total can never exceed what was paid."""
    if already_recorded.currency != paid.currency:
        raise MoneyError("refunds are recorded in the payment's currency")
    if (
        isinstance(provider_refunded_total, bool)
        or not isinstance(provider_refunded_total, int)
        or provider_refunded_total < 0
    ):
        raise RefundOverflow(f"not a refunded amount: {provider_refunded_total!r}")
    if provider_refunded_total > paid.amount:
        raise RefundOverflow(f"the provider reports {provider_refunded_total} refunded on a payment of {paid.amount}")
    new = max(0, provider_refunded_total - already_recorded.amount)
    return RefundDelta(
        Money(amount=new, currency=paid.currency), already_recorded + Money(amount=new, currency=paid.currency)
    )


class RefundRefused(ValueError):
    """A refund request that is wrong (amount, currency)."""


class NotRefundable(RefundRefused):
    """The payment cannot be refunded in its state."""


def check_refund_request(state: CardState, paid: Money, refunded: Money, requested: Money) -> None:
    """A coordinator's refund request: only a succeeded payment, a positive amount in its
    currency, at most what remains (the provider refuses more anyway; we say it first)."""
    if state not in REFUNDABLE_STATES:
        raise NotRefundable(
            f"only a succeeded or partially refunded card payment can be refunded (this one is {state})"
        )
    if requested.currency != paid.currency:
        raise RefundRefused(f"the refund must be in {paid.currency}, the payment's currency")
    if requested.amount <= 0:
        raise RefundRefused("the refunded amount must be positive")
    remaining = paid - refunded
    if requested > remaining:
        raise RefundRefused(f"at most {remaining} remains to refund on this payment")


def fee_in_payment_currency(fee: int | None, fee_currency: str | None, payment_currency: str) -> Money | None:
    """The provider's fee as Money when the group's ledger can bear it: a positive fee in the
    payment's currency. A fee in another (settlement) currency is recorded but not posted."""
    if fee is None or fee_currency is None or fee <= 0:
        return None
    if fee_currency.upper() != payment_currency:
        return None
    return Money(amount=fee, currency=payment_currency)


def idempotency_key(kind: str, our_id: object) -> str:
    """The provider-side idempotency key of one of our requests: derived from our own id only,
    so a retried request (same id) can never create a second object."""
    return f"cagette-{kind}-{our_id}"


# -- connected accounts (Stripe Connect) ------------------------------------------------------


@dataclass(frozen=True)
class AccountStatus:
    """What the provider says of a group's connected account, as far as payments care."""

    charges_enabled: bool
    card_payments: str  # the card_payments capability: active, inactive, pending, unrequested


def account_usable(status: AccountStatus | None, *, deauthorized: bool) -> bool:
    """A connected account may take card payments only with charges enabled, the card_payments
    capability active and the platform still authorized on it."""
    return account_problem_of(status, deauthorized=deauthorized) is None


def account_problem_of(status: AccountStatus | None, *, deauthorized: bool) -> CardAccountProblem | None:
    """Why the account cannot take payments (None: it can)."""
    if deauthorized:
        return CardAccountProblem.DEAUTHORIZED
    if status is None:
        return CardAccountProblem.NOT_CHECKED
    if not status.charges_enabled:
        return CardAccountProblem.CHARGES_DISABLED
    if status.card_payments != "active":
        return CardAccountProblem.CARD_PAYMENTS_INACTIVE
    return None


def account_problem(status: AccountStatus | None, *, deauthorized: bool) -> str | None:
    """Why the account cannot take payments, in words for the coordinator (None: it can)."""
    match account_problem_of(status, deauthorized=deauthorized):
        case None:
            return None
        case CardAccountProblem.DEAUTHORIZED:
            return "the group's Stripe account no longer authorizes this platform"
        case CardAccountProblem.NOT_CHECKED:
            return "the group's Stripe account is not known yet"
        case CardAccountProblem.CHARGES_DISABLED:
            return "the group's Stripe account cannot take charges yet (onboarding unfinished or restricted by Stripe)"
        case CardAccountProblem.CARD_PAYMENTS_INACTIVE:
            assert status is not None
            return f"the card_payments capability of the group's Stripe account is {status.card_payments}"


@dataclass(frozen=True)
class Readiness:
    """A group's card readiness as announced (payments.card_settings.changed)."""

    ready: bool
    connected: bool
    account_problem: CardAccountProblem | None  # of the connected account (None: usable, or none)


def account_change(announced: Readiness | None, current: Readiness, *, wanted: bool) -> CardAccountChange | None:
    """What the coordinators are told about the connected account when the readiness goes from
    `announced` (None: never announced) to `current`; `wanted`: card payments would be ready but
    for the account (settings enabled, platform keys configured).

    Card payments possible, then stopped by the account: became_unusable, once (a further
    problem while it is unusable, or the same account.updated again, tells nothing). An account
    that had a problem and now takes payments: became_usable (also when a first onboarding
    completes). Anything a coordinator or the platform's keys changed: nothing."""
    if current.account_problem is not None:
        was_usable = announced is not None and announced.ready
        return CardAccountChange.BECAME_UNUSABLE if was_usable and wanted else None
    had_problem = announced is not None and announced.account_problem is not None
    return CardAccountChange.BECAME_USABLE if had_problem and current.ready else None
