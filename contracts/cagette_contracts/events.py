"""Every event contract, importable from one place. Each service's events live in the module
named after it (orders, ledger, payments, notifications); shared value types in common.

The exports are spelled out (not star re-exports) so type checkers and readers see every name."""

from .bank import (
    BankLineMatched,
    BankLineToReview,
    BankStatementImported,
)
from .common import (
    Language,
    Part,
    PaymentMethod,
    PositiveQuantity,
    Role,
)
from .ledger import (
    AccountType,
    BalanceBackToNonNegative,
    BalanceChanged,
    BalanceWentNegative,
    HoldDecision,
    HoldReleased,
    PlaceHold,
    PostingLine,
    ReleaseHold,
    TransactionPosted,
)
from .notifications import (
    EmailFailed,
    EmailSent,
)
from .orders import (
    GroupSettingsChanged,
    MemberJoined,
    MemberLeft,
    MemberUpdated,
    OrderAmended,
    OrderAwaitingPayment,
    OrderConfirmed,
    OrderLine,
    SubscriptionAmended,
    SubscriptionConfirmed,
)
from .payments import (
    BasketUnvalidated,
    BasketValidated,
    CardDisputeFundsReinstated,
    CardDisputeFundsWithdrawn,
    CardDisputeUpdated,
    CardFeeCharged,
    CardPaymentDisputed,
    CardPaymentFailed,
    CardPaymentSucceeded,
    CardSettingsChanged,
    PaymentCancelled,
    PaymentDeclared,
    PaymentReceived,
    PaymentRefunded,
)
from .web import (
    InvitationCreated,
    PasswordResetRequested,
)

__all__ = [
    "AccountType",
    "BalanceBackToNonNegative",
    "BalanceChanged",
    "BalanceWentNegative",
    "BankLineMatched",
    "BankLineToReview",
    "BankStatementImported",
    "BasketUnvalidated",
    "BasketValidated",
    "CardDisputeFundsReinstated",
    "CardDisputeFundsWithdrawn",
    "CardDisputeUpdated",
    "CardFeeCharged",
    "CardPaymentDisputed",
    "CardPaymentFailed",
    "CardPaymentSucceeded",
    "CardSettingsChanged",
    "EmailFailed",
    "EmailSent",
    "GroupSettingsChanged",
    "HoldDecision",
    "HoldReleased",
    "InvitationCreated",
    "Language",
    "MemberJoined",
    "MemberLeft",
    "MemberUpdated",
    "OrderAmended",
    "OrderAwaitingPayment",
    "OrderConfirmed",
    "OrderLine",
    "Part",
    "PaymentCancelled",
    "PaymentDeclared",
    "PaymentMethod",
    "PasswordResetRequested",
    "PaymentReceived",
    "PaymentRefunded",
    "PlaceHold",
    "PositiveQuantity",
    "PostingLine",
    "ReleaseHold",
    "Role",
    "SubscriptionAmended",
    "SubscriptionConfirmed",
    "TransactionPosted",
]
