"""The ``omnirelay`` command: serve the gateway, manage accounts and API keys, migrate the database."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable

from omnirelay import config
from omnirelay.accounts import AccountError, add_account, create_key, first_start, sync_config_accounts
from omnirelay.app import Gateway, open_store
from omnirelay.store.sqlite import SchemaError, SqliteStore


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="TOML settings file (also OMNIRELAY_CONFIG)")
    parser.add_argument(
        "--data-dir",
        dest="data_dir",
        help="folder of the embedded database (also OMNIRELAY_DATA_DIR; default ./omnirelay-data)",
    )
    parser.add_argument("--database", help="database: a SQLite path or sqlite:///path (also OMNIRELAY_DATABASE)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="omnirelay", description="Omnichannel messaging gateway (Infobip OMNI API)")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the gateway: HTTP API, engine and webhooks in one process")
    _common(serve)
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default 8080)")

    migrate = sub.add_parser("migrate", help="create or upgrade the database schema")
    _common(migrate)

    accounts = sub.add_parser("accounts", help="manage accounts")
    acc = accounts.add_subparsers(dest="action", required=True)
    add = acc.add_parser("add", help="create an account (prints its password, and an API key with --key)")
    add.add_argument("username")
    add.add_argument("--password", help="the password (default: a generated one, printed once)")
    add.add_argument("--key", action="store_true", help="also create an API key")
    _common(add)
    lst = acc.add_parser("list", help="list accounts")
    _common(lst)
    rm = acc.add_parser("remove", help="remove an account with everything it owns")
    rm.add_argument("username")
    _common(rm)
    hp = acc.add_parser("hash-password", help="print the password_hash for a config file's [[accounts]]")
    hp.add_argument("password")

    keys = sub.add_parser("keys", help="manage API keys")
    ks = keys.add_subparsers(dest="action", required=True)
    kc = ks.add_parser("create", help="create an API key for an account (printed once)")
    kc.add_argument("username")
    _common(kc)
    kr = ks.add_parser("revoke", help="revoke an API key by its id")
    kr.add_argument("key_id")
    _common(kr)
    kl = ks.add_parser("list", help="list API keys (ids only)")
    _common(kl)
    return parser


def _settings(args: argparse.Namespace) -> config.Settings:
    overrides = {k: getattr(args, k, None) for k in ("host", "port", "data_dir", "database")}
    return config.load(args.config, overrides)


def _with_store(settings: config.Settings, work: Callable[[SqliteStore], Awaitable[int]]) -> int:
    async def run() -> int:
        store = open_store(settings)
        try:
            await sync_config_accounts(store, settings.accounts)
            return await work(store)
        finally:
            await store.close()

    return asyncio.run(run())


def _serve(settings: config.Settings) -> int:
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    store = open_store(settings)
    gateway = Gateway(settings, store)

    async def announce() -> None:
        await sync_config_accounts(store, settings.accounts)
        created = await first_start(store)
        if created is not None:
            print("No account existed, so one was created. Its credentials are shown only this once:")
            print(f"  username: {created.username}")
            print(f"  password: {created.password}")
            print(f"  API key:  {created.api_key}   (send as 'Authorization: App <key>')")
        print(
            f"omnirelay listening on http://{settings.host}:{settings.port} (database {settings.sqlite_path()})",
            flush=True,
        )

    from aiohttp import web

    app = gateway.web_app()

    async def on_startup(_app: web.Application) -> None:
        await announce()

    app.on_startup.append(on_startup)
    web.run_app(app, host=settings.host, port=settings.port, print=None, access_log=None)
    return 0


def _accounts(args: argparse.Namespace) -> int:
    settings = _settings(args)

    async def work(store: SqliteStore) -> int:
        if args.action == "add":
            made = await add_account(store, args.username, args.password, args.key)
            print(f"account {made.username} created")
            if args.password is None:
                print(f"password: {made.password}")
            if made.api_key:
                print(f"API key: {made.api_key}")
        elif args.action == "list":
            rows = await store.accounts()
            keys = await store.keys()
            for a in rows:
                count = sum(1 for k in keys if k.account_id == a.id)
                print(f"{a.username}\t{a.source}\t{count} API key(s)")
        elif args.action == "remove":
            if not await store.remove_account(args.username):
                print(f"no account {args.username!r}", file=sys.stderr)
                return 1
            print(f"account {args.username} removed")
        return 0

    return _with_store(settings, work)


def _keys(args: argparse.Namespace) -> int:
    settings = _settings(args)

    async def work(store: SqliteStore) -> int:
        if args.action == "create":
            account = await store.account_by_username(args.username)
            if account is None:
                print(f"no account {args.username!r}", file=sys.stderr)
                return 1
            key = await create_key(store, account)
            print(f"API key for {account.username} (shown only now): {key}")
        elif args.action == "revoke":
            if not await store.revoke_key(args.key_id):
                print(f"no API key with id {args.key_id!r}", file=sys.stderr)
                return 1
            print(f"API key {args.key_id} revoked")
        elif args.action == "list":
            for k in await store.keys():
                print(f"{k.id}\t{k.username}\t{k.source}")
        return 0

    return _with_store(settings, work)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``omnirelay`` command."""
    args = _parser().parse_args(argv)
    commands: dict[str, Callable[[argparse.Namespace], int]] = {
        "serve": lambda a: _serve(_settings(a)),
        "migrate": lambda a: _with_store(_settings(a), _migrated),
        "accounts": _accounts,
        "keys": _keys,
    }
    if args.command == "accounts" and args.action == "hash-password":
        from omnirelay.domain.credentials import hash_password

        print(hash_password(args.password))
        return 0
    try:
        return commands[args.command](args)
    except (config.ConfigError, AccountError, SchemaError) as exc:
        print(f"omnirelay: {exc}", file=sys.stderr)
        return 2


async def _migrated(store: SqliteStore) -> int:
    print(f"database {store.path} is up to date")
    return 0
