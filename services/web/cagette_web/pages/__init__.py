"""The pages people use, one module per area; `routers` lists them for the app."""

from __future__ import annotations

from fastapi import APIRouter

from . import accounts, balances, contracts, distributions, home, member, settings, statements

routers: list[APIRouter] = [
    home.router,
    balances.router,
    accounts.router,
    contracts.router,
    distributions.router,
    member.router,
    settings.router,
    statements.router,
]
