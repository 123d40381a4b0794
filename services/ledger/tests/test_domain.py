"""Pure rules: no database, no broker."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cagette_contracts import (
    AccountType,
    CardFeeCharged,
    Money,
    OrderConfirmed,
    PaymentMethod,
    PaymentReceived,
    PaymentRefunded,
)
from cagette_ledger import domain, wording
from cagette_ledger.domain import Leg, TransactionDraft, group_account, member_account
from cagette_runtime.errors import Invalid

from .conftest import order_event

G = uuid.uuid4()
M = uuid.uuid4()


def eur(cents: int) -> Money:
    return Money(amount=cents, currency="EUR")


def draft(*legs: Leg, key: str = "k") -> TransactionDraft:
    return TransactionDraft(group_id=G, kind="test", idempotency_key=key, legs=legs)


def test_balanced_draft() -> None:
    d = draft(Leg(member_account(G, M), eur(-100)), Leg(group_account(G, AccountType.SALES), eur(100)))
    assert d.currency == "EUR" and len(d.member_legs()) == 1


@pytest.mark.parametrize(
    ("legs", "message"),
    [
        ((Leg(member_account(G, M), eur(-100)), Leg(group_account(G, AccountType.SALES), eur(99))), "sum to zero"),
        ((Leg(member_account(G, M), eur(-100)),), "at least two"),
        ((Leg(member_account(G, M), eur(0)), Leg(group_account(G, AccountType.SALES), eur(0))), "cannot be zero"),
        (
            (
                Leg(member_account(G, M), eur(-1)),
                Leg(group_account(G, AccountType.SALES), Money(amount=1, currency="CHF")),
            ),
            "one currency",
        ),
        (
            (Leg(member_account(G, M), eur(-1)), Leg(group_account(uuid.uuid4(), AccountType.SALES), eur(1))),
            "transaction's group",
        ),
        ((Leg(member_account(G, M), eur(-1)), Leg(member_account(G, M), eur(1))), "at most once"),
    ],
)
def test_invalid_drafts(legs: tuple[Leg, ...], message: str) -> None:
    with pytest.raises(Invalid, match=message):
        draft(*legs)


def test_draft_needs_a_key_and_account_refs_are_consistent() -> None:
    with pytest.raises(Invalid, match="idempotency key"):
        draft(Leg(member_account(G, M), eur(-1)), Leg(group_account(G, AccountType.SALES), eur(1)), key="")
    with pytest.raises(Invalid):
        domain.AccountRef(G, AccountType.MEMBER)
    with pytest.raises(Invalid):
        domain.AccountRef(G, AccountType.SALES, M)
    with pytest.raises(Invalid):
        group_account(G, AccountType.MEMBER)


def test_fingerprint_tells_content_apart_and_ignores_leg_order() -> None:
    a = draft(Leg(member_account(G, M), eur(-100)), Leg(group_account(G, AccountType.SALES), eur(100)))
    b = draft(Leg(group_account(G, AccountType.SALES), eur(100)), Leg(member_account(G, M), eur(-100)))
    c = draft(Leg(member_account(G, M), eur(-101)), Leg(group_account(G, AccountType.SALES), eur(101)))
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()


def order(cents: int) -> OrderConfirmed:
    return order_event(G, M, eur(cents), product="x")


def test_flows_post_the_right_accounts() -> None:
    o = domain.order_confirmed(order(1234))
    assert {(leg.account.type, leg.amount.amount) for leg in o.legs} == {
        (AccountType.MEMBER, -1234),
        (AccountType.SALES, 1234),
    }
    assert o.idempotency_key.startswith("order:")
    for method, account in [
        (PaymentMethod.CHEQUE, AccountType.CHEQUES),
        (PaymentMethod.CASH, AccountType.CASH),
        (PaymentMethod.TRANSFER, AccountType.TRANSFERS),
        (PaymentMethod.CARD, AccountType.CARD_CLEARING),
    ]:
        p = domain.payment_received(
            PaymentReceived(group_id=G, payment_id=uuid.uuid4(), member_id=M, amount=eur(500), method=method)
        )
        assert {(leg.account.type, leg.amount.amount) for leg in p.legs} == {(AccountType.MEMBER, 500), (account, -500)}
        r = domain.payment_refunded(
            PaymentRefunded(
                group_id=G, payment_id=uuid.uuid4(), member_id=M, amount=eur(200), method=method, refund_id=uuid.uuid4()
            )
        )
        assert {(leg.account.type, leg.amount.amount) for leg in r.legs} == {(AccountType.MEMBER, -200), (account, 200)}
    fee = domain.card_fee_charged(
        CardFeeCharged(group_id=G, payment_id=uuid.uuid4(), member_id=M, amount=eur(30), provider_payment_id="pi")
    )
    assert {(leg.account.type, leg.amount.amount) for leg in fee.legs} == {
        (AccountType.CARD_FEES, -30),
        (AccountType.CARD_CLEARING, 30),
    }
    for method in (PaymentMethod.MONEY_POT, PaymentMethod.ON_THE_SPOT):
        with pytest.raises(Invalid, match="actual method"):
            domain.clearing_account(method)


def test_adjustments() -> None:
    ob = domain.opening_balance(G, M, eur(-500), recorded_by=None)
    assert {(leg.account.type, leg.amount.amount) for leg in ob.legs} == {
        (AccountType.MEMBER, -500),
        (AccountType.OPENING_BALANCE_EQUITY, 500),
    }
    assert ob.idempotency_key == f"opening_balance:{G}:{M}"
    with pytest.raises(Invalid, match="zero"):
        domain.opening_balance(G, M, eur(0), recorded_by=None)
    with pytest.raises(Invalid, match="reason"):
        domain.correction(G, M, eur(5), reason=" ", against=AccountType.SALES, key="c", recorded_by=None)
    fix = domain.correction(G, M, eur(5), reason="typo", against=AccountType.CASH, key="c", recorded_by=None)
    rev = domain.reversal(uuid.uuid4(), G, list(fix.legs), reason="undo", recorded_by=None, original_kind="correction")
    assert sorted(leg.amount.amount for leg in rev.legs) == sorted(-leg.amount.amount for leg in fix.legs)
    with pytest.raises(Invalid, match="cannot itself be reversed"):
        domain.reversal(uuid.uuid4(), G, list(rev.legs), reason="x", recorded_by=None, original_kind="reversal")
    with pytest.raises(Invalid, match="reason"):
        domain.reversal(uuid.uuid4(), G, list(fix.legs), reason="", recorded_by=None, original_kind="correction")


def test_decide_hold() -> None:
    assert domain.decide_hold(balance=1000, active_holds=300, amount=700, allow_negative=False) == domain.HoldVerdict(
        True, 0
    )
    refused = domain.decide_hold(balance=1000, active_holds=300, amount=701, allow_negative=False)
    assert (refused.granted, refused.available_after) == (False, 700)
    assert domain.decide_hold(balance=-50, active_holds=0, amount=10, allow_negative=True).available_after == -60
    with pytest.raises(Invalid):
        domain.decide_hold(balance=0, active_holds=0, amount=0, allow_negative=True)


@settings(max_examples=200)
@given(balance=st.integers(-(10**6), 10**6), amounts=st.lists(st.integers(1, 10**5), max_size=20))
def test_holds_never_overdraw_when_negative_refused(balance: int, amounts: list[int]) -> None:
    held = 0
    for amount in amounts:
        verdict = domain.decide_hold(balance=balance, active_holds=held, amount=amount, allow_negative=False)
        if verdict.granted:
            held += amount
            assert verdict.available_after == balance - held >= 0
        else:
            assert verdict.available_after == balance - held < amount
    assert held == 0 or balance - held >= 0


def test_crossings_and_standing() -> None:
    assert domain.crossed_zero(eur(0), eur(-1)) == "negative"
    assert domain.crossed_zero(eur(-1), eur(0)) == "non_negative"
    assert domain.crossed_zero(eur(-1), eur(-5)) is None
    assert domain.crossed_zero(eur(5), eur(0)) is None
    assert [domain.standing(x) for x in (-1, 0, 1)] == [
        domain.Standing.IN_DEBT,
        domain.Standing.BALANCED,
        domain.Standing.IN_CREDIT,
    ]


@pytest.mark.parametrize(
    ("text", "currency", "cents"),
    [
        ("12.50", "EUR", 1250),
        ("-3.5", "EUR", -350),
        ("0,01", "EUR", 1),
        (" 7 ", "EUR", 700),
        ("+2", "EUR", 200),
        ("1500", "XPF", 1500),
    ],
)
def test_parse_decimal_amount(text: str, currency: str, cents: int) -> None:
    assert domain.parse_decimal_amount(text, currency) == Money(amount=cents, currency=currency)


@pytest.mark.parametrize("text", ["1.234", "abc", "", "1e3", "1.5.2", "--1", "12.", "1 000"])
def test_parse_decimal_amount_refuses(text: str) -> None:
    with pytest.raises(Invalid):
        domain.parse_decimal_amount(text, "EUR")
    with pytest.raises(Invalid):
        domain.parse_decimal_amount("1.5", "XPF")


@given(st.integers(-(10**13), 10**13), st.sampled_from(["EUR", "XPF", "KWD", "CHF"]))
def test_decimal_text_round_trips(cents: int, currency: str) -> None:
    money = Money(amount=cents, currency=currency)
    assert domain.parse_decimal_amount(money.decimal_text(), currency) == money


def test_the_postings_queue_is_bound_to_every_event_it_handles() -> None:
    """An event the ledger handles but its queue is not bound to never arrives (the dispute funds
    events once did not): the bindings cover every handled event type."""
    from cagette_ledger.handlers import POSTINGS, POSTINGS_QUEUE
    from cagette_runtime.consumer import Consumer

    handled = {event_class.model_fields["event_type"].default for event_class in POSTINGS.event_classes}
    bound = set(Consumer(POSTINGS_QUEUE, POSTINGS).queue.routing_keys)
    assert handled == bound  # derived from the registry: nothing handled goes unbound
    assert {"payments.card_dispute.funds_withdrawn", "payments.card_dispute.funds_reinstated"} <= bound


def test_a_distribution_s_day_is_the_group_s_day() -> None:
    """01:30 UTC on 2 December is Wednesday in Paris, still Tuesday evening in Montreal."""
    starts_at = datetime(2026, 12, 2, 1, 30, tzinfo=UTC)
    assert wording.distribution_date(starts_at, "fr", ZoneInfo("Europe/Paris")) == "mer. 2 déc."
    assert wording.distribution_date(starts_at, "en", ZoneInfo("America/Montreal")) == "Tue 1 Dec"
