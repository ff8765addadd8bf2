"""The composition root: builds the store, the HTTP application and the background workers from settings."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import msgspec
from aiohttp import web

from omnirelay.accounts import sync_config_accounts
from omnirelay.api import openapi
from omnirelay.api.auth import Authenticator
from omnirelay.api.scenarios import ScenarioRoutes
from omnirelay.api.sending import SendRoutes
from omnirelay.api.server import auth_middleware, error_middleware
from omnirelay.config import Settings
from omnirelay.domain.validation import Limits
from omnirelay.store.base import Store
from omnirelay.store.sqlite import SqliteStore

log = logging.getLogger("omnirelay")

STORE_KEY = web.AppKey("store", SqliteStore)


def open_store(settings: Settings) -> SqliteStore:
    """The store the settings name."""
    return SqliteStore(settings.sqlite_path(), synchronous=settings.sqlite_synchronous)


@dataclass
class Gateway:
    """Everything one gateway process runs."""

    settings: Settings
    store: SqliteStore
    auth: Authenticator = field(init=False)

    def __post_init__(self) -> None:
        self.auth = Authenticator(self.store)

    def web_app(self) -> web.Application:
        """The HTTP application."""
        limits = Limits(
            min_validity_seconds=self.settings.limits.min_validity_seconds,
            max_destinations=self.settings.limits.max_destinations,
        )
        app = web.Application(
            client_max_size=int(self.settings.limits.max_body_mb * 1024 * 1024),
            middlewares=[error_middleware(), auth_middleware(self.auth)],
        )
        app[STORE_KEY] = self.store
        store: Store = self.store
        ScenarioRoutes(store).add_to(app)
        SendRoutes(store, limits).add_to(app)
        document = msgspec.json.encode(openapi.build())

        async def openapi_json(_request: web.Request) -> web.Response:
            return web.Response(body=document, content_type="application/json")

        async def health(_request: web.Request) -> web.Response:
            return web.json_response({"status": "ok"})

        app.router.add_get("/openapi.json", openapi_json)
        app.router.add_get("/health", health)
        app.on_startup.append(self._startup)
        app.on_cleanup.append(self._cleanup)
        return app

    async def _startup(self, _app: web.Application) -> None:
        await sync_config_accounts(self.store, self.settings.accounts)

    async def _cleanup(self, _app: web.Application) -> None:
        await self.store.close()


def describe(settings: Settings) -> dict[str, Any]:
    """What a starting server tells its operator about itself."""
    return {"listen": f"http://{settings.host}:{settings.port}", "database": str(settings.sqlite_path())}
