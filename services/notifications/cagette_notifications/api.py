"""Notifications HTTP API (its features arrive with issue 7)."""

from fastapi import APIRouter

router = APIRouter()
