"""What AMQP cannot do, through the broker's admin interfaces: policies and the list of queues.

Broker settings are RabbitMQ policies, so an operator changes them on a live broker.

A queue argument (x-delivery-limit, ...) is fixed when the queue is created: declaring the queue
again with another value fails with PRECONDITION_FAILED. A policy is not: RabbitMQ applies a
changed policy to the existing queue at once. So each consumer queue is declared with nothing
but its type, and its delivery limit, dead-letter route and overflow come from one policy per
queue, named `cagette.<queue>`, in the queue's vhost.

AMQP can neither set policies nor list queues; both go through the management HTTP API or, where
the broker runs on this machine without its management plugin (development, CI), `rabbitmqctl`.
`CAGETTE_BROKER_POLICIES` says which: `auto` (the API, else rabbitmqctl for a local broker, else
a warning naming the command to run), `management`, `rabbitmqctl`, or `off` when the platform
manages policies itself (e.g. the Messaging Topology Operator's Policy resources).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import shutil
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote

import httpx
from yarl import URL

log = logging.getLogger(__name__)

POLICY_PREFIX = "cagette."
# Above 0 so an operator's catch-all policy (priority 0) does not replace ours.
POLICY_PRIORITY = 10
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
POLICY_MODES = ("auto", "management", "rabbitmqctl", "off")


class PolicyNotApplied(RuntimeError):
    pass


@dataclass(frozen=True)
class Policy:
    name: str
    pattern: str
    definition: dict[str, Any]
    apply_to: str = "queues"
    priority: int = POLICY_PRIORITY


def consumer_queue_policy(
    queue_name: str, *, delivery_limit: int, dead_letter_exchange: str, dead_letter_routing_key: str
) -> Policy:
    return Policy(
        name=f"{POLICY_PREFIX}{queue_name}",
        pattern=f"^{re.escape(queue_name)}$",
        definition={
            "delivery-limit": delivery_limit,
            "dead-letter-exchange": dead_letter_exchange,
            "dead-letter-routing-key": dead_letter_routing_key,
            # At-least-once dead-lettering needs reject-publish overflow (RabbitMQ >= 3.10).
            "dead-letter-strategy": "at-least-once",
            "overflow": "reject-publish",
        },
    )


@dataclass
class BrokerAdmin:
    """Applies policies in the vhost of `amqp_url`."""

    amqp_url: str
    mode: str = "auto"
    management_url: str = ""  # default: http://<broker host>:15672
    _applied: set[tuple[str, str, str]] = field(default_factory=set)

    def __post_init__(self) -> None:
        if self.mode not in POLICY_MODES:
            raise ValueError(f"broker policies mode must be one of {', '.join(POLICY_MODES)}, not {self.mode!r}")

    @property
    def vhost(self) -> str:
        path = URL(self.amqp_url).raw_path.lstrip("/")
        return unquote(path) or "/"

    def _api(self) -> str:
        parsed = URL(self.amqp_url)
        return (self.management_url or f"http://{parsed.host}:15672").rstrip("/")

    async def apply(self, *policies: Policy) -> None:
        """Set each policy (idempotent); PolicyNotApplied says why one could not be set."""
        for policy in policies:
            key = (self.vhost, policy.name, json.dumps(policy.definition, sort_keys=True))
            if self.mode == "off" or key in self._applied:
                continue
            await self._apply_one(policy)
            self._applied.add(key)
            log.info("broker policy %s set in vhost %s: %s", policy.name, self.vhost, policy.definition)

    async def _apply_one(self, policy: Policy) -> None:
        body = {"pattern": policy.pattern, "definition": policy.definition, "apply-to": policy.apply_to}
        if await self._backend() == "management":
            response = await self._management(
                "PUT", f"/{quote(policy.name, safe='')}", {**body, "priority": policy.priority}
            )
            if response.status_code >= 300:
                raise PolicyNotApplied(f"management API refused {policy.name}: {response.status_code} {response.text}")
            return
        await self._rabbitmqctl(
            "set_policy",
            "--priority",
            str(policy.priority),
            "--apply-to",
            policy.apply_to,
            policy.name,
            policy.pattern,
            json.dumps(policy.definition),
        )

    async def current(self) -> list[dict[str, Any]]:
        """The vhost's policies as the broker has them (name, pattern, definition, ...)."""
        if await self._backend() == "management":
            response = await self._management("GET", self._policies_path(), None)
            response.raise_for_status()
            return list(response.json())
        listed = json.loads(await self._rabbitmqctl("list_policies", "--formatter", "json") or "[]")
        for policy in listed:
            if isinstance(policy.get("definition"), str):
                policy["definition"] = json.loads(policy["definition"])
        return list(listed)

    async def _backend(self) -> str:
        if self.mode in ("management", "rabbitmqctl"):
            return self.mode
        try:
            await self._management("GET", self._policies_path(), None)
            return "management"
        except httpx.TransportError:
            pass
        if shutil.which("rabbitmqctl") and URL(self.amqp_url).host in LOOPBACK_HOSTS:
            return "rabbitmqctl"
        raise PolicyNotApplied(
            f"no management API at {self._api()} and no local rabbitmqctl: enable the management plugin, "
            "set CAGETTE_RABBITMQ_MANAGEMENT_URL, or apply the policies where rabbitmqctl reaches the broker "
            "(`cagette-ops policies apply`)"
        )

    async def queues(self) -> dict[str, int]:
        """Every queue of the vhost with its message count."""
        if await self._backend() == "management":
            response = await self._management("GET", f"/api/queues/{quote(self.vhost, safe='')}", None)
            response.raise_for_status()
            listed = response.json()
        else:
            listed = json.loads(
                await self._rabbitmqctl("list_queues", "name", "messages", "--formatter", "json") or "[]"
            )
        return {str(queue["name"]): int(queue.get("messages") or 0) for queue in listed}

    def _policies_path(self, name: str = "") -> str:
        path = f"/api/policies/{quote(self.vhost, safe='')}"
        return f"{path}/{quote(name, safe='')}" if name else path

    async def _management(self, method: str, path: str, body: dict[str, Any] | None) -> httpx.Response:
        parsed = URL(self.amqp_url)
        async with httpx.AsyncClient(auth=(parsed.user or "guest", parsed.password or "guest"), timeout=5) as client:
            return await client.request(method, f"{self._api()}{path}", json=body)

    async def _rabbitmqctl(self, *args: str) -> str:
        ctl = shutil.which("rabbitmqctl")
        if ctl is None:
            raise PolicyNotApplied("rabbitmqctl is not installed here")
        process = await asyncio.create_subprocess_exec(
            ctl,
            "-q",
            args[0],
            "-p",
            self.vhost,
            *args[1:],
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await process.communicate()
        if process.returncode != 0:
            raise PolicyNotApplied(f"rabbitmqctl {args[0]} failed: {(err or out).decode().strip()}")
        return out.decode()
