"""The HTTP protocol ``lookbook serve`` runs: uvicorn's, except that a request its parser refuses
(a malformed request line, or a URL or headers over the parser's size limit — a 100,000-character
id in a path) is answered like every other bad request, a 400 with the JSON error body
``{"error": {"code": "invalid_http_request", "message": …}}``, instead of uvicorn's plain text.

Such a request never reaches the app (there is no request to route), so this is the one place
that can answer it. :func:`protocol_class` is httptools' (uvicorn's own choice with
``uvicorn[standard]``); the h11 one is for a server run with ``--http h11``.
"""

from __future__ import annotations

import asyncio

import h11
import orjson
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

INVALID_REQUEST_CODE = "invalid_http_request"


def error_body(message: str) -> bytes:
    """The JSON error body of a request the HTTP parser refused."""
    return orjson.dumps(
        {
            "error": {
                "code": INVALID_REQUEST_CODE,
                "message": f"{message.rstrip('.')}: a malformed request, or a URL or headers "
                "longer than the server accepts",
            }
        }
    )


class JsonErrorH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with the JSON error body on a refused request."""

    def send_400_response(self, msg: str) -> None:
        body = error_body(msg)
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode("ascii")),
            (b"connection", b"close"),
        ]
        output = self.conn.send(
            h11.Response(status_code=400, headers=headers, reason=b"Bad Request")
        )
        output += self.conn.send(h11.Data(data=body))
        output += self.conn.send(h11.EndOfMessage())
        self.transport.write(output)
        self.transport.close()


class JsonErrorHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the JSON error body on a refused request (module level:
    ``--workers N`` pickles it into each worker)."""

    def send_400_response(self, msg: str) -> None:
        body = error_body(msg)
        content = [STATUS_LINE[400]]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content += [
            b"content-type: application/json\r\n",
            b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
            b"connection: close\r\n\r\n",
            body,
        ]
        self.transport.write(b"".join(content))
        self.transport.close()


def protocol_class() -> type[asyncio.Protocol]:
    """The protocol for ``uvicorn.run(http=…)``: httptools' when installed, else h11's."""
    return JsonErrorHttpToolsProtocol  # uvicorn[standard] (a dependency) brings httptools
