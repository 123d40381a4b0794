"""A background loop stops when asked, even when a wake-up lands in the same instant as the stop
(Python 3.11's `asyncio.wait_for` returns the inner result and swallows the cancellation in that
race, which left a service's `stop()` waiting forever)."""

from __future__ import annotations

import asyncio

from cagette_runtime.background import BackgroundLoop


class Idle(BackgroundLoop):
    name = "idle"

    def __init__(self) -> None:
        super().__init__(interval=30)
        self.passes = 0

    async def run_once(self) -> bool:
        self.passes += 1
        return False


async def test_a_wake_up_racing_the_stop_does_not_keep_the_loop_running() -> None:
    for delay in range(300):
        loop = Idle()
        loop.start()
        await asyncio.sleep(0)  # the first pass runs and the loop waits for a wake-up
        loop.wake()
        for _ in range(delay % 3):
            await asyncio.sleep(0)  # let the wake-up complete the waiter, not yet the loop
        stopping = asyncio.create_task(loop.stop())
        done, _ = await asyncio.wait([stopping], timeout=2)
        assert done, f"the loop did not stop (wake-up {delay % 3} step(s) before the stop)"


async def test_a_wake_up_runs_another_pass_without_waiting_for_the_interval() -> None:
    loop = Idle()
    loop.start()
    try:
        await asyncio.sleep(0.01)
        loop.wake()
        async with asyncio.timeout(2):
            while loop.passes < 2:
                await asyncio.sleep(0.01)
    finally:
        await loop.stop()
