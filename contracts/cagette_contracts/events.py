"""Every event contract, importable from one place. Each service's events live in the module
named after it (orders, ledger, payments, notifications); shared value types in common."""

from .common import *  # noqa: F403
from .ledger import *  # noqa: F403
from .orders import *  # noqa: F403
from .notifications import *  # noqa: F403
from .payments import *  # noqa: F403
from . import common, ledger, notifications, orders, payments

__all__ = [*common.__all__, *ledger.__all__, *notifications.__all__, *orders.__all__, *payments.__all__]
