"""An aiohttp server on 127.0.0.1 in a thread of its own, usable from sync (e2e) and async tests."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Awaitable, Callable

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ThreadedServer:
    """Serves ``handle`` for every path until :meth:`stop`."""

    def __init__(self) -> None:
        self.port = free_port()
        self.lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopped: asyncio.Event | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raise NotImplementedError

    def start(self) -> ThreadedServer:
        ready = threading.Event()
        failed: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop

            async def main() -> None:
                self._stopped = asyncio.Event()
                app = web.Application()
                app.router.add_route("*", "/{tail:.*}", self.handle)
                runner = web.AppRunner(app)
                await runner.setup()
                try:
                    await web.TCPSite(runner, "127.0.0.1", self.port).start()
                except BaseException as exc:
                    failed.append(exc)
                    ready.set()
                    await runner.cleanup()
                    return
                ready.set()
                await self._stopped.wait()
                await runner.cleanup()

            try:
                loop.run_until_complete(main())
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        ready.wait(10)
        if failed:
            raise failed[0]
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stopped is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stopped.set)
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
