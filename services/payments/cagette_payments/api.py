"""Payments HTTP API (its features arrive with issues 5 and 6)."""

from fastapi import APIRouter

router = APIRouter()
