"""With its database down, orders answers 503 with Retry-After (never a 500 with a traceback)
and changes nothing; once the database is back it answers as before."""

from __future__ import annotations

import uuid

import httpx

from cagette_orders.app import build_service
from cagette_runtime.testing import KEYED, IsolatedServers, Outage

from .conftest import OrdersEnv, make_group


async def test_with_its_database_down_orders_answers_503_with_retry_after(
    env: OrdersEnv, servers: IsolatedServers
) -> None:
    group = await make_group(env)
    vhost = await servers.create_vhost(f"orders-outage-{uuid.uuid4().hex[:6]}")
    async with Outage(env.settings.database_url) as database:
        settings = env.settings.model_copy(update={"database_url": database.url, "amqp_url": vhost})
        service = build_service(settings)
        app = service.create_app()
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://orders", **KEYED
            ) as client:
                read = f"/groups/{group.group_id}"
                assert (await client.get(read, headers=group.coordinator)).status_code == 200
                newcomer = {"member_id": str(uuid.uuid4()), "role": "member", "name": "Zoé", "email": "zoe@example.org"}
                await database.down()
                for answer in (
                    await client.get(read, headers=group.coordinator),
                    await client.post(f"{read}/members", json=newcomer, headers=group.coordinator),
                ):
                    assert answer.status_code == 503, answer.text
                    assert answer.headers["Retry-After"] == "5"
                    assert answer.json()["error"] == "unavailable"
                await database.up()
                assert (await client.get(read, headers=group.coordinator)).status_code == 200
    members = await env.client.get(f"{read}/members", headers=group.coordinator)
    assert newcomer["member_id"] not in {m["member_id"] for m in members.json()}
