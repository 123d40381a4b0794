"""The pure parts: who gets what, negative episodes, balance after an order, retry delays."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from cagette_contracts import CardAccountChange, CardAccountProblem, Money, PaymentMethod
from cagette_notifications import domain
from cagette_notifications.domain import BalanceState, Group, Kind, Member, Trigger

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
EUR = "EUR"


def eur(cents: int) -> Money:
    return Money.of(cents, EUR)


GROUP = Group(uuid.uuid4(), "AMAP", EUR, "fr", cheque_payee=None, transfer_iban="FR76 1", transfer_bic="BIC")


def member(**kw: object) -> Member:
    return Member(GROUP.group_id, uuid.uuid4(), "Alice", "alice@example.org", **{"language": "en", **kw})  # type: ignore[arg-type]  # keyword overrides of the member's fields


def test_declared_methods_wait_for_the_declaration_others_go_on_confirmation() -> None:
    assert {m for m in PaymentMethod if domain.instructions_trigger(m) == Trigger.DECLARED} == {
        PaymentMethod.CHEQUE,
        PaymentMethod.TRANSFER,
        PaymentMethod.CASH,
        PaymentMethod.ON_THE_SPOT,
    }
    assert domain.instructions_trigger(PaymentMethod.MONEY_POT) == Trigger.CONFIRMED
    assert domain.instructions_trigger(PaymentMethod.CARD) == Trigger.CONFIRMED


def test_opt_out_removes_reminders_only() -> None:
    opted_out = member(reminders_opt_out=True)
    assert domain.balance_reminder(uuid.uuid4(), GROUP, opted_out, balance=eur(-100), since=T0, pending=eur(0)) == []
    assert (
        domain.balance_digest(uuid.uuid4(), GROUP, opted_out, balance=eur(-100), since=T0, now=T0, pending=eur(0)) == []
    )
    for kind in (Kind.PAYMENT_RECEIVED, Kind.PAYMENT_CANCELLED, Kind.CARD_PAYMENT_FAILED, Kind.PAYMENT_REFUNDED):
        [email] = domain.payment_event_email(kind, uuid.uuid4(), GROUP, opted_out, amount=eur(100))
        assert email.recipient == "alice@example.org"
    [reminder] = domain.balance_reminder(uuid.uuid4(), GROUP, member(), balance=eur(-100), since=T0, pending=eur(0))
    assert reminder.facts["owed"] == eur(100)


def test_language_falls_back_to_the_group_then_french() -> None:
    assert domain.language_of(member(language="en"), GROUP) == "en"
    assert domain.language_of(member(language="de"), GROUP) == "fr"
    assert domain.language_of(member(language="de"), Group(GROUP.group_id, "G", EUR, "it")) == "fr"


def test_instructions_carry_only_what_the_method_needs() -> None:
    cheque = domain.instructions_for(GROUP, PaymentMethod.CHEQUE, eur(500), reference="RF18")
    assert cheque is not None and cheque.payee == "AMAP" and cheque.iban is None and cheque.reference == "RF18"
    transfer = domain.instructions_for(GROUP, PaymentMethod.TRANSFER, eur(500), reference="RF18")
    assert transfer is not None and (transfer.iban, transfer.bic, transfer.payee) == ("FR76 1", "BIC", None)
    assert domain.format_iban("fr7630006000011234567890189") == "FR76 3000 6000 0112 3456 7890 189"
    assert domain.format_iban(" FR76 3000 6000 0112 3456 7890 189 ") == "FR76 3000 6000 0112 3456 7890 189"
    pot = domain.instructions_for(GROUP, PaymentMethod.MONEY_POT, eur(500), balance_after=eur(-20))
    assert pot is not None and pot.balance_after == eur(-20)
    card = domain.instructions_for(GROUP, PaymentMethod.CARD, eur(500), paid=True)
    assert card is not None and card.paid
    assert domain.instructions_for(GROUP, None, eur(500)) is None


def test_one_episode_per_crossing_whatever_the_postings() -> None:
    first, second = uuid.uuid4(), uuid.uuid4()
    state = domain.went_negative(BalanceState(EUR), eur(-100), T0, first)
    assert state.negative_since == T0 and state.episode_event_id == first and state.last_reminder_at is None
    state = domain.balance_changed(state, eur(-300), T0 + timedelta(minutes=1))
    again = domain.went_negative(state, eur(-400), T0 + timedelta(minutes=2), second)
    assert again.episode_event_id == first and again.balance == eur(-400)
    closed = domain.back_to_non_negative(again, eur(0), T0 + timedelta(minutes=3))
    assert closed.negative_since is None and closed.episode_event_id is None
    reopened = domain.went_negative(closed, eur(-50), T0 + timedelta(minutes=4), second)
    assert reopened.negative_since == T0 + timedelta(minutes=4) and reopened.episode_event_id == second


def test_out_of_order_ledger_events() -> None:
    # The end of an episode arrives before its start: no episode for a debt already settled.
    state = domain.back_to_non_negative(BalanceState(EUR), eur(0), T0 + timedelta(minutes=5))
    state = domain.went_negative(state, eur(-100), T0, uuid.uuid4())
    assert state.negative_since is None and state.balance == eur(0)
    # An older figure never overwrites a newer one.
    state = domain.balance_changed(state, eur(-999), T0 - timedelta(days=1))
    assert state.balance == eur(0)
    # The end of an older episode does not close the current one.
    state = domain.went_negative(state, eur(-10), T0 + timedelta(minutes=10), uuid.uuid4())
    state = domain.back_to_non_negative(state, eur(0), T0 + timedelta(minutes=9))
    assert state.negative_since == T0 + timedelta(minutes=10)


GRACE, WEEK = timedelta(minutes=2), timedelta(days=7)


def due(state: BalanceState, now: datetime, pending: int = 0) -> Kind | None:
    return domain.next_reminder(state, now, grace=GRACE, interval=WEEK, pending=eur(pending))


def test_reminder_after_the_grace_then_a_digest_every_interval() -> None:
    state = domain.went_negative(BalanceState(EUR), eur(-100), T0, uuid.uuid4())
    assert due(state, T0 + GRACE - timedelta(seconds=1)) is None
    assert due(state, T0 + GRACE) == Kind.BALANCE_REMINDER
    reminded = replace(state, last_reminder_at=T0 + GRACE)
    assert due(reminded, T0 + GRACE + WEEK - timedelta(seconds=1)) is None
    assert due(reminded, T0 + GRACE + WEEK) == Kind.BALANCE_DIGEST
    settled = domain.back_to_non_negative(reminded, eur(0), T0 + timedelta(days=1))
    assert due(settled, T0 + 5 * WEEK) is None
    # Same episode and previous reminder: same digest id (keys the delivery log).
    a = domain.digest_event_id("g:m", T0, T0 + GRACE)
    assert a == domain.digest_event_id("g:m", T0, T0 + GRACE) != domain.digest_event_id("g:m", T0, T0 + WEEK)


def test_pending_payments_that_cover_the_debt_hold_reminders_back() -> None:
    # A cheque order: the debit is posted at once, the cheque counts only once received (R16).
    state = domain.went_negative(BalanceState(EUR), eur(-1255), T0, uuid.uuid4())
    assert due(state, T0 + GRACE, pending=1255) is None
    assert due(state, T0 + GRACE, pending=2000) is None
    assert due(state, T0 + GRACE, pending=1000) == Kind.BALANCE_REMINDER  # 2,55 uncovered
    [email] = domain.balance_email(Kind.BALANCE_REMINDER, uuid.uuid4(), GROUP, member(), state, T0, eur(1000))
    assert email.facts["owed"] == eur(1255) and email.facts["left"] == eur(255)


@pytest.mark.parametrize(("attempts", "expected"), [(1, 5.0), (2, 10.0), (3, 20.0), (10, 600.0), (1000, 600.0)])
def test_retry_delay_doubles_up_to_the_cap(attempts: int, expected: float) -> None:
    assert domain.retry_delay(attempts, 5.0, 600.0) == expected


def test_a_dispute_goes_to_each_coordinator_in_their_language_opt_out_or_not() -> None:
    payer = Member(GROUP.group_id, uuid.uuid4(), "Paul", "paul@example.org", "fr", role="member")
    fr = Member(
        GROUP.group_id, uuid.uuid4(), "Cora", "cora@example.org", "fr", reminders_opt_out=True, role="coordinator"
    )
    en = Member(GROUP.group_id, uuid.uuid4(), "Carl", "carl@example.org", "en", role="coordinator")
    plain = Member(GROUP.group_id, uuid.uuid4(), "Max", "max@example.org", "fr", role="member")
    unknown = Member(GROUP.group_id, uuid.uuid4(), "Old", "old@example.org", "fr")  # role not known
    emails = domain.card_payment_disputed(
        uuid.uuid4(),
        GROUP,
        [fr, plain, en, unknown],
        payer=payer,
        dispute=domain.Dispute(
            payment_id=uuid.uuid4(),
            amount=eur(1255),
            dispute_id="dp_1",
            provider_payment_id="pi_1",
            reason="fraudulent",
        ),
        disputed_at=T0,
    )
    assert [(e.kind, e.recipient, e.language) for e in emails] == [
        (Kind.CARD_PAYMENT_DISPUTED, "cora@example.org", "fr"),
        (Kind.CARD_PAYMENT_DISPUTED, "carl@example.org", "en"),
    ]
    assert all(e.facts["payer"] == payer and e.facts["amount"] == eur(1255) for e in emails)
    assert Kind.CARD_PAYMENT_DISPUTED not in domain.REMINDER_KINDS and domain.wants(fr, Kind.CARD_PAYMENT_DISPUTED)


def test_only_the_account_changes_payments_tells_about_are_emailed_to_coordinators_only() -> None:
    cora, carl = member(role="coordinator", language="fr"), member(role="coordinator")
    paul, unknown = member(role="member"), member()
    people = [cora, carl, paul, unknown]

    def told(change: CardAccountChange | None) -> list[domain.Email]:
        problem = CardAccountProblem.CHARGES_DISABLED if change is CardAccountChange.BECAME_UNUSABLE else None
        return domain.card_account_changed(
            uuid.uuid4(), GROUP, people, change=change, problem=problem, settings_url=None, changed_at=T0
        )

    assert told(None) == []  # a coordinator's own setting, or another problem while stopped
    stopped = told(CardAccountChange.BECAME_UNUSABLE)
    assert [(e.member, e.kind, e.language) for e in stopped] == [
        (cora, Kind.CARD_PAYMENTS_STOPPED, "fr"),
        (carl, Kind.CARD_PAYMENTS_STOPPED, "en"),
    ]
    assert stopped[0].facts == {"problem": "charges_disabled", "settings_url": "", "date": T0}
    assert [e.kind for e in told(CardAccountChange.BECAME_USABLE)] == [Kind.CARD_PAYMENTS_RESUMED] * 2
