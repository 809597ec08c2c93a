"""API keys with scopes: who may call which part of the API.

Keys are configured as a list of ``{"name": "storefront", "sha256": "<hex>", "scopes": ["read"]}``
in ``LOOKBOOK_API_KEYS_FILE`` (YAML or JSON) and/or ``LOOKBOOK_API_KEYS`` (inline JSON); only the
SHA-256 of a key is ever kept (keys are random high-entropy tokens, so a plain hash is the right
one), and it is compared in constant time. A caller sends its key as ``Authorization: Bearer <key>``
or ``X-API-Key: <key>``. ``lookbook keys new --name NAME --scopes read,events`` makes one
(:func:`new_key`).

Every router gets its scope where it is included (``app/main.py``)::

    app.include_router(router, dependencies=[require_scope(Scope.READ)])

Missing or unknown key → 401 ``unauthenticated`` (with ``WWW-Authenticate: Bearer``); a key
without the scope → 403 ``forbidden``. :class:`AuthMiddleware` applies the same rule, read from the
routes' own declarations, before the request body is read, so a caller without a key never gets
its body buffered. With no key configured (the embedded default) every route is open.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Final

import yaml
from fastapi import Depends, Request, Security, params
from fastapi.dependencies.models import Dependant
from fastapi.routing import iter_route_contexts
from fastapi.security import APIKeyHeader, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param
from pydantic import Field, TypeAdapter, ValidationError, field_validator
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Send
from starlette.types import Scope as ASGIScope

from app.errors import Forbidden, Unauthenticated, error_response, headers_of, status_of
from app.schemas import ErrorResponse
from feature_store.config import StrictConfig
from feature_store.errors import LookbookError


class Scope(StrEnum):
    """What a key may do. Each router is included with exactly one of these."""

    READ = "read"  # recommendation lists: personalized, similar, complementary, seasonal, session
    EVENTS = "events"  # POST /v1/events
    KIOSK = "kiosk"  # the /v1/kiosk/* API
    CUSTOMERS = "customers"  # customer data: profile, consent, erasure, segment listings
    ADMIN = "admin"  # models, reload, experiments, bandit, attribution (and /metrics if asked)


ANONYMOUS = "-"  # the key name of a request without a (known) key, in logs and metrics
OPEN = "none"  # the scope label of a route that needs none
KEY_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
MAX_KEY_LENGTH = 512  # longer credentials are not keys: refused without hashing them
API_KEY_HEADER = "X-API-Key"


class ApiKey(StrictConfig):
    """One configured key: its name (in logs and metrics), the SHA-256 of the key, its scopes."""

    name: str = Field(pattern=KEY_NAME_PATTERN, description="who holds the key, e.g. storefront")
    sha256: str = Field(
        pattern=r"^[0-9a-fA-F]{64}$", description="hex SHA-256 of the key (never the key)"
    )
    scopes: list[Scope] = Field(min_length=1)

    @field_validator("sha256", mode="before")
    @classmethod
    def _hex_text(cls, value: Any) -> Any:
        if not isinstance(value, str):  # YAML reads an unquoted all-digit hash as a number
            raise ValueError("must be a string of 64 hex digits (quote it in YAML)")
        return value.lower()


API_KEY_LIST: TypeAdapter[list[ApiKey]] = TypeAdapter(list[ApiKey])


def hash_key(key: str) -> str:
    """The hex SHA-256 of a key, as configured."""
    return hashlib.sha256(key.encode()).hexdigest()


def new_key(name: str, scopes: Iterable[Scope | str]) -> tuple[str, ApiKey]:
    """A fresh random key and the entry to configure for it (the entry holds only its hash)."""
    key = secrets.token_urlsafe(32)
    return key, ApiKey(name=name, sha256=hash_key(key), scopes=[Scope(s) for s in scopes])


def read_keys_file(path: Path) -> list[ApiKey]:
    """The keys of a YAML or JSON file (a list of entries). ``ValueError`` says what is wrong."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))  # JSON is YAML too
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ValueError(f"API keys file {path} cannot be read: {exc}") from exc
    try:
        return API_KEY_LIST.validate_python(data if data is not None else [])
    except ValidationError as exc:
        raise ValueError(f"API keys file {path}: {_first_error(exc)}") from exc


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"])
    return f"{where}: {error['msg']}" if where else str(error["msg"])


class KeyRing:
    """The configured keys (their hashes). Empty: the service is open to anyone."""

    def __init__(self, keys: Iterable[ApiKey] = ()) -> None:
        self.keys = tuple(keys)
        for attribute in ("name", "sha256"):
            values = [getattr(key, attribute) for key in self.keys]
            duplicates = sorted({v for v in values if values.count(v) > 1})
            if duplicates:
                shown = duplicates if attribute == "name" else ["(a hash)"]
                raise ValueError(f"API keys: duplicate {attribute} {', '.join(shown)}")

    @property
    def open(self) -> bool:
        return not self.keys

    def describe(self) -> str:
        """For ``/readyz``: whether keys are required."""
        if self.open:
            return "open: no API keys configured"
        return f"api keys: {len(self.keys)}"

    def identify(self, key: str | None) -> ApiKey | None:
        """The entry of ``key``, or None. Every configured hash is compared (constant time)."""
        if not key or len(key) > MAX_KEY_LENGTH:
            return None
        digest = hash_key(key)
        found = None
        for entry in self.keys:
            if hmac.compare_digest(digest, entry.sha256):
                found = entry
        return found

    def allow(self, entry: ApiKey | None, required: Iterable[Scope]) -> None:
        """Nothing when the key of ``entry`` (from :meth:`identify`) has every ``required``
        scope, or when the ring is open; :class:`Unauthenticated` for no (known) key,
        :class:`Forbidden` for a missing scope."""
        if self.open:
            return
        if entry is None:
            raise Unauthenticated(
                "a valid API key is required (Authorization: Bearer <key>, or X-API-Key: <key>)"
            )
        missing = [scope.value for scope in required if scope not in entry.scopes]
        if missing:
            raise Forbidden(f"this API key lacks the {', '.join(missing)} scope")


@dataclass(slots=True)
class Caller:
    """Who made a request and what its route needed: the key's name and the route's scope."""

    key: str = ANONYMOUS
    scope: str = OPEN


CALLER = "lookbook.caller"  # the ASGI scope entry holding the request's Caller


def caller_of(scope: ASGIScope) -> Caller:
    caller: Caller | None = scope.get(CALLER)
    return caller if caller is not None else Caller()


def _note_caller(scope: ASGIScope, entry: ApiKey | None, required: Sequence[Scope]) -> None:
    scope[CALLER] = Caller(
        entry.name if entry is not None else ANONYMOUS,
        ",".join(s.value for s in required) or OPEN,
    )


def key_from_headers(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The key of ``Authorization: Bearer <key>``, else of ``X-API-Key``."""
    authorization = api_key = None
    for name, value in headers:
        if name == b"authorization":
            authorization = value.decode("latin-1")
        elif name == b"x-api-key":
            api_key = value.decode("latin-1")
    if authorization:
        scheme, credentials = get_authorization_scheme_param(authorization)
        if scheme.lower() == "bearer" and credentials:
            return credentials
    return api_key or None


_api_key_header = APIKeyHeader(
    name=API_KEY_HEADER, auto_error=False, description="an API key as `X-API-Key: <key>`"
)


class ScopeGuard(HTTPBearer):
    """The dependency behind :func:`require_scope`: checks the caller's key for ``scope``.

    It is itself the ``HTTPBearer`` security scheme of the OpenAPI document (with the
    ``APIKeyHeader`` one below it): one dependency less to solve on every request."""

    def __init__(self, scope: Scope) -> None:
        super().__init__(
            scheme_name="HTTPBearer",
            description="an API key as `Authorization: Bearer <key>`",
            auto_error=False,
        )
        self.scope = scope

    async def __call__(  # type: ignore[override]  # a guard, not a credentials reader
        self,
        request: Request,
        api_key: Annotated[str | None, Depends(_api_key_header)],  # for the document
    ) -> None:
        keys: KeyRing = request.app.state.api_keys
        if keys.open:
            _note_caller(request.scope, None, (self.scope,))
            return
        entry = keys.identify(key_from_headers(request.scope["headers"]))  # either header
        _note_caller(request.scope, entry, (self.scope,))
        keys.allow(entry, (self.scope,))

    def __repr__(self) -> str:
        return f"ScopeGuard({self.scope.value!r})"


#: What a scoped operation may answer besides its own responses, for its OpenAPI document
#: (``app.include_router(router, dependencies=[require_scope(s)], responses=SCOPE_RESPONSES)``).
SCOPE_RESPONSES: Final[dict[int | str, dict[str, Any]]] = {
    401: {
        "model": ErrorResponse,
        "description": "unauthenticated: no API key, or one that is not configured "
        "(with `WWW-Authenticate: Bearer`)",
    },
    403: {"model": ErrorResponse, "description": "forbidden: the key lacks the route's scope"},
}


def require_scope(scope: Scope) -> params.Security:
    """The dependency giving a router (or route) its scope; the OpenAPI document shows the
    security schemes and the scope on each of its operations."""
    return Security(ScopeGuard(scope), scopes=[scope.value])


def route_scopes(dependant: Dependant | None) -> list[Scope]:
    """The scopes a route's dependencies require (its :class:`ScopeGuard` s)."""
    found: list[Scope] = []
    stack = [dependant] if dependant is not None else []
    while stack:
        current = stack.pop()
        if isinstance(current.call, ScopeGuard) and current.call.scope not in found:
            found.append(current.call.scope)
        stack.extend(current.dependencies)
    return found


@dataclass(frozen=True, slots=True)
class _Rule:
    path_regex: re.Pattern[str]
    methods: frozenset[str] | None
    template: str
    scopes: tuple[Scope, ...]


def _rules(routes: Sequence[BaseRoute]) -> Iterator[_Rule]:
    for context in iter_route_contexts(routes):
        regex = getattr(context, "path_regex", None)
        if regex is None:
            continue
        methods = context.methods
        yield _Rule(
            regex,
            frozenset(methods) if methods else None,
            context.path or "",
            tuple(route_scopes(getattr(context, "dependant", None))),
        )


class _Template:
    """Stands in for ``scope["route"]`` of a request refused before routing (only ``path`` is
    read: the latency metric and the access log label requests by route template)."""

    __slots__ = ("path",)

    def __init__(self, path: str) -> None:
        self.path = path


class AuthMiddleware:
    """Pure ASGI middleware: a request to a route that needs a scope is refused (401 / 403)
    from its headers alone, before its body is read. The routes' scopes are read from their
    dependencies (:func:`require_scope`) on the first request. Nothing to do on an open ring."""

    def __init__(self, app: ASGIApp, keys: KeyRing, routes: Any) -> None:
        self.app = app
        self.keys = keys
        self.routes = routes  # the FastAPI app's router: its ``routes`` are read lazily
        self._table: list[_Rule] | None = None

    def _match(self, scope: ASGIScope) -> _Rule | None:
        if self._table is None:
            self._table = list(_rules(self.routes.routes))
        path = scope["path"]
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        method = scope["method"]
        for rule in self._table:
            if rule.path_regex.match(path) and (rule.methods is None or method in rule.methods):
                return rule
        return None

    async def __call__(self, scope: ASGIScope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.keys.open:
            await self.app(scope, receive, send)
            return
        rule = self._match(scope)
        if rule is None or not rule.scopes:
            await self.app(scope, receive, send)
            return
        headers = scope.get("headers", ())
        entry = self.keys.identify(key_from_headers(headers))
        _note_caller(scope, entry, rule.scopes)
        try:
            self.keys.allow(entry, rule.scopes)
        except LookbookError as exc:
            scope.setdefault("route", _Template(rule.template))
            extra = {"Connection": "close"} if _has_body(headers) else {}
            response = error_response(
                status_of(exc), exc.code, str(exc), headers={**headers_of(exc), **extra}
            )
            await response(scope, receive, send)  # the body is never read
            return
        await self.app(scope, receive, send)


def _has_body(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name == b"transfer-encoding" or (name == b"content-length" and value.strip() != b"0"):
            return True
    return False
