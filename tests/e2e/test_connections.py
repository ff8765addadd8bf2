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


def _trickle(gw: Gateway, head: bytes, slow: bytes) -> tuple[int, int, dict[str, object]]:
    """Send ``head`` at once, then ``slow`` one byte a second until the gateway answers or closes; returns how
    many slow bytes went out, and the answer."""
    with socket.create_connection((gw.host, gw.port), timeout=10) as sock:
        sock.sendall(head)
        sent = 0
        for byte in slow:
            try:
                sock.sendall(bytes([byte]))
            except OSError:  # the gateway closed the connection
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
                break
        else:
            raise AssertionError("the connection was still open after every byte was trickled")
        status, body = _answer(sock)
    return sent, status, body


def test_a_trickled_request_head_is_closed_after_the_header_timeout(make_gateway: Callable[..., Gateway]) -> None:
    gw = make_gateway(ALADDIN_CONFIG + "\n[limits]\nheader_timeout_seconds = 2\n")
    slow = b"GET /omni/1/reports HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"y" * 40 + b"\r\n\r\n"
    sent, status, body = _trickle(gw, b"", slow)  # one byte a second: a minute for the whole head
    assert sent < len(slow) // 2, sent
    assert status == 408
    assert body["requestError"]["serviceException"]["messageId"] == "REQUEST_TIMEOUT"  # type: ignore[index]
    assert gw.get("/health").status == 200
    assert "Traceback" not in gw.output


def test_a_trickled_body_is_answered_408(make_gateway: Callable[..., Gateway]) -> None:
    gw = make_gateway(ALADDIN_CONFIG + "\n[limits]\nbody_timeout_seconds = 2\n")
    assert gw.default_auth is not None
    slow = b'{"name": "' + b"n" * 50 + b'", "flow": [{"from": "InfoSMS", "channel": "SMS"}]}'
    head = (
        b"POST /omni/1/scenarios HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Authorization: " + gw.default_auth.encode() + b"\r\nContent-Length: %d\r\n\r\n" % len(slow)
    )
    sent, status, body = _trickle(gw, head, slow)
    assert sent < len(slow) // 2, sent
    assert status == 408, body
    assert "body" in body["requestError"]["serviceException"]["text"]  # type: ignore[index]
    assert "Traceback" not in gw.output


def test_a_normal_request_on_a_kept_alive_connection_is_not_cut(make_gateway: Callable[..., Gateway]) -> None:
    gw = make_gateway(ALADDIN_CONFIG + "\n[limits]\nheader_timeout_seconds = 1\n")
    assert gw.default_auth is not None
    body = b'{"flow": [{"from": "InfoSMS", "channel": "SMS"}]}'
    head = (
        b"POST /omni/1/scenarios HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Authorization: " + gw.default_auth.encode() + b"\r\nContent-Length: %d\r\n\r\n" % len(body)
    )
    with socket.create_connection((gw.host, gw.port), timeout=10) as sock:
        for _ in range(3):
            sock.sendall(head)
            time.sleep(0.2)  # the body in a later segment, as many clients send it
            sock.sendall(body)
            resp = http.client.HTTPResponse(sock)
            resp.begin()
            assert resp.status == 200, resp.read()
            resp.read()
            time.sleep(1.5)  # idle between requests is the keep-alive's business, not the header timeout's
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        resp = http.client.HTTPResponse(sock)
        resp.begin()
        assert resp.status == 200


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
