"""A gateway with the operator console, for tests/e2e/test_console.py: ``python -m tests.e2e.console_server``.

It builds the app the way ``omnirelay serve`` does (``Gateway(settings, store).web_app()``) and adds the
console unless the composition root already registers it (then it changes nothing), making ``/console`` a
public prefix of the API's auth middleware when it is not one yet. Prints ``console listening on <url>``.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from aiohttp import web

from omnirelay import config
from omnirelay.accounts import sync_config_accounts
from omnirelay.api import server
from omnirelay.app import Gateway, open_store
from omnirelay.console import ConsoleRoutes
from omnirelay.domain.validation import Limits
from omnirelay.sending import Sender


def with_console(gateway: Gateway, app: web.Application) -> web.Application:
    """``app`` with the console routes (added only when the app has none yet)."""
    if not any(r.canonical.startswith("/console") for r in app.router.resources()):
        s = gateway.settings.limits
        limits = Limits(min_validity_seconds=s.min_validity_seconds, max_destinations=s.max_destinations)
        sender = Sender(gateway.store, limits, gateway.tariffs)
        ConsoleRoutes(gateway.store, gateway.sandbox, sender, gateway.engine.wake).add_to(app)
    if not "/console".startswith(server.PUBLIC_PREFIXES):
        server.PUBLIC_PREFIXES = (*server.PUBLIC_PREFIXES, "/console")
    return app


async def serve(config_file: str, data_dir: str, host: str, port: int) -> None:
    """Serve until SIGTERM or SIGINT."""
    settings = config.load(config_file, {"data_dir": data_dir, "host": host, "port": port}, environ={})
    store = await open_store(settings)
    await sync_config_accounts(store, settings.accounts)
    gateway = Gateway(settings, store)
    runner = web.AppRunner(with_console(gateway, gateway.web_app()), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        print(f"console listening on http://{host}:{port}", flush=True)
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stopping.set)
        await stopping.wait()
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.config, args.data_dir, args.host, args.port))


if __name__ == "__main__":
    main()
