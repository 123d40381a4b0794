"""The pages people use, one module per area; `routers` lists them for the app."""

from __future__ import annotations

from fastapi import APIRouter

from . import balances, home, member

routers: list[APIRouter] = [home.router, balances.router, member.router]
