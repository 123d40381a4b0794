"""Every template renders in both languages, with amounts and dates formatted for the language."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import aiosmtplib
import pytest
from babel.messages.pofile import read_po

from cagette_contracts import CardAccountChange, CardAccountProblem, Money, OrderLine, PaymentMethod, line_amount
from cagette_notifications import domain
from cagette_notifications.domain import Group, Kind, Member
from cagette_notifications.rendering import LOCALE_DIR, TEMPLATES, de, render
from cagette_notifications.smtp import classify

IBAN = "FR76 3000 6000 0112 3456 7890 189"
REF = "RF18 5390 0754 7034"
WHEN = datetime(2026, 11, 27, 23, 30, tzinfo=UTC)  # 28 November in Paris
GROUP = Group(uuid.uuid4(), "Les <Paniers> & Co", "EUR", "fr", "Trésorerie AMAP", IBAN, "AGRIFRPP")
AMOUNTS = {"fr": "12,55\xa0€", "en": "€12.55"}
DATES = {"fr": "28 novembre 2026", "en": "November 28, 2026"}


def member(language: str) -> Member:
    return Member(GROUP.group_id, uuid.uuid4(), "Zoé <b>", "zoe@example.org", language)


def lines() -> list[OrderLine]:
    eggs, bread = Money.of(320, "EUR"), Money.of(410, "EUR")
    return [
        OrderLine(product_name="Oeufs", quantity=Decimal(2), unit_price=eggs, line_total=line_amount(Decimal(2), eggs)),
        OrderLine(
            product_name="Pain",
            quantity=Decimal("1.5"),
            unit_price=bread,
            line_total=line_amount(Decimal("1.5"), bread),
        ),
    ]


TOTAL = Money.of(1255, "EUR")


def every_email(language: str) -> list[domain.Email]:
    m, eid = member(language), uuid.uuid4

    def to_m(build: Callable[..., list[domain.Email]], **facts: object) -> list[domain.Email]:
        """The email `build` makes of `facts`, to the member (a new event each)."""
        return build(eid(), GROUP, m, **facts)

    emails = []
    for method in PaymentMethod:
        instructions = domain.instructions_for(GROUP, method, TOTAL, reference=REF, balance_after=Money.of(-300, "EUR"))
        emails += to_m(
            domain.order_confirmed,
            order=domain.KnownOrder(eid(), TOTAL, WHEN),
            lines=lines(),
            instructions=instructions,
        )
    card = domain.instructions_for(GROUP, PaymentMethod.CARD, TOTAL, retry_url="https://pay.example.org/r")
    emails += to_m(
        domain.order_amended,
        order_id=eid(),
        added_lines=lines(),
        added_total=TOTAL,
        new_total=Money.of(2510, "EUR"),
        instructions=card,
        amended_at=WHEN,
    )
    emails += to_m(
        domain.subscription_confirmed,
        subscription=domain.Subscription("Légumes", lines(), 10),
        total=Money.of(12550, "EUR"),
        instructions=None,
        confirmed_at=WHEN,
    )
    emails += to_m(
        domain.subscription_amended,
        subscription=domain.Subscription("Légumes", lines(), 4),
        added_total=Money.of(5020, "EUR"),
        new_total=Money.of(17570, "EUR"),
        instructions=domain.instructions_for(GROUP, PaymentMethod.CHEQUE, TOTAL),
        amended_at=WHEN,
    )
    emails += to_m(
        domain.payment_instructions,
        about="Légumes",
        declared_at=WHEN,
        instructions=domain.instructions_for(GROUP, PaymentMethod.TRANSFER, TOTAL, reference=REF),
    )
    for kind in (Kind.PAYMENT_RECEIVED, Kind.PAYMENT_CANCELLED, Kind.CARD_PAYMENT_FAILED, Kind.PAYMENT_REFUNDED):
        emails += domain.payment_event_email(
            kind,
            eid(),
            GROUP,
            m,
            amount=TOTAL,
            method=PaymentMethod.CARD,
            date=WHEN,
            reference=REF,
            label=None,
            declared_amount=None,
            reason="",
            retry_url=None,
        )
    coordinator = Member(GROUP.group_id, uuid.uuid4(), "Zoé <b>", "coord@example.org", language, role="coordinator")
    emails += domain.card_payment_disputed(
        eid(),
        GROUP,
        [coordinator],
        payer=member("en"),
        dispute=domain.Dispute(
            payment_id=eid(),
            amount=TOTAL,
            dispute_id="dp_1",
            provider_payment_id="pi_1",
            reason="fraudulent",
            order_id=eid(),
        ),
        disputed_at=WHEN,
    )
    for change in CardAccountChange:
        emails += domain.card_account_changed(
            eid(),
            GROUP,
            [coordinator],
            change=change,
            problem=CardAccountProblem.CHARGES_DISABLED if change is CardAccountChange.BECAME_UNUSABLE else None,
            settings_url=SETTINGS_URL,
            changed_at=WHEN,
        )
    for method in (PaymentMethod.CHEQUE, PaymentMethod.CARD):
        emails += to_m(
            domain.line_undelivered,
            order_id=eid(),
            product=domain.Undelivered("Comté <AOP>", Decimal("0.375"), "kg", Decimal(0)),
            reason="Fromager <malade>",
            amount=TOTAL,
            new_total=Money.of(700, "EUR"),
            method=method,
            removed_at=WHEN,
            distribution=domain.Distribution(WHEN, "La grange"),
        )
    emails += to_m(domain.balance_reminder, balance=-TOTAL, since=WHEN, pending=Money.of(0, "EUR"))
    emails += to_m(
        domain.balance_digest, balance=-TOTAL, since=WHEN, now=WHEN + timedelta(days=14), pending=Money.of(0, "EUR")
    )
    emails += domain.webhook_disabled(
        eid(), WHEN, [(GROUP, coordinator)], url="https://example.org/hook", failing_since=WHEN, last_error="HTTP 503"
    )
    return emails


@pytest.mark.parametrize("language", ["fr", "en"])
def test_every_kind_renders_with_localised_amounts_and_dates(language: str) -> None:
    emails = every_email(language)
    assert {e.kind for e in emails} == set(Kind) - ACCOUNT_KINDS
    for email in emails:
        rendered = render(email)
        assert rendered.subject and "\n" not in rendered.subject
        assert GROUP.name in rendered.subject
        if email.kind not in NO_AMOUNT_KINDS:
            assert AMOUNTS[language] in rendered.text and AMOUNTS[language] in rendered.html, email.kind
        assert DATES[language] in rendered.text, email.kind
        # HTML is escaped, plain text is not.
        assert "Zoé &lt;b&gt;" in rendered.html and "<b>" not in rendered.html.replace("<body", "")
        assert "Les &lt;Paniers&gt; &amp; Co" in rendered.html and "Les <Paniers> & Co" in rendered.text
        assert f'<html lang="{language}">' in rendered.html


@pytest.mark.parametrize(
    ("language", "subject", "sentences"),
    [
        (
            "fr",
            "Produit non livré : Comté, 7,65\xa0€ de moins à payer - Les <Paniers> & Co",
            [
                "Comté : 0,375 kg non livré (il en reste 0,5 kg dans votre commande)",
                "Motif : fromager malade",
                "vous devez 7,65\xa0€ de moins",
                "Nouveau total de la commande : 7,00\xa0€",
            ],
        ),
        (
            "en",
            "Not delivered: Comté, €7.65 less to pay - Les <Paniers> & Co",
            [
                "Comté: 0.375 kg not delivered (0.5 kg of it is still in your order)",
                "Reason: fromager malade",
                "you owe €7.65 less",
                "New order total: €7.00",
            ],
        ),
    ],
)
def test_an_undelivered_product_names_it_the_reason_and_the_credit(
    language: str, subject: str, sentences: list[str]
) -> None:
    [email] = domain.line_undelivered(
        uuid.uuid4(),
        GROUP,
        member(language),
        order_id=uuid.uuid4(),
        product=domain.Undelivered("Comté", Decimal("0.375"), "kg", Decimal("0.5")),
        reason="fromager malade",
        amount=Money.of(765, "EUR"),
        new_total=Money.of(700, "EUR"),
        method=PaymentMethod.CHEQUE,
        removed_at=WHEN,
    )
    rendered = render(email)
    assert rendered.subject == subject
    for sentence in sentences:
        assert sentence in rendered.text, sentence
    assert "<del>Comté" in rendered.html


@pytest.mark.parametrize(
    ("language", "subject", "sentences"),
    [
        (
            "fr",
            "Webhook désactivé : https://example.org/all - Cagette",
            ["Bonjour,", "tous les groupes de la plateforme", "donnée comme contact", "Dernière erreur : HTTP 503"],
        ),
        (
            "en",
            "Webhook disabled: https://example.org/all - Cagette",
            ["Hello,", "every group of the platform", "given as its contact", "Last error: HTTP 503"],
        ),
    ],
)
def test_a_platform_endpoint_owner_is_told_in_their_language(language: str, subject: str, sentences: list[str]) -> None:
    owner = domain.platform_owner("ops@example.org", language, uuid.uuid4())
    [email] = domain.webhook_disabled(
        uuid.uuid4(), WHEN, [owner], url="https://example.org/all", failing_since=WHEN, last_error="HTTP 503"
    )
    assert email.recipient == "ops@example.org" and email.language == language
    rendered = render(email)
    assert rendered.subject == subject
    for sentence in sentences:
        assert sentence in rendered.text, sentence
    assert DATES[language] in rendered.text
    assert "coordinat" not in rendered.text and "coordinat" not in rendered.html  # not sent as a coordinator
    assert sentences[1] in rendered.html and f'<html lang="{language}">' in rendered.html


# The web service's links: no amount in them (tested below).
ACCOUNT_KINDS = {Kind.ACCOUNT_INVITATION, Kind.PASSWORD_RESET}
# About an endpoint or the group's card provider account, not money.
NO_AMOUNT_KINDS = {Kind.WEBHOOK_DISABLED, Kind.CARD_PAYMENTS_STOPPED, Kind.CARD_PAYMENTS_RESUMED}
SETTINGS_URL = "https://cagette.example.org/groups/g1/settings"


@pytest.mark.parametrize(
    ("language", "kind", "subject", "sentence"),
    [
        ("fr", Kind.ACCOUNT_INVITATION, "Invitation à rejoindre Les <Paniers> & Co sur Cagette", "choisissez un mot"),
        ("en", Kind.ACCOUNT_INVITATION, "You are invited to Les <Paniers> & Co on Cagette", "choose a password"),
        ("fr", Kind.PASSWORD_RESET, "Choisissez un nouveau mot de passe Cagette", "réinitialiser le mot de passe"),
        ("en", Kind.PASSWORD_RESET, "Choose a new Cagette password", "reset the password"),
    ],
)
def test_invitation_and_reset_links_render_in_each_language(
    language: str, kind: Kind, subject: str, sentence: str
) -> None:
    link = "https://cagette.example/set-password?token=abc&x=<1>"
    [email] = domain.account_link(kind, uuid.uuid4(), GROUP, member(language), link=link, expires_at=WHEN)
    rendered = render(email)
    assert rendered.subject == subject
    assert sentence in rendered.text and link in rendered.text
    assert "token=abc&amp;x=&lt;1&gt;" in rendered.html and "2026" in rendered.text
    assert f'<html lang="{language}">' in rendered.html


def test_instructions_by_method_in_french() -> None:
    texts = {
        e.facts["instructions"].method: render(e).text  # type: ignore[union-attr]  # instructions are present for these kinds
        for e in every_email("fr")
        if e.kind == Kind.ORDER_CONFIRMED
    }
    assert f"Référence à écrire au dos du chèque : {REF}" in texts[PaymentMethod.CHEQUE]
    assert "À l'ordre de : Trésorerie AMAP" in texts[PaymentMethod.CHEQUE]
    assert f"IBAN : {IBAN}" in texts[PaymentMethod.TRANSFER] and "BIC : AGRIFRPP" in texts[PaymentMethod.TRANSFER]
    assert f"libellé du virement : {REF}" in texts[PaymentMethod.TRANSFER]
    assert "Apportez 12,55\xa0€ lors de la distribution" in texts[PaymentMethod.CASH]
    assert "Apportez 12,55\xa0€ lors de la distribution" in texts[PaymentMethod.ON_THE_SPOT]
    assert "Votre solde après cette commande : -3,00\xa0€" in texts[PaymentMethod.MONEY_POT]
    assert "Oeufs : 2 x 3,20\xa0€ = 6,40\xa0€" in texts[PaymentMethod.CARD]
    assert "Pain : 1,5 x 4,10\xa0€ = 6,15\xa0€" in texts[PaymentMethod.CARD]


def test_card_amendment_and_digest_in_english() -> None:
    by_kind = {e.kind: render(e) for e in every_email("en") if e.kind in (Kind.ORDER_AMENDED, Kind.BALANCE_DIGEST)}
    amended = by_kind[Kind.ORDER_AMENDED]
    assert "Finish paying here: https://pay.example.org/r" in amended.text
    assert 'href="https://pay.example.org/r"' in amended.html and "New order total: €25.10" in amended.text
    digest = by_kind[Kind.BALANCE_DIGEST]
    assert "negative since November 28, 2026, 14 days" in digest.text and "-€12.55" in digest.subject


def test_smtp_errors_split_into_permanent_and_transient() -> None:
    refused = aiosmtplib.SMTPRecipientsRefused([aiosmtplib.SMTPRecipientRefused(550, "no such user", "x@example.org")])
    assert classify(refused).permanent
    busy = aiosmtplib.SMTPRecipientsRefused([aiosmtplib.SMTPRecipientRefused(450, "mailbox busy", "x@example.org")])
    assert not classify(busy).permanent
    assert classify(aiosmtplib.SMTPDataError(554, "rejected as spam")).permanent
    assert not classify(aiosmtplib.SMTPDataError(451, "try later")).permanent
    assert not classify(aiosmtplib.SMTPAuthenticationError(535, "bad credentials")).permanent
    assert not classify(aiosmtplib.SMTPConnectError("connection refused")).permanent
    assert not classify(ConnectionRefusedError()).permanent


def test_reminder_counts_pending_payments() -> None:
    [email] = domain.balance_reminder(
        uuid.uuid4(), GROUP, member("fr"), balance=Money.of(-2000, "EUR"), since=WHEN, pending=Money.of(1255, "EUR")
    )
    rendered = render(email)
    assert rendered.subject.startswith("Votre solde est négatif : 7,45\xa0€ à régler")
    assert "Paiements annoncés pas encore reçus : 12,55\xa0€. Reste à régler : 7,45\xa0€." in rendered.text
    assert "un chèque de 7,45\xa0€ à l'ordre de Trésorerie AMAP" in rendered.text


def test_mime_message_has_both_parts_and_the_delivery_headers() -> None:
    from cagette_notifications.delivery import Claimed, message_id_for
    from cagette_notifications.smtp import build_message, sender_domain

    [email] = domain.balance_reminder(
        uuid.uuid4(), GROUP, member("fr"), balance=-TOTAL, since=WHEN, pending=Money.of(0, "EUR")
    )
    rendered = render(email)
    delivery_id = uuid.uuid4()
    sender = "AMAP <amap@lilas.example.org>"
    claimed = Claimed(
        delivery_id=delivery_id,
        source_event_id=email.source_event_id,
        recipient=email.recipient,
        kind=email.kind.value,
        group_id=GROUP.group_id,
        member_id=email.member.member_id,
        subject=rendered.subject,
        text_body=rendered.text,
        html_body=rendered.html,
        message_id=message_id_for(delivery_id, sender_domain(sender)),
        correlation_id="c-1",
        attempts=1,
        lease_until=WHEN,
    )
    message = build_message(claimed, sender)
    assert message.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in message.iter_parts()] == ["text/plain", "text/html"]
    assert message["To"] == "zoe@example.org" and message["From"] == sender
    assert message["Subject"] == rendered.subject and message["Message-ID"] == f"<{delivery_id}@lilas.example.org>"
    assert (
        message["X-Cagette-Event-Id"] == str(email.source_event_id) and message["X-Cagette-Kind"] == "balance_reminder"
    )
    assert message.get_body(preferencelist=("plain",)).get_content() == rendered.text


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        (
            "fr",
            [
                "Paiement par carte contesté : 12,55\xa0€ payés par Paul - Les <Paniers> & Co",
                "- Adhérent : Paul (paul@example.org)",
                "- Montant contesté : 12,55\xa0€",
                "confirmée le 28 novembre 2026, total 25,10\xa0€",
                "(chez le prestataire : pi_9)",
                "- Litige : dp_9 (statut : needs_response)",
                "- Motif indiqué : product_not_received",
                "tableau de bord du prestataire de paiement par carte (Stripe), litige dp_9",
            ],
        ),
        (
            "en",
            [
                "Card payment disputed: €12.55 paid by Paul - Les <Paniers> & Co",
                "- Member: Paul (paul@example.org)",
                "- Amount disputed: €12.55",
                "confirmed on November 28, 2026, total €25.10",
                "(at the card provider: pi_9)",
                "- Dispute: dp_9 (status: needs_response)",
                "- Reason given: product_not_received",
                "answer the dispute in the card provider's dashboard (Stripe), dispute dp_9",
            ],
        ),
    ],
)
def test_dispute_email_says_who_what_which_order_why_and_where_to_answer(language: str, expected: list[str]) -> None:
    payer = Member(GROUP.group_id, uuid.uuid4(), "Paul", "paul@example.org", "fr", role="member")
    coordinator = Member(GROUP.group_id, uuid.uuid4(), "Cora", "cora@example.org", language, role="coordinator")
    order_id, payment_id = uuid.uuid4(), uuid.uuid4()
    [email] = domain.card_payment_disputed(
        uuid.uuid4(),
        GROUP,
        [coordinator],
        payer=payer,
        dispute=domain.Dispute(
            payment_id=payment_id,
            amount=TOTAL,
            dispute_id="dp_9",
            provider_payment_id="pi_9",
            reason="product_not_received",
            status="needs_response",
        ),
        disputed_at=WHEN,
        order=domain.KnownOrder(order_id, Money.of(2510, "EUR"), WHEN),
    )
    rendered = render(email)
    whole = rendered.subject + "\n" + rendered.text
    for fragment in expected:
        assert fragment in whole, fragment
    assert str(order_id) in rendered.text and str(payment_id) in rendered.text
    assert str(order_id) in rendered.html and "product_not_received" in rendered.html and "dp_9" in rendered.html
    # Without a reason (nor status), no empty "reason" line.
    [bare] = domain.card_payment_disputed(
        uuid.uuid4(),
        GROUP,
        [coordinator],
        payer=payer,
        dispute=domain.Dispute(
            payment_id=payment_id, amount=TOTAL, dispute_id="dp_9", provider_payment_id="pi_9", order_id=order_id
        ),
        disputed_at=WHEN,
    )
    text = render(bare).text
    assert "Motif" not in text and "Reason" not in text and "statut" not in text and "status:" not in text
    # An order notifications never saw confirmed: its id, nothing made up.
    assert {"fr": f"- Commande : {order_id}\n", "en": f"- Order: {order_id}\n"}[language] in text


def test_dates_are_in_the_group_s_time_zone() -> None:
    """The same distribution (17:00 UTC) reads 18:00 for a group in Paris, 12:00 for one in
    Montreal, whose confirmation day (01:30 UTC) is still the day before."""
    where = domain.Distribution(datetime(2026, 12, 1, 17, 0, tzinfo=UTC), "Salle paroissiale")
    texts = {}
    for zone in ("Europe/Paris", "America/Montreal"):
        group = Group(uuid.uuid4(), "AMAP", "EUR", "fr", "AMAP", time_zone=zone)
        instructions = domain.instructions_for(group, PaymentMethod.CHEQUE, TOTAL)
        [email] = domain.order_confirmed(
            uuid.uuid4(),
            group,
            Member(group.group_id, uuid.uuid4(), "Alice", "alice@example.org", "fr"),
            order=domain.KnownOrder(uuid.uuid4(), TOTAL, datetime(2026, 11, 2, 1, 30, tzinfo=UTC)),
            lines=lines(),
            instructions=instructions,
            distribution=where,
        )
        texts[zone] = render(email).text
    assert "Distribution : mardi 1er décembre à 18:00" in texts["Europe/Paris"]
    assert "(2 novembre 2026)" in texts["Europe/Paris"]
    assert "Distribution : mardi 1er décembre à 12:00" in texts["America/Montreal"]
    assert "(1er novembre 2026)" in texts["America/Montreal"]


def test_an_order_email_a_member_can_act_on() -> None:
    """Issue 14: the order email names its distribution (French ordinal for the 1st), each line
    shows its fee so the total adds up, "de" is elided before a vowel, and a card-paid order's
    subject says it is paid."""
    amap = Group(uuid.uuid4(), "AMAP des Lilas", "EUR", "fr", "AMAP des Lilas")
    cheese = OrderLine(
        product_name="Comté",
        quantity=Decimal("0.375"),
        unit_price=Money.of(1999, "EUR"),
        fee_rate=Decimal("0.02"),
        line_total=line_amount(Decimal("0.375"), Money.of(1999, "EUR"), Decimal("0.02")),
        unit="kg",
    )
    where = domain.Distribution(datetime(2026, 12, 1, 17, 0, tzinfo=UTC), "Préau de l'école")
    alice = Member(amap.group_id, uuid.uuid4(), "Alice", "alice@example.org", "fr")
    for method, subject in [
        (PaymentMethod.CHEQUE, "Commande confirmée : 7,65\xa0€ à régler par chèque - AMAP des Lilas"),
        (PaymentMethod.CARD, "Commande confirmée et payée : 7,65\xa0€ par carte - AMAP des Lilas"),
    ]:
        instructions = domain.instructions_for(amap, method, cheese.line_total, paid=True)
        [email] = domain.order_confirmed(
            uuid.uuid4(),
            amap,
            alice,
            order=domain.KnownOrder(uuid.uuid4(), cheese.line_total, datetime(2026, 11, 1, 9, tzinfo=UTC)),
            lines=[cheese],
            instructions=instructions,
            distribution=where,
        )
        rendered = render(email)
        assert rendered.subject == subject
        assert "Votre commande auprès d'AMAP des Lilas est confirmée (1er novembre 2026)." in rendered.text
        assert "Distribution : mardi 1er décembre à 18:00, Préau de l'école." in rendered.text
        assert "- Comté : 0,375 kg x 19,99\xa0€ + 2\xa0% de frais = 7,65\xa0€" in rendered.text
        assert '<td align="right">2\xa0%</td>' in rendered.html


STOPPED_WHY = {
    "fr": {
        CardAccountProblem.CHARGES_DISABLED: "son inscription auprès de Stripe n'est pas terminée",
        CardAccountProblem.CARD_PAYMENTS_INACTIVE: "la fonction « paiements par carte » du compte Stripe du groupe",
        CardAccountProblem.DEAUTHORIZED: "le compte Stripe du groupe a retiré à la plateforme son accès",
        CardAccountProblem.NOT_CHECKED: "Stripe ne nous a pas encore donné l'état du compte du groupe",
    },
    "en": {
        CardAccountProblem.CHARGES_DISABLED: "its onboarding is unfinished, or Stripe restricted the account",
        CardAccountProblem.CARD_PAYMENTS_INACTIVE: "capability of the group's Stripe account is not active",
        CardAccountProblem.DEAUTHORIZED: "the group's Stripe account revoked this platform's access to it",
        CardAccountProblem.NOT_CHECKED: "Stripe has not told us the state of the group's account yet",
    },
}
STOPPED_SAYS = {
    "fr": [
        "Paiements par carte arrêtés - Les <Paniers> & Co",
        "Bonjour Cora,",
        "Depuis le 28 novembre 2026, les membres des <Paniers> & Co ne peuvent plus payer par carte",
        f"ouvrez la page des réglages de paiement par carte du groupe ({SETTINGS_URL})",
    ],
    "en": [
        "Card payments stopped - Les <Paniers> & Co",
        "Hello Cora,",
        "Since November 28, 2026, members of Les <Paniers> & Co can no longer pay by card",
        f"open the group's card settings page ({SETTINGS_URL})",
    ],
}
FINISH_ONBOARDING = {"fr": "terminez l'inscription auprès de Stripe", "en": "finish Stripe onboarding"}
ONBOARD_AGAIN = {"fr": "refaites l'inscription auprès de Stripe", "en": "go through Stripe onboarding again"}


@pytest.mark.parametrize("language", ["fr", "en"])
@pytest.mark.parametrize("problem", list(CardAccountProblem))
def test_card_payments_stopped_says_which_group_why_in_words_and_what_to_do(
    language: str, problem: CardAccountProblem
) -> None:
    coordinator = Member(GROUP.group_id, uuid.uuid4(), "Cora", "cora@example.org", language, role="coordinator")
    member_only = Member(GROUP.group_id, uuid.uuid4(), "Paul", "paul@example.org", "fr", role="member")
    [email] = domain.card_account_changed(
        uuid.uuid4(),
        GROUP,
        [coordinator, member_only],
        change=CardAccountChange.BECAME_UNUSABLE,
        problem=problem,
        settings_url=SETTINGS_URL,
        changed_at=WHEN,
    )
    assert email.kind is Kind.CARD_PAYMENTS_STOPPED and email.recipient == "cora@example.org"
    rendered = render(email)
    whole = rendered.subject + "\n" + rendered.text
    for fragment in [*STOPPED_SAYS[language], STOPPED_WHY[language][problem]]:
        assert fragment in whole, fragment
    todo = ONBOARD_AGAIN if problem is CardAccountProblem.DEAUTHORIZED else FINISH_ONBOARDING
    assert todo[language] in rendered.text and todo[language] in rendered.html
    assert STOPPED_WHY[language][problem] in rendered.html  # fixed words: nothing of the event is in them
    assert f'href="{SETTINGS_URL}"' in rendered.html
    # Words, not codes nor ids.
    assert problem.value not in rendered.text and str(GROUP.group_id) not in rendered.text


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        ("fr", ["Paiements par carte ouverts - Les <Paniers> & Co", "les membres peuvent payer par carte"]),
        ("en", ["Card payments open - Les <Paniers> & Co", "members can pay by card"]),
    ],
)
def test_card_payments_resumed_renders_in_each_language(language: str, expected: list[str]) -> None:
    coordinator = Member(GROUP.group_id, uuid.uuid4(), "Cora", "cora@example.org", language, role="coordinator")
    [email] = domain.card_account_changed(
        uuid.uuid4(),
        GROUP,
        [coordinator],
        change=CardAccountChange.BECAME_USABLE,
        problem=None,
        settings_url=None,
        changed_at=WHEN,
    )
    rendered = render(email)
    assert email.kind is Kind.CARD_PAYMENTS_RESUMED
    for fragment in expected:
        assert fragment in rendered.subject + "\n" + rendered.text, fragment
    assert "()" not in rendered.text and "href" not in rendered.html  # no link given, none made up


def _subscription(language: str, distribution_count: int) -> domain.Email:
    return domain.subscription_amended(
        uuid.uuid4(),
        GROUP,
        member(language),
        subscription=domain.Subscription("Légumes", lines(), distribution_count),
        added_total=Money.of(1255 * distribution_count, "EUR"),
        new_total=Money.of(1255 * distribution_count, "EUR"),
        instructions=None,
        amended_at=WHEN,
    )[0]


@pytest.mark.parametrize(
    ("language", "count", "expected", "refused"),
    [
        ("fr", 1, ["x 1 distribution =", "Ajout à la distribution à venir :"], ["1 distributions", "chacune des 1"]),
        ("fr", 4, ["x 4 distributions =", "Ajout à chacune des 4 distributions à venir :"], []),
        ("en", 1, ["x 1 distribution =", "Added at the distribution to come:"], ["1 distributions", "each of the 1"]),
        ("en", 4, ["x 4 distributions =", "Added at each of the 4 distributions to come:"], []),
    ],
)
def test_counts_agree_with_their_noun_in_each_language(
    language: str, count: int, expected: list[str], refused: list[str]
) -> None:
    rendered = render(_subscription(language, count))
    for sentence in expected:
        assert sentence in rendered.text.replace("\xa0", " "), (language, count, sentence)
    assert expected[1] in rendered.html, (language, count)
    for text in (rendered.text, rendered.html):
        for wrong in refused:
            assert wrong not in text, (language, count, wrong)


@pytest.mark.parametrize(("language", "days", "expected"), [("fr", 1, "soit 1 jour)"), ("en", 1, ", 1 day)")])
def test_a_digest_one_day_negative_says_one_day(language: str, days: int, expected: str) -> None:
    digest = domain.balance_digest(
        uuid.uuid4(),
        GROUP,
        member(language),
        balance=-TOTAL,
        since=WHEN,
        now=WHEN + timedelta(days=days),
        pending=Money.of(0, "EUR"),
    )[0]
    assert expected in render(digest).text


def test_every_plural_key_the_templates_use_is_in_both_catalogs() -> None:
    used = {key for path in TEMPLATES.rglob("*.*") for key in re.findall(r'plural\("([\w.]+)"', path.read_text())}
    assert used, "the templates use plural()"
    for language in ("fr", "en"):
        path = LOCALE_DIR / language / "LC_MESSAGES" / "emails.po"
        with path.open("rb") as source:
            catalog = read_po(source, locale=language)
        plural_ids = {message.id[0] for message in catalog if message.id and isinstance(message.id, tuple)}
        assert used <= plural_ids, (language, used - plural_ids)
        assert all(all(form for form in message.string) for message in catalog if isinstance(message.id, tuple))


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("AMAP du Lac", "d'AMAP du Lac"),
        ("Halle des Lilas", "d'Halle des Lilas"),
        ("La Ferme", "de La Ferme"),
        ("Le Jardin", "du Jardin"),
        ("Les Paniers", "des Paniers"),
        ("Lesquin Bio", "de Lesquin Bio"),
    ],
)
def test_french_de_elides_and_contracts(name: str, expected: str) -> None:
    assert de(name) == expected
