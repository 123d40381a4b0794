"""Fixtures every test suite shares: the real servers, isolated per test run."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from cagette_runtime.devstack import ServerUnreachable
from cagette_runtime.testing import IsolatedServers, isolated_servers


@pytest.fixture(scope="session")
async def servers() -> AsyncIterator[IsolatedServers]:
    try:
        async with isolated_servers() as found:
            yield found
    except ServerUnreachable as exc:
        pytest.fail(str(exc), pytrace=False)
