"""The ledger audit: per group and currency, re-derives every invariant from the stored rows.

1. every transaction balances (>= 2 postings summing to zero, all on accounts of its group and
   in its currency);
2. the trial balance is zero (the stored balances of all the group's accounts sum to zero);
3. each account's stored balance equals the sum of its postings;
4. each posting's running balance equals the sum of the account's postings up to it;
5. each reversal exactly negates the transaction it points at.

`python -m cagette_ledger audit` prints what it checked and exits 1 on any breach;
`GET /admin/audit` returns the same report to a platform administrator.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from cagette_runtime.db import AnyRow

BREACH_SAMPLE = 20


@dataclass
class Check:
    name: str
    checked: int = 0
    breaches: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.breaches


@dataclass
class Scope:
    group_id: UUID
    currency: str
    checks: dict[str, Check] = field(default_factory=dict)

    def check(self, name: str) -> Check:
        return self.checks.setdefault(name, Check(name))

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks.values())


@dataclass
class AuditReport:
    scopes: list[Scope]

    @property
    def ok(self) -> bool:
        return all(scope.ok for scope in self.scopes)

    @property
    def breaches(self) -> list[str]:
        return [
            f"group {s.group_id} {s.currency}: {c.name}: {b}"
            for s in self.scopes
            for c in s.checks.values()
            for b in c.breaches
        ]

    def lines(self) -> list[str]:
        out = []
        for scope in self.scopes:
            out.append(f"group {scope.group_id} ({scope.currency}): {'OK' if scope.ok else 'BREACH'}")
            for check in scope.checks.values():
                out.append(
                    f"  {'ok    ' if check.ok else 'BREACH'} {check.name}: {check.checked} checked"
                    + (f", {len(check.breaches)} breach(es)" if check.breaches else "")
                )
                for breach in check.breaches[:BREACH_SAMPLE]:
                    out.append(f"         - {breach}")
        total = sum(c.checked for s in self.scopes for c in s.checks.values())
        out.append(
            f"audit {'passed' if self.ok else 'FAILED'}: {len(self.scopes)} group/currency scope(s), "
            f"{total} item(s) checked, {len(self.breaches)} breach(es)"
        )
        return out

    def as_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "scopes": [
                {
                    "group_id": str(s.group_id),
                    "currency": s.currency,
                    "ok": s.ok,
                    "checks": [
                        {"name": c.name, "checked": c.checked, "ok": c.ok, "breaches": c.breaches[:BREACH_SAMPLE]}
                        for c in s.checks.values()
                    ],
                }
                for s in self.scopes
            ],
        }


TRANSACTIONS_BALANCE = "every transaction balances"
TRIAL_BALANCE = "trial balance is zero"
STORED_BALANCES = "stored balance = sum of postings"
RUNNING_BALANCES = "running balances consistent"
REVERSALS = "reversals negate what they reverse"

_SCOPES = """
SELECT group_id, currency FROM accounts WHERE (CAST(:group_id AS uuid) IS NULL OR group_id = :group_id)
UNION SELECT group_id, currency FROM transactions WHERE (CAST(:group_id AS uuid) IS NULL OR group_id = :group_id)
ORDER BY 1, 2
"""

_TRANSACTIONS = """
SELECT t.group_id, t.currency, t.transaction_id, count(p.posting_id) AS n, coalesce(sum(p.amount), 0) AS total,
       count(*) FILTER (WHERE p.currency <> t.currency OR a.currency <> t.currency
                           OR a.group_id <> t.group_id) AS foreign
  FROM transactions t
  LEFT JOIN postings p ON p.transaction_id = t.transaction_id
  LEFT JOIN accounts a ON a.account_id = p.account_id
 WHERE (CAST(:group_id AS uuid) IS NULL OR t.group_id = :group_id)
 GROUP BY t.group_id, t.currency, t.transaction_id
"""

_TRIAL = """
SELECT group_id, currency, count(*) AS accounts, sum(balance) AS total
  FROM accounts WHERE (CAST(:group_id AS uuid) IS NULL OR group_id = :group_id)
 GROUP BY group_id, currency
"""

_STORED = """
SELECT a.group_id, a.currency, a.account_id, a.type, a.member_id, a.balance,
       coalesce(sum(p.amount), 0) AS summed,
       (SELECT p2.balance_after FROM postings p2 WHERE p2.account_id = a.account_id
         ORDER BY p2.posting_id DESC LIMIT 1) AS last_running
  FROM accounts a LEFT JOIN postings p ON p.account_id = a.account_id
 WHERE (CAST(:group_id AS uuid) IS NULL OR a.group_id = :group_id)
 GROUP BY a.account_id
"""

_RUNNING = """
SELECT a.group_id, a.currency, count(*) AS postings,
       count(*) FILTER (WHERE w.balance_after <> w.cumulative) AS wrong,
       (array_agg(w.posting_id ORDER BY w.posting_id) FILTER (WHERE w.balance_after <> w.cumulative))[1:20] AS sample
  FROM (SELECT p.posting_id, p.account_id, p.balance_after,
               sum(p.amount) OVER (PARTITION BY p.account_id ORDER BY p.posting_id) AS cumulative
          FROM postings p) w
  JOIN accounts a ON a.account_id = w.account_id
 WHERE (CAST(:group_id AS uuid) IS NULL OR a.group_id = :group_id)
 GROUP BY a.group_id, a.currency
"""

_REVERSALS = """
SELECT r.group_id, r.currency, r.transaction_id,
       (SELECT count(*) FROM (
          SELECT p.account_id FROM postings p
           WHERE p.transaction_id IN (r.transaction_id, r.reverses_transaction_id)
           GROUP BY p.account_id HAVING sum(p.amount) <> 0) x) AS unmatched,
       (SELECT count(*) FROM postings p WHERE p.transaction_id = r.transaction_id) AS n_reversal,
       (SELECT count(*) FROM postings p WHERE p.transaction_id = r.reverses_transaction_id) AS n_original
  FROM transactions r
 WHERE r.reverses_transaction_id IS NOT NULL AND (CAST(:group_id AS uuid) IS NULL OR r.group_id = :group_id)
"""


async def run_audit(session: AsyncSession, group_id: UUID | None = None) -> AuditReport:
    """Audit every group (or one), in one consistent snapshot when `session` is REPEATABLE READ."""
    params = {"group_id": group_id}
    scopes: dict[tuple[UUID, str], Scope] = {}
    for row in (await session.execute(text(_SCOPES), params)).all():
        scope = scopes[(row.group_id, row.currency)] = Scope(row.group_id, row.currency)
        for name in (TRANSACTIONS_BALANCE, TRIAL_BALANCE, STORED_BALANCES, RUNNING_BALANCES, REVERSALS):
            scope.check(name)

    def scope_of(row: AnyRow) -> Scope:
        key = (row.group_id, row.currency)
        if key not in scopes:
            scopes[key] = Scope(row.group_id, row.currency)
        return scopes[key]

    for row in (await session.execute(text(_TRANSACTIONS), params)).all():
        check = scope_of(row).check(TRANSACTIONS_BALANCE)
        check.checked += 1
        if row.n < 2 or row.total != 0 or row.foreign:
            check.breaches.append(
                f"transaction {row.transaction_id}: {row.n} posting(s) summing to {row.total}, {row.foreign} foreign"
            )
    for row in (await session.execute(text(_TRIAL), params)).all():
        check = scope_of(row).check(TRIAL_BALANCE)
        check.checked += row.accounts
        if row.total != 0:
            check.breaches.append(f"balances of {row.accounts} accounts sum to {row.total}, not 0")
    for row in (await session.execute(text(_STORED), params)).all():
        check = scope_of(row).check(STORED_BALANCES)
        check.checked += 1
        owner = f"{row.type}" + (f" of member {row.member_id}" if row.member_id else "")
        if row.balance != row.summed:
            check.breaches.append(
                f"account {row.account_id} ({owner}): stored {row.balance}, postings sum {row.summed}"
            )
        elif row.last_running is not None and row.last_running != row.balance:
            check.breaches.append(
                f"account {row.account_id} ({owner}): stored {row.balance}, last running balance {row.last_running}"
            )
    for row in (await session.execute(text(_RUNNING), params)).all():
        check = scope_of(row).check(RUNNING_BALANCES)
        check.checked += row.postings
        if row.wrong:
            check.breaches.append(f"{row.wrong} posting(s) with a wrong running balance, e.g. {list(row.sample)}")
    for row in (await session.execute(text(_REVERSALS), params)).all():
        check = scope_of(row).check(REVERSALS)
        check.checked += 1
        if row.unmatched or row.n_reversal != row.n_original:
            check.breaches.append(f"reversal {row.transaction_id} does not exactly negate what it reverses")
    return AuditReport(sorted(scopes.values(), key=lambda s: (str(s.group_id), s.currency)))


async def audit_database(database_url: str, group_id: UUID | None = None) -> AuditReport:
    from cagette_runtime.db import Database

    database = Database(database_url, pool_size=1)
    try:
        async with database.engine.connect() as connection:
            connection = await connection.execution_options(isolation_level="REPEATABLE READ")
            async with connection.begin():
                session = AsyncSession(bind=connection)
                return await run_audit(session, group_id)
    finally:
        await database.dispose()
