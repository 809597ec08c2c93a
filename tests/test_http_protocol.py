"""A request uvicorn's HTTP parser refuses gets the JSON error body (found by the reliability
suite: a 100,000-character id in a path got uvicorn's plain-text 400)."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
from typer.testing import CliRunner

from app.http_protocol import INVALID_REQUEST_CODE, JsonErrorH11Protocol, protocol_class
from helpers import free_port


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    assert scope["type"] == "http"
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture(params=["default", "h11"])
def server_port(request: pytest.FixtureRequest) -> Iterator[int]:
    http = protocol_class() if request.param == "default" else JsonErrorH11Protocol
    port = free_port()
    config = uvicorn.Config(
        _app, host="127.0.0.1", port=port, http=http, log_level="error", lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield port
    server.should_exit = True
    thread.join(timeout=10)


def _get(port: int, path: str) -> tuple[int, str, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.getheader("content-type") or "", response.read()
    finally:
        conn.close()


def _assert_json_400(status: int, content_type: str, body: bytes) -> None:
    assert status == 400
    assert content_type == "application/json"
    error = json.loads(body)["error"]
    assert error["code"] == INVALID_REQUEST_CODE and error["message"]


def test_a_url_over_the_parsers_limit_gets_the_json_error_body(server_port: int) -> None:
    status, content_type, body = _get(
        server_port, "/v1/customers/" + "C" * 100_000 + "/recommendations"
    )
    if status == 200:  # h11 takes URLs this long (the app answers them)
        return
    _assert_json_400(status, content_type, body)


def test_a_malformed_request_gets_the_json_error_body(server_port: int) -> None:
    with socket.create_connection(("127.0.0.1", server_port), timeout=10) as sock:
        sock.sendall(b"GET /x HTTP/1.1\r\nHost: a\r\nno colon in this header\r\n\r\n")
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    _assert_json_400(int(lines[0].split()[1]), headers["content-type"], body)


def test_an_ordinary_request_is_served_as_before(server_port: int) -> None:
    assert _get(server_port, "/anything")[::2] == (200, b"ok")


def test_lookbook_serve_runs_the_protocol(
    restore_logging: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from training.cli import cli

    seen: dict[str, Any] = {}
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")  # several workers need one (unused)
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: seen.update(kwargs))
    result = CliRunner().invoke(cli, ["serve", "--port", "1", "--workers", "2"])
    assert result.exit_code == 0, result.output
    assert seen["http"] is protocol_class()
    assert seen["workers"] == 2
