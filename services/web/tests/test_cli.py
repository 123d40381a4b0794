"""The operator's commands, run as an operator runs them: the first administrator, a machine
client created then revoked, a new signing key."""

from __future__ import annotations

import asyncio
import os
import re
import sys

from cagette_web.settings import WebSettings


async def run(settings: WebSettings, *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cagette_web",
        *args,
        env={
            **os.environ,
            "CAGETTE_DATABASE_URL": settings.database_url,
            "CAGETTE_AMQP_URL": settings.amqp_url,
            "CAGETTE_WEB_SIGNING_KEYS_DIR": settings.web_signing_keys_dir,
            "CAGETTE_WEB_PUBLIC_URL": settings.web_public_url,
        },
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    return process.returncode or 0, out.decode(), err.decode()


async def test_operator_commands(web_settings: WebSettings, service, app) -> None:
    code, out, _ = await run(web_settings, "create-admin", "--email", "ops@example.org", "--name", "Ops")
    assert code == 0 and re.search(r"http://web\.test/set-password\?token=[\w-]+", out), out

    code, out, _ = await run(web_settings, "create-client", "--name", "export", "--scope", "admin", "--days", "1")
    assert code == 0, out
    credentials = re.search(r"client_id=(\S+)\nclient_secret=(\S+)", out)
    assert credentials, out
    client_id, secret = credentials.groups()
    from .conftest import browser

    form = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}
    async with browser(app) as http:
        assert (await http.post("/oauth/token", data=form)).status_code == 200
        code, out, _ = await run(web_settings, "revoke-client", client_id)
        assert code == 0 and "revoked" in out
        assert (await http.post("/oauth/token", data=form)).status_code == 401

    code, out, err = await run(web_settings, "create-client", "--name", "bad", "--scope", "owner:everything")
    assert code == 2 and "scope item" in err

    before = len(service.keys.keys)
    code, out, _ = await run(web_settings, "new-signing-key", web_settings.web_signing_keys_dir)
    assert code == 0 and "new signing key" in out
    service.keys.reload()
    assert len(service.keys.keys) == before + 1
