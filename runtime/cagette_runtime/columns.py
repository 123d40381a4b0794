"""Column groups that recur in every service's tables, declared once so that each keeps the same
types, nullability and defaults wherever it appears (each call makes new Column objects: a Column
belongs to one table).

A table splices a group into its column list: `Table("holds", metadata, ..., *money_columns(), ...)`.
Each group gives exactly the columns it was written out as before, so the schema (and the frozen
migrations that build it) is unchanged.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, Column, DateTime, Integer, String, Text, Uuid, func, text


def group_member_columns(*, primary_key: bool = False) -> list[Column[Any]]:
    """`group_id` and `member_id`: the member (of a group) a row is about; part of the primary
    key when `primary_key` (one row per member)."""
    if primary_key:
        return [Column("group_id", Uuid, primary_key=True), Column("member_id", Uuid, primary_key=True)]
    return [Column("group_id", Uuid, nullable=False), Column("member_id", Uuid, nullable=False)]


def basket_columns(*, primary_key: bool = False) -> list[Column[Any]]:
    """`group_id`, `distribution_id` and `member_id`: one member's basket for one distribution;
    the primary key when `primary_key` (one row per basket)."""
    if primary_key:
        return [Column(name, Uuid, primary_key=True) for name in ("group_id", "distribution_id", "member_id")]
    return [Column(name, Uuid, nullable=False) for name in ("group_id", "distribution_id", "member_id")]


def money_columns(amount: str = "amount") -> list[Column[Any]]:
    """An amount in minor units (BIGINT, never a float) and its currency (ISO 4217): the columns of
    a contracts Money."""
    return [Column(amount, BigInteger, nullable=False), Column("currency", String(3), nullable=False)]


def payment_instruction_columns() -> list[Column[Any]]:
    """What a group tells its members to pay by cheque or transfer (GroupSettingsChanged): NULL
    when it takes neither."""
    return [Column("cheque_payee", Text), Column("transfer_iban", Text), Column("transfer_bic", Text)]


def retry_columns() -> list[Column[Any]]:
    """The schedule of work retried with backoff (an outbox row, an email, a webhook, a job): how
    many tries so far, and when the next one is due (at once when written)."""
    return [
        Column("attempts", Integer, nullable=False, server_default=text("0")),
        Column("next_attempt_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    ]
