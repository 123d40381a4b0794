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
