"""`python -m cagette_web serve|migrate` like every service, plus the operator's commands:

create-admin --email E --name N [--language fr|en]   the first platform administrator (prints
                                                    a single-use link to set the password)
create-client --name N --scope S [--scope S] [--days D]   a machine client (prints its id and
                                                    secret once); S: admin, coordinator:<group>,
                                                    member:<group>
revoke-client CLIENT_ID                              no new token for it from now on
new-signing-key [DIR]                                a new key that signs from the next start
demo                                                 a demo group to sign in to (development only;
                                                    the five services must be running)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from uuid import UUID

from cagette_contracts import Language
from cagette_runtime.cli import run_service_cli
from cagette_runtime.errors import Refused

from . import usecases
from .app import NAME, build_service
from .keys import write_new_key
from .settings import WebSettings

OPERATOR_COMMANDS = {"create-admin", "create-client", "revoke-client", "new-signing-key", "demo"}


async def _operate(args: argparse.Namespace) -> str:
    if args.command == "new-signing-key":
        path = write_new_key(args.directory or WebSettings().web_signing_keys_dir)
        return f"new signing key {path.stem} in {path.parent} (it signs once the web service restarts)"
    service = build_service()
    await service.migrate()
    try:
        if args.command == "demo":
            from .demo import seed_demo

            demo = await seed_demo(service, new=args.new)
            if args.json:
                people = {email: str(person) for email, person in demo.people.items()}
                return json.dumps({"group_id": str(demo.group_id), "people": people})
            return demo.summary(service.settings.web_public_url)
        if args.command == "create-admin":
            link = await usecases.create_admin(
                service.database, service.settings, args.email, args.name, Language(args.language)
            )
            return f"platform administrator {args.email}: set the password within the hour at\n{link}"
        if args.command == "create-client":
            client = await usecases.create_client(service.database, args.name, args.scope, args.days)
            return (
                f"client_id={client.client_id}\nclient_secret={client.secret}\n"
                f"(shown once; expires {client.expires_at:%Y-%m-%d}; "
                "POST /oauth/token with grant_type=client_credentials)"
            )
        revoked = await usecases.revoke_client(service.database, args.client_id)
        return f"client {args.client_id} revoked" if revoked else f"no active client {args.client_id}"
    finally:
        await service.database.dispose()


def main(argv: list[str] | None = None) -> None:
    arguments = sys.argv[1:] if argv is None else argv
    if not arguments or arguments[0] not in OPERATOR_COMMANDS:
        run_service_cli(NAME, build_service, "cagette_web.app:create_app", arguments)
        return
    parser = argparse.ArgumentParser(prog="python -m cagette_web", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    admin = sub.add_parser("create-admin")
    admin.add_argument("--email", required=True)
    admin.add_argument("--name", required=True)
    admin.add_argument("--language", choices=[language.value for language in Language], default="fr")
    client = sub.add_parser("create-client")
    client.add_argument("--name", required=True)
    client.add_argument("--scope", action="append", required=True)
    client.add_argument("--days", type=float, default=90.0)
    revoke = sub.add_parser("revoke-client")
    revoke.add_argument("client_id", type=UUID)
    key = sub.add_parser("new-signing-key")
    key.add_argument("directory", nargs="?", default=None)
    demo = sub.add_parser("demo")
    demo.add_argument("--json", action="store_true", help="print the group and people ids as JSON (for tests)")
    demo.add_argument("--new", action="store_true", help="another demo group, even if one exists")
    args = parser.parse_args(arguments)
    try:
        print(asyncio.run(_operate(args)))
    except Refused as refused:
        print(f"refused: {refused.reason}", file=sys.stderr)
        sys.exit(2)


main()
