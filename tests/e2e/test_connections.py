"""Connections that hold the gateway's sockets without sending a request: a slow-loris trickling its headers is
answered 408 and closed after ``[limits] header_timeout_seconds`` while other clients are served, and one
client address holds at most ``max_connections_per_client`` connections."""

from __future__ import annotations

import http.client
import json
import socket
import time
from collections.abc import Callable

import pytest

from tests.e2e.conftest import ALADDIN_CONFIG, Gateway

pytestmark = pytest.mark.timeout(120)


def _answer(sock: socket.socket) -> tuple[int, dict[str, object]]:
    """The one answer the gateway wrote on ``sock`` before closing it."""
    resp = http.client.HTTPResponse(sock)
    resp.begin()
    return resp.status, json.loads(resp.read())


def test_a_trickled_request_head_is_closed_after_the_header_timeout(make_gateway: Callable[..., Gateway]) -> None:
    gw = make_gateway(ALADDIN_CONFIG + "\n[limits]\nheader_timeout_seconds = 2\n")
    head = b"GET /omni/1/reports HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"y" * 40 + b"\r\n\r\n"
    with socket.create_connection((gw.host, gw.port), timeout=10) as sock:
        sent = 0
        closed = False
        for byte in head:  # one byte a second: 60 s for the whole head
            try:
                sock.sendall(bytes([byte]))
            except OSError:  # the gateway closed the connection
                closed = True
                break
            sent += 1
            assert gw.get("/health").status == 200  # others are served meanwhile
            time.sleep(1.0)
            sock.settimeout(0.0)
            try:
                pending = sock.recv(1, socket.MSG_PEEK)
            except BlockingIOError:
                pending = None
            finally:
                sock.settimeout(10)
            if pending is not None:  # an answer (or the end of the stream) is waiting
                closed = True
                break
        assert closed, "the connection was still open after the whole head was trickled"
        assert sent < len(head) // 2, sent
        status, body = _answer(sock)
    assert status == 408
    assert body["requestError"]["serviceException"]["messageId"] == "REQUEST_TIMEOUT"  # type: ignore[index]
    assert gw.get("/health").status == 200
    assert "Traceback" not in gw.output


def test_a_normal_request_on_a_kept_alive_connection_is_not_cut(make_gateway: Callable[..., Gateway]) -> None:
    gw = make_gateway(ALADDIN_CONFIG + "\n[limits]\nheader_timeout_seconds = 1\n")
    conn = http.client.HTTPConnection(gw.host, gw.port, timeout=10)
    try:
        for _ in range(3):
            conn.request("GET", "/health")
            response = conn.getresponse()
            assert response.status == 200
            response.read()
            time.sleep(1.5)  # idle between requests is the keep-alive's business, not the header timeout's
        conn.request("GET", "/health")
        assert conn.getresponse().status == 200
    finally:
        conn.close()


def test_one_client_holds_at_most_so_many_connections(make_gateway: Callable[..., Gateway]) -> None:
    gw = make_gateway(ALADDIN_CONFIG + "\n[limits]\nmax_connections_per_client = 4\nheader_timeout_seconds = 60\n")
    held = [socket.create_connection((gw.host, gw.port), timeout=10) for _ in range(4)]
    try:
        time.sleep(0.3)
        with socket.create_connection((gw.host, gw.port), timeout=10) as extra:
            status, body = _answer(extra)
        assert status == 429
        assert body["requestError"]["serviceException"]["messageId"] == "TOO_MANY_REQUESTS"  # type: ignore[index]
        held.pop().close()
        time.sleep(0.3)
        assert gw.get("/health").status == 200  # a place became free
    finally:
        for sock in held:
            sock.close()
