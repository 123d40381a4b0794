"""Counting failures per client address in fixed windows, to answer 429 once a client has failed
too often (bad bearer tokens, failed sign-ins).

With `rate_limit_redis_url` set, the counters live in Redis, so every replica of a service sees
the same count; without it they live in the process (one replica, tests). Redis being down never
locks anybody out: the limiter then lets the attempt through and logs it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from redis.asyncio import Redis
from redis.exceptions import RedisError

from .errors import Refused

log = logging.getLogger(__name__)


class TooManyAttempts(Refused):
    status_code = 429
    code = "too_many_attempts"

    def __init__(self, reason: str, *, retry_after: int) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


@dataclass
class FailureLimiter:
    """At most `limit` failures per `window` seconds per client key, under `namespace`."""

    namespace: str
    limit: int
    window: int
    redis_url: str | None = None
    _local: dict[tuple[str, int], int] = field(default_factory=dict)
    _redis: Redis | None = None

    def __post_init__(self) -> None:
        if self.redis_url:
            self._redis = Redis.from_url(self.redis_url, socket_timeout=0.5, socket_connect_timeout=0.5)

    def _slot(self, client: str) -> tuple[str, int, int]:
        now = int(time.time())
        slot = now // self.window
        retry_after = (slot + 1) * self.window - now
        return f"cagette:ratelimit:{self.namespace}:{client}:{slot}", slot, max(retry_after, 1)

    async def _count(self, client: str, *, add: int) -> tuple[int, int]:
        key, slot, retry_after = self._slot(client)
        if self._redis is not None:
            try:
                if add:
                    async with self._redis.pipeline(transaction=True) as pipe:
                        pipe.incrby(key, add)
                        pipe.expire(key, self.window + 1)
                        count, _ = await pipe.execute()
                else:
                    count = int(await self._redis.get(key) or 0)
                return int(count), retry_after
            except (RedisError, OSError) as exc:
                log.warning("rate limiter: redis unavailable (%s); not limiting", type(exc).__name__)
                return 0, retry_after
        # Local counters: drop the windows that are over so the map stays small.
        for stale in [k for k in self._local if k[1] < slot]:
            del self._local[stale]
        count = self._local.get((client, slot), 0) + add
        if add:
            self._local[(client, slot)] = count
        return count, retry_after

    async def check(self, client: str) -> None:
        """Refuse with 429 when `client` has already failed `limit` times in this window."""
        count, retry_after = await self._count(client, add=0)
        if count >= self.limit:
            raise TooManyAttempts(
                f"too many failed attempts from this address; try again in {retry_after} s", retry_after=retry_after
            )

    async def failed(self, client: str) -> None:
        """Count one failure of `client`."""
        await self._count(client, add=1)

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
