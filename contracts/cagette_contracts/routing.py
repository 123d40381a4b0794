"""Routing keys on the `cagette.events` topic exchange: `<service>.<entity>.<event>`."""

from typing import Final

EVENTS_EXCHANGE: Final = "cagette.events"

# orders
GROUP_SETTINGS_CHANGED: Final = "orders.group.settings_changed"
MEMBER_JOINED: Final = "orders.member.joined"
ORDER_CONFIRMED: Final = "orders.order.confirmed"

# ledger
TRANSACTION_POSTED: Final = "ledger.transaction.posted"
BALANCE_CHANGED: Final = "ledger.balance.changed"
BALANCE_WENT_NEGATIVE: Final = "ledger.balance.went_negative"
BALANCE_BACK_TO_NON_NEGATIVE: Final = "ledger.balance.back_to_non_negative"
MEMBER_UPDATED: Final = "orders.member.updated"
MEMBER_LEFT: Final = "orders.member.left"
ORDER_AMENDED: Final = "orders.order.amended"
ORDER_AWAITING_PAYMENT: Final = "orders.order.awaiting_payment"
ORDER_ABANDONED: Final = "orders.order.abandoned"
ORDER_LINE_UNDELIVERED: Final = "orders.order.line_undelivered"
SUBSCRIPTION_CONFIRMED: Final = "orders.subscription.confirmed"
SUBSCRIPTION_AMENDED: Final = "orders.subscription.amended"
CATALOG_CREATED: Final = "orders.catalog.created"
PRODUCT_CREATED: Final = "orders.product.created"
DISTRIBUTION_CREATED: Final = "orders.distribution.created"

# payments
PAYMENT_DECLARED: Final = "payments.payment.declared"
PAYMENT_RECEIVED: Final = "payments.payment.received"
PAYMENT_CANCELLED: Final = "payments.payment.cancelled"
PAYMENT_REFUNDED: Final = "payments.payment.refunded"
PAYMENT_REVERSED: Final = "payments.payment.reversed"
CARD_PAYMENT_SUCCEEDED: Final = "payments.card_payment.succeeded"
CARD_PAYMENT_FAILED: Final = "payments.card_payment.failed"
CARD_PAYMENT_DISPUTED: Final = "payments.card_payment.disputed"
CARD_FEE_CHARGED: Final = "payments.card_fee.charged"
CARD_DISPUTE_UPDATED: Final = "payments.card_dispute.updated"
CARD_DISPUTE_FUNDS_WITHDRAWN: Final = "payments.card_dispute.funds_withdrawn"
CARD_DISPUTE_FUNDS_REINSTATED: Final = "payments.card_dispute.funds_reinstated"
BASKET_VALIDATED: Final = "payments.basket.validated"
BASKET_UNVALIDATED: Final = "payments.basket.unvalidated"
CARD_SETTINGS_CHANGED: Final = "payments.card_settings.changed"
BANK_STATEMENT_IMPORTED: Final = "payments.bank_statement.imported"
BANK_LINE_MATCHED: Final = "payments.bank_line.matched"
BANK_LINE_TO_REVIEW: Final = "payments.bank_line.to_review"

# web (identity)
INVITATION_CREATED: Final = "web.invitation.created"
PASSWORD_RESET_REQUESTED: Final = "web.password_reset.requested"

# notifications (for operators)
EMAIL_SENT: Final = "notifications.email.sent"
EMAIL_FAILED: Final = "notifications.email.failed"

# ledger request/reply (not on the events exchange): money-pot holds, sent to this queue with
# reply_to set; the answer is a HoldDecision.
LEDGER_HOLD_REQUESTS_QUEUE: Final = "ledger.hold-requests"
# Releases of holds whose order was not recorded after all (ReleaseHold -> HoldReleased).
LEDGER_HOLD_RELEASES_QUEUE: Final = "ledger.hold-releases"
