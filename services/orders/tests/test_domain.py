"""The pure rules (no servers): settings, units, cut-off, pricing, add-only, settlement, card states."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from cagette_contracts import Money, PaymentMethod, Role
from cagette_orders import domain
from cagette_orders.domain import OrderStatus, PaymentSettings, Settlement
from cagette_runtime.errors import Conflict, Invalid

M = PaymentMethod
IBAN = "FR76 3000 6000 0112 3456 7890 189"


def eur(cents: int) -> Money:
    return Money(amount=cents, currency="EUR")


@pytest.mark.parametrize(
    ("settings", "reason"),
    [
        (PaymentSettings(True, ()), "at least one payment method"),
        (PaymentSettings(True, (M.MONEY_POT, M.CHEQUE), cheque_payee="x"), "cannot be combined"),
        (PaymentSettings(True, (M.CARD, M.MONEY_POT), card_configured=True), "cannot be combined"),
        (PaymentSettings(True, (M.TRANSFER,)), "IBAN"),
        (
            PaymentSettings(True, (M.TRANSFER,), transfer_iban="FR76 3000 6000 0112 3456 7890 188"),
            "invalid bank details",
        ),
        (PaymentSettings(True, (M.TRANSFER,), transfer_iban=IBAN, transfer_bic="NOTABIC"), "invalid bank details"),
        (PaymentSettings(True, (M.CARD,)), "card payments are configured"),
        (PaymentSettings(True, (M.CHEQUE,)), "payee"),
        (PaymentSettings(True, (M.CHEQUE,), cheque_payee="   "), "payee"),
        (PaymentSettings(True, (M.CASH,), order_cutoff_hours=-1), "cut-off"),
        (PaymentSettings(False, (), order_cutoff_hours=10_000), "cut-off"),
    ],
)
def test_invalid_settings_are_refused_with_the_reason(settings: PaymentSettings, reason: str) -> None:
    with pytest.raises(Invalid, match=reason):
        settings.validated()


def test_valid_settings_are_normalised() -> None:
    s = PaymentSettings(
        True,
        (M.TRANSFER, M.CHEQUE, M.TRANSFER),
        cheque_payee=" AMAP ",
        transfer_iban=IBAN.lower(),
        transfer_bic="agrifrpp",
    ).validated()
    assert s.payment_methods == (M.TRANSFER, M.CHEQUE)
    assert s.transfer_iban == "FR7630006000011234567890189" and s.transfer_bic == "AGRIFRPP"
    assert s.cheque_payee == "AMAP"
    assert PaymentSettings(True, (M.MONEY_POT,)).validated().payment_methods == (M.MONEY_POT,)
    assert PaymentSettings(True, (M.CARD,), card_configured=True).validated().payment_methods == (M.CARD,)
    # Payments off: no method needed (R1).
    assert PaymentSettings(False, ()).validated().payments_enabled is False


def test_card_kept_without_readiness_only_when_the_methods_stay_as_they_were() -> None:
    kept = PaymentSettings(True, (M.CARD,))
    assert kept.validated(previous=kept).payment_methods == (M.CARD,)
    with pytest.raises(Invalid, match="card payments are configured"):
        PaymentSettings(True, (M.CARD, M.CASH)).validated(previous=kept)  # changing them needs readiness
    with pytest.raises(Invalid, match="card payments are configured"):
        PaymentSettings(True, (M.CARD, M.CASH)).validated(previous=PaymentSettings(True, (M.CASH,)))


def test_readiness_lost_removes_card_unless_it_is_the_only_method() -> None:
    s = PaymentSettings(True, (M.CHEQUE, M.CARD), cheque_payee="x", card_configured=True).without_card()
    assert s.payment_methods == (M.CHEQUE,) and s.card_configured is False
    alone = PaymentSettings(True, (M.CARD,), card_configured=True).without_card()
    assert alone.payment_methods == (M.CARD,) and alone.card_configured is False
    with pytest.raises(Conflict, match="card payments are not available in this group right now"):
        domain.settlement(alone, M.CARD)
    off = PaymentSettings(False, (M.CARD,), card_configured=True).without_card()
    assert off.payment_methods == () and off.card_configured is False


def test_method_must_be_chosen_and_offered() -> None:
    s = PaymentSettings(True, (M.CHEQUE, M.CASH), cheque_payee="x")
    with pytest.raises(Invalid, match="R8"):
        s.check_method(None)
    with pytest.raises(Invalid, match="does not offer money_pot; it offers cheque, cash"):
        s.check_method(M.MONEY_POT)
    s.check_method(M.CASH)
    PaymentSettings(False, ()).check_method(None)


@pytest.mark.parametrize(
    ("settings", "method", "expected"),
    [
        (PaymentSettings(False, ()), None, None),
        (PaymentSettings(True, (M.CHEQUE,), cheque_payee="x"), M.CHEQUE, Settlement.CONFIRM),
        (PaymentSettings(True, (M.ON_THE_SPOT,)), M.ON_THE_SPOT, Settlement.CONFIRM),
        (PaymentSettings(True, (M.MONEY_POT,), allow_negative_money_pot=True), M.MONEY_POT, Settlement.CONFIRM),
        (PaymentSettings(True, (M.MONEY_POT,)), M.MONEY_POT, Settlement.HOLD),
        (PaymentSettings(True, (M.CARD,), card_configured=True), M.CARD, Settlement.AWAIT_CARD),
    ],
)
def test_settlement_by_method(
    settings: PaymentSettings, method: PaymentMethod | None, expected: Settlement | None
) -> None:
    payment = domain.settlement(settings, method)
    if expected is None:
        assert payment is None
    else:
        assert payment is not None and (payment.method, payment.settlement) == (method, expected)


def test_subscription_settlement() -> None:
    cheques = PaymentSettings(True, (M.CHEQUE,), cheque_payee="x")
    assert domain.subscription_settlement(PaymentSettings(False, ()), M.CHEQUE) is None
    assert domain.subscription_settlement(cheques, None) is Settlement.CONFIRM  # R7: cheques entered later
    assert domain.subscription_settlement(PaymentSettings(True, (M.MONEY_POT,)), M.MONEY_POT) is Settlement.HOLD
    with pytest.raises(Invalid, match="cannot be paid by card"):
        domain.subscription_settlement(PaymentSettings(True, (M.CARD,), card_configured=True), M.CARD)


def test_one_active_order_per_basket_and_locked_baskets() -> None:
    assert set(domain.ACTIVE_STATUSES) == {
        OrderStatus.CONFIRMED,
        OrderStatus.AWAITING_PAYMENT,
        OrderStatus.PAYMENT_FAILED,
    }
    domain.check_no_active_order(None)
    with pytest.raises(Conflict, match="change it instead"):
        domain.check_no_active_order(uuid.uuid4())
    domain.check_unlocked(False)
    with pytest.raises(Conflict, match="R20"):
        domain.check_unlocked(True)


def test_a_group_keeps_a_coordinator() -> None:
    domain.check_keeps_coordinator(Role.COORDINATOR, Role.MEMBER, other_coordinators=1)
    domain.check_keeps_coordinator(Role.MEMBER, Role.MEMBER, other_coordinators=0)
    with pytest.raises(Conflict, match="at least one coordinator"):
        domain.check_keeps_coordinator(Role.COORDINATOR, Role.MEMBER, other_coordinators=0)


def product(
    unit: domain.Unit = domain.Unit.PIECE, price: int = 350, fee: str = "0", catalog: uuid.UUID | None = None
) -> domain.Product:
    return domain.Product(uuid.uuid4(), catalog or uuid.uuid4(), "P", unit, eur(price), Decimal(fee))


def test_quantities_by_unit() -> None:
    domain.check_quantity(product(domain.Unit.KG), Decimal("0.125"))
    domain.check_quantity(product(domain.Unit.LITRE), Decimal("1.5"))
    domain.check_quantity(product(), Decimal("2.000"))
    with pytest.raises(Invalid, match="whole number"):
        domain.check_quantity(product(), Decimal("1.5"))
    for bad in ("0", "-1"):
        with pytest.raises(Invalid, match="must be positive"):
            domain.check_quantity(product(domain.Unit.KG), Decimal(bad))


def test_price_basket_rounds_once_per_line_and_checks_products() -> None:
    catalog = uuid.uuid4()
    bread, cheese = product(price=350, catalog=catalog), product(domain.Unit.KG, 1999, "0.02", catalog)
    products = {bread.product_id: bread, cheese.product_id: cheese}
    lines, total = domain.price_basket(
        {bread.product_id: Decimal(3), cheese.product_id: Decimal("0.333")}, products, frozenset({catalog}), "EUR"
    )
    # 0.333 x 1999 x 1.02 = 678.98... -> 679; the total is the sum of the rounded lines.
    assert [line.line_total.amount for line in lines] == [1050, 679]
    assert total == eur(1729)
    with pytest.raises(Invalid, match="unknown product"):
        domain.price_basket({uuid.uuid4(): Decimal(1)}, products, frozenset({catalog}), "EUR")
    with pytest.raises(Invalid, match="not sold for this distribution"):
        domain.price_basket({bread.product_id: Decimal(1)}, products, frozenset({uuid.uuid4()}), "EUR")
    with pytest.raises(Invalid, match="at least one"):
        domain.price_basket({}, products, frozenset({catalog}), "EUR")
    with pytest.raises(Invalid, match="rounds to nothing"):
        domain.price_basket({cheese.product_id: Decimal("0.0001")}, products, frozenset({catalog}), "EUR")


def test_a_product_listed_twice_is_refused() -> None:
    p = uuid.uuid4()
    with pytest.raises(Invalid, match="listed twice"):
        domain.quantities([domain.LineRequest(p, Decimal(1)), domain.LineRequest(p, Decimal(2))])


def test_add_only_diff() -> None:
    a, b, c = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    names = {a: "Bread", b: "Cheese"}
    current = {a: Decimal(2), b: Decimal("0.5")}
    assert domain.add_only_diff(current, {a: Decimal(3), b: Decimal("0.5"), c: Decimal(1)}, names) == {
        a: Decimal(1),
        c: Decimal(1),
    }
    with pytest.raises(Conflict, match="cannot remove Cheese"):
        domain.add_only_diff(current, {a: Decimal(5)}, names)
    with pytest.raises(Conflict, match="cannot lower from 2 to 1 Bread"):
        domain.add_only_diff(current, {a: Decimal(1), b: Decimal(1)}, names)
    with pytest.raises(Invalid, match="nothing to add"):
        domain.add_only_diff(current, dict(current), names)


def test_distribution_window_and_cutoff() -> None:
    start = datetime(2026, 12, 5, 17, tzinfo=UTC)
    d = domain.Distribution(uuid.uuid4(), start, start - timedelta(days=7), start - timedelta(hours=2))
    assert d.closes_at(0) == start - timedelta(hours=2)
    assert d.closes_at(48) == start - timedelta(hours=48)
    d.check_open(start - timedelta(hours=3), 0)
    with pytest.raises(Conflict, match="closed"):
        d.check_open(start - timedelta(hours=3), 24)
    with pytest.raises(Conflict, match="closed"):
        d.check_open(start - timedelta(hours=2), 0)
    with pytest.raises(Conflict, match="open at"):
        d.check_open(start - timedelta(days=8), 0)
    with pytest.raises(Invalid, match="open before they close"):
        domain.check_distribution_times(start, start, start - timedelta(hours=1))
    with pytest.raises(Invalid, match="no later than the distribution"):
        domain.check_distribution_times(start, start - timedelta(days=1), start + timedelta(hours=1))


def test_card_state_machine() -> None:
    assert domain.on_card_succeeded(OrderStatus.AWAITING_PAYMENT) == domain.CardOutcome(OrderStatus.CONFIRMED, True)
    assert domain.on_card_succeeded(OrderStatus.PAYMENT_FAILED) == domain.CardOutcome(OrderStatus.CONFIRMED, True)
    late = domain.on_card_succeeded(OrderStatus.ABANDONED)
    assert late.status is OrderStatus.CONFIRMED and late.confirm and late.flag == domain.LATE_PAYMENT_FLAG
    with pytest.raises(Conflict, match="double payment"):
        domain.on_card_succeeded(OrderStatus.CONFIRMED)
    assert domain.on_card_failed(OrderStatus.AWAITING_PAYMENT) is OrderStatus.PAYMENT_FAILED
    assert (
        domain.on_card_failed(OrderStatus.CONFIRMED) is OrderStatus.CONFIRMED
    )  # a late failure never undoes a success
    with pytest.raises(Invalid, match="does not match"):
        domain.check_card_amount(eur(100), eur(101))


def test_withdrawing_and_changing() -> None:
    assert domain.on_withdraw(OrderStatus.CONFIRMED, payments_enabled=False) is OrderStatus.CANCELLED
    assert domain.on_withdraw(OrderStatus.PAYMENT_FAILED, payments_enabled=True) is OrderStatus.ABANDONED
    with pytest.raises(Conflict, match="R6"):
        domain.on_withdraw(OrderStatus.CONFIRMED, payments_enabled=True)
    with pytest.raises(Conflict, match="card payment"):
        domain.check_changeable(OrderStatus.AWAITING_PAYMENT, False)
    with pytest.raises(Conflict, match="earlier addition"):
        domain.check_changeable(OrderStatus.CONFIRMED, True)
    with pytest.raises(Conflict, match="abandoned"):
        domain.check_changeable(OrderStatus.ABANDONED, False)


def test_subscription_total_is_lines_times_distributions() -> None:
    basket = product(price=1250)
    eggs = product(price=333)
    lines = [domain.price_line(basket, Decimal(1)), domain.price_line(eggs, Decimal(2))]
    assert domain.subscription_total(lines, 10, "EUR") == eur((1250 + 666) * 10)
    with pytest.raises(Invalid, match="no distribution left"):
        domain.subscription_total(lines, 0, "EUR")


def test_currency_change_is_refused_once_priced() -> None:
    domain.check_currency_change("EUR", "CHF", has_priced_things=False)
    domain.check_currency_change("EUR", "EUR", has_priced_things=True)
    with pytest.raises(Conflict, match="cannot change"):
        domain.check_currency_change("EUR", "CHF", has_priced_things=True)


def test_product_checks() -> None:
    domain.check_product("Bread", eur(1), Decimal("0.5"))
    with pytest.raises(Invalid, match="positive"):
        domain.check_product("Bread", eur(0), Decimal(0))
    with pytest.raises(Invalid, match="fee rate"):
        domain.check_product("Bread", eur(1), Decimal("0.6"))


def test_an_order_keeps_the_money_mode_it_was_placed_with() -> None:
    domain.check_same_money_mode(True, True)
    domain.check_same_money_mode(False, False)
    with pytest.raises(Conflict, match="turned them off"):
        domain.check_same_money_mode(True, False)
    with pytest.raises(Conflict, match="turned them on"):
        domain.check_same_money_mode(False, True)


def test_card_limits_apply_to_card_settlements_only() -> None:
    from cagette_orders.domain import Payment, check_card_limits

    small = Money(amount=41, currency="EUR")
    with pytest.raises(Invalid, match="at least 0.50 EUR"):
        check_card_limits(Payment(PaymentMethod.CARD, Settlement.AWAIT_CARD), small)
    check_card_limits(Payment(PaymentMethod.CHEQUE, Settlement.CONFIRM), small)
    check_card_limits(None, small)  # payments off
    check_card_limits(Payment(PaymentMethod.CARD, Settlement.AWAIT_CARD), Money(amount=50, currency="EUR"))
