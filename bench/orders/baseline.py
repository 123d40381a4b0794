"""The bare baseline HTTP order placement is measured against: one FastAPI endpoint that checks a
small JSON body and does one asyncpg INSERT, served by uvicorn like the services. No auth, no
outbox, no broker: the floor of what answering "201 Created" for an order costs on this machine.

Run by run.py as a subprocess: python baseline.py POSTGRES_DSN PORT
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import uvicorn
from fastapi import FastAPI, Request
from pydantic import BaseModel


class Line(BaseModel):
    product_id: uuid.UUID
    quantity: str


class PlaceOrder(BaseModel):
    distribution_id: uuid.UUID
    payment_method: str
    lines: list[Line]


def build(dsn: str) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.pool = await asyncpg.create_pool(dsn, min_size=4, max_size=4)
        await app.state.pool.execute(
            "CREATE TABLE IF NOT EXISTS baseline_orders (order_id uuid PRIMARY KEY, group_id uuid NOT NULL,"
            " distribution_id uuid NOT NULL, payment_method text NOT NULL, lines int NOT NULL,"
            " created_at timestamptz NOT NULL DEFAULT now())"
        )
        yield
        await app.state.pool.close()

    app = FastAPI(lifespan=lifespan)

    @app.post("/groups/{group_id}/orders", status_code=201)
    async def place(group_id: uuid.UUID, body: PlaceOrder, request: Request) -> dict[str, str]:
        order_id = uuid.uuid4()
        await request.app.state.pool.execute(
            "INSERT INTO baseline_orders (order_id, group_id, distribution_id, payment_method, lines)"
            " VALUES ($1, $2, $3, $4, $5)",
            order_id,
            group_id,
            body.distribution_id,
            body.payment_method,
            len(body.lines),
        )
        return {"order_id": str(order_id)}

    @app.get("/ready")
    async def ready() -> dict[str, str]:
        return {"status": "ready"}

    return app


if __name__ == "__main__":
    uvicorn.run(build(sys.argv[1]), host="127.0.0.1", port=int(sys.argv[2]), log_level="warning", access_log=False)
