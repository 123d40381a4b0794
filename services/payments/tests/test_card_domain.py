"""The card payment's state machine and refund arithmetic (pure)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cagette_contracts import CardAccountChange, CardAccountProblem, Money
from cagette_payments.domain import card
from cagette_payments.domain.card import CardState, Outcome


def eur(cents: int) -> Money:
    return Money(amount=cents, currency="EUR")


@pytest.mark.parametrize(
    ("state", "outcome", "after"),
    [
        (CardState.INITIATED, Outcome.SUCCEEDED, CardState.SUCCEEDED),
        (CardState.INITIATED, Outcome.FAILED, CardState.FAILED),
        (CardState.INITIATED, Outcome.EXPIRED, CardState.EXPIRED),
        (CardState.FAILED, Outcome.SUCCEEDED, CardState.SUCCEEDED),
        (CardState.FAILED, Outcome.EXPIRED, CardState.EXPIRED),
        (CardState.FAILED, Outcome.FAILED, None),
        (CardState.EXPIRED, Outcome.SUCCEEDED, CardState.SUCCEEDED),
        (CardState.EXPIRED, Outcome.FAILED, None),
        (CardState.EXPIRED, Outcome.EXPIRED, None),
        (CardState.SUCCEEDED, Outcome.SUCCEEDED, None),
        (CardState.SUCCEEDED, Outcome.FAILED, None),
        (CardState.SUCCEEDED, Outcome.EXPIRED, None),
    ],
)
def test_the_state_machine_only_moves_forward(state: CardState, outcome: Outcome, after: CardState | None) -> None:
    assert card.advance(state, outcome) == after


def test_succeeded_is_reached_from_any_order_of_notifications() -> None:
    for order in itertools.permutations([Outcome.FAILED, Outcome.SUCCEEDED, Outcome.EXPIRED, Outcome.FAILED]):
        state = CardState.INITIATED
        for outcome in order:
            state = card.advance(state, outcome) or state
        assert state is CardState.SUCCEEDED


def test_refunds_and_disputes_imply_the_success() -> None:
    assert all(card.implies_success(s) for s in (CardState.INITIATED, CardState.FAILED, CardState.EXPIRED))
    assert not card.implies_success(CardState.SUCCEEDED)


def test_refund_delta_counts_only_what_is_new() -> None:
    paid = eur(3730)
    first = card.refund_delta(paid, 1000, eur(0))
    assert (first.new, first.cumulative) == (eur(1000), eur(1000))
    again = card.refund_delta(paid, 1000, first.cumulative)  # a duplicate
    assert again.new == eur(0) and again.cumulative == eur(1000)
    second = card.refund_delta(paid, 1500, first.cumulative)
    assert (second.new, second.cumulative) == (eur(500), eur(1500))
    older = card.refund_delta(paid, 1000, second.cumulative)  # an older notification arriving late
    assert older.new == eur(0) and older.cumulative == eur(1500)
    full = card.refund_delta(paid, 3730, second.cumulative)
    assert full.new == eur(2230)
    with pytest.raises(card.RefundOverflow):
        card.refund_delta(paid, 3731, eur(0))
    with pytest.raises(card.RefundOverflow):
        card.refund_delta(paid, -1, eur(0))


@given(st.lists(st.integers(min_value=0, max_value=5000), min_size=1, max_size=8), st.randoms())
def test_refunded_total_is_the_largest_reported_whatever_the_order(totals: list[int], rnd) -> None:
    """Cumulative totals delivered duplicated and shuffled: the recorded refunds sum to the
    largest total reported, never more."""
    paid = eur(5000)
    deliveries = totals + totals[: len(totals) // 2]
    rnd.shuffle(deliveries)
    recorded = eur(0)
    recorded_sum = 0
    for reported in deliveries:
        delta = card.refund_delta(paid, reported, recorded)
        assert delta.new.amount >= 0
        recorded_sum += delta.new.amount
        recorded = delta.cumulative
    assert recorded_sum == recorded.amount == max(totals)


def test_refund_requests() -> None:
    card.check_refund_request(CardState.SUCCEEDED, eur(2000), eur(500), eur(1500))
    for state, refunded, asked in [
        (CardState.INITIATED, eur(0), eur(100)),
        (CardState.FAILED, eur(0), eur(100)),
        (CardState.SUCCEEDED, eur(500), eur(1501)),
        (CardState.SUCCEEDED, eur(0), eur(0)),
        (CardState.SUCCEEDED, eur(0), Money(amount=100, currency="CHF")),
    ]:
        with pytest.raises(card.RefundRefused):
            card.check_refund_request(state, eur(2000), refunded, asked)


def test_paid_amount_must_be_exactly_ours() -> None:
    card.check_paid_amount(eur(3730), 3730, "eur")
    card.check_paid_amount(eur(3730), None, None)
    with pytest.raises(card.AmountMismatch):
        card.check_paid_amount(eur(3730), 3729, "eur")
    with pytest.raises(card.AmountMismatch):
        card.check_paid_amount(eur(3730), 3730, "chf")


def test_fee_in_the_payment_currency_only() -> None:
    assert card.fee_in_payment_currency(77, "eur", "EUR") == eur(77)
    assert card.fee_in_payment_currency(77, "gbp", "EUR") is None
    assert card.fee_in_payment_currency(0, "eur", "EUR") is None
    assert card.fee_in_payment_currency(None, None, "EUR") is None


def test_idempotency_keys_are_derived_from_our_ids() -> None:
    assert card.idempotency_key("checkout", "p1") == card.idempotency_key("checkout", "p1") == "cagette-checkout-p1"
    assert card.idempotency_key("refund", "p1") != card.idempotency_key("checkout", "p1")


# -- connected accounts: what the coordinators are told ---------------------------------------

USABLE = card.AccountStatus(charges_enabled=True, card_payments="active")
RESTRICTED = card.AccountStatus(charges_enabled=False, card_payments="active")
CAPABILITY_OFF = card.AccountStatus(charges_enabled=True, card_payments="inactive")


@pytest.mark.parametrize(
    ("status", "deauthorized", "problem"),
    [
        (USABLE, False, None),
        (RESTRICTED, False, CardAccountProblem.CHARGES_DISABLED),
        (CAPABILITY_OFF, False, CardAccountProblem.CARD_PAYMENTS_INACTIVE),
        (card.AccountStatus(True, "pending"), False, CardAccountProblem.CARD_PAYMENTS_INACTIVE),
        (USABLE, True, CardAccountProblem.DEAUTHORIZED),
        (RESTRICTED, True, CardAccountProblem.DEAUTHORIZED),
        (None, False, CardAccountProblem.NOT_CHECKED),
    ],
)
def test_an_accounts_problem_has_a_code_and_words(
    status: card.AccountStatus | None, deauthorized: bool, problem: CardAccountProblem | None
) -> None:
    assert card.account_problem_of(status, deauthorized=deauthorized) is problem
    assert card.account_usable(status, deauthorized=deauthorized) is (problem is None)
    words = card.account_problem(status, deauthorized=deauthorized)
    assert (words is None) is (problem is None)
    if words is not None:
        assert words.startswith("the ") and "Stripe account" in words


def follow(
    statuses: list[tuple[card.AccountStatus | None, bool]], *, wanted: bool = True
) -> list[CardAccountChange | None]:
    """What each status of the account tells the coordinators, announcing as payments does (only
    when the readiness differs from the last one announced); None for nothing told."""
    announced: card.Readiness | None = None
    told: list[CardAccountChange | None] = []
    for status, deauthorized in statuses:
        problem = card.account_problem_of(status, deauthorized=deauthorized)
        current = card.Readiness(wanted and problem is None, True, problem)
        if current == announced:
            told.append(None)  # nothing announced: identical news
            continue
        told.append(card.account_change(announced, current, wanted=wanted))
        announced = current
    return told


def test_usable_then_unusable_tells_once_and_unusable_again_tells_nothing() -> None:
    assert follow([(USABLE, False), (RESTRICTED, False), (RESTRICTED, False), (RESTRICTED, False)]) == [
        None,  # the first announcement: nothing had stopped
        CardAccountChange.BECAME_UNUSABLE,
        None,
        None,
    ]


def test_another_problem_while_unusable_tells_nothing_and_usable_again_is_told_once() -> None:
    told = follow([(USABLE, False), (CAPABILITY_OFF, False), (RESTRICTED, False), (RESTRICTED, True), (USABLE, False)])
    assert told == [None, CardAccountChange.BECAME_UNUSABLE, None, None, CardAccountChange.BECAME_USABLE]
    assert follow([(USABLE, False), (RESTRICTED, False), (USABLE, False), (USABLE, False)])[2:] == [
        CardAccountChange.BECAME_USABLE,
        None,
    ]


def test_a_first_onboarding_is_told_when_it_completes_never_as_stopped() -> None:
    assert follow([(RESTRICTED, False), (CAPABILITY_OFF, False), (USABLE, False)]) == [
        None,
        None,
        CardAccountChange.BECAME_USABLE,
    ]


def test_nothing_is_told_when_card_payments_are_off_for_another_reason() -> None:
    """Settings disabled by a coordinator, or the platform's keys missing: the account's state
    changes what is announced, not what the coordinators are told."""
    assert follow([(USABLE, False), (RESTRICTED, False), (USABLE, False)], wanted=False) == [None, None, None]
    ready = card.Readiness(True, True, None)
    stopped_by_account = card.Readiness(False, True, CardAccountProblem.CHARGES_DISABLED)
    assert card.account_change(ready, stopped_by_account, wanted=False) is None  # disabled in the same change
    assert card.account_change(None, stopped_by_account, wanted=True) is None  # never announced before
