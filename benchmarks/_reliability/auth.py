"""Authentication on the live service: every operation of its OpenAPI document (read from
``/openapi.json``) called without a key, with a wrong key (as ``Authorization: Bearer`` and as
``X-API-Key``), and with a key of each scope it does not need; then with the key of its scope.
Criteria: 401 (with ``WWW-Authenticate: Bearer``) / 403 as the document says (both documented
on the operation), the body only the JSON error (never data), and the right key let through."""

from __future__ import annotations

from typing import Any

import httpx

from benchmarks._reliability.common import SCOPES, Row, Size, Workspace, service_env, serving


def _fill(path: str, ws: Workspace, version: str) -> str:
    values = {"customer_id": ws.customers[1], "item_id": ws.items[1], "version": version,
              "name": "new"}  # fmt: skip
    for name, value in values.items():
        path = path.replace("{" + name + "}", value)
    return path


def _refused(response: httpx.Response, status: int, code: str, ws: Workspace) -> str | None:
    """None when ``response`` is the refusal expected, else what is wrong."""
    if response.status_code != status:
        return f"{response.status_code} instead of {status}"
    try:
        body = response.json()
    except ValueError:
        return "not a JSON body"
    if (
        set(body) != {"error"}
        or set(body["error"]) != {"code", "message"}
        or body["error"]["code"] != code
    ):
        return f"body {str(body)[:120]}"
    if ws.customers[1] in response.text or ws.items[1] in response.text:
        return "the body names the customer or item"
    if status == 401 and not response.headers.get("www-authenticate", "").startswith("Bearer"):
        return "no WWW-Authenticate: Bearer"
    return None


def run(ws: Workspace, size: Size) -> Row:
    rounds = 3 if size == "full" else 1
    row = Row("auth", f"every operation of /openapi.json × {2 + len(SCOPES)} credentials × {rounds}",
              "no key, wrong key (Bearer and X-API-Key), a key of every other scope")  # fmt: skip
    folder = ws.folder("auth")
    env = service_env(ws, event_log_dir=str(folder / "events"))
    operations = 0
    with (
        serving(env, folder / "service.log") as service,
        httpx.Client(base_url=service.url, timeout=30) as client,
    ):
        spec: dict[str, Any] = client.get("/openapi.json").json()
        version = service.readyz().get("model_version", "none")
        for _ in range(rounds):
            for path, methods in spec["paths"].items():
                for method, operation in methods.items():
                    security = operation.get("security")
                    if not security:
                        continue  # open: health, readiness, metrics
                    operations += 1
                    (scope,) = {
                        s
                        for requirement in security
                        for scopes in requirement.values()
                        for s in scopes
                    }
                    where = f"{method.upper()} {path}"
                    documented = set(operation.get("responses", {}))
                    row.require({"401", "403"} <= documented, f"{where}: 401/403 not documented")
                    url = _fill(path, ws, version)
                    body = {} if method in ("post", "put", "patch") else None
                    trials: list[tuple[str, dict[str, str], int, str]] = [
                        ("no key", {}, 401, "unauthenticated"),
                        (
                            "wrong Bearer key",
                            {"Authorization": f"Bearer {ws.keys.wrong}"},
                            401,
                            "unauthenticated",
                        ),
                        ("wrong X-API-Key", {"X-API-Key": ws.keys.wrong}, 401, "unauthenticated"),
                        (
                            "Basic credentials",
                            {"Authorization": "Basic dXNlcjpwYXNz"},
                            401,
                            "unauthenticated",
                        ),
                    ]
                    trials += [(f"{other} key", {"X-API-Key": key}, 403, "forbidden")
                               for other, key in ws.keys.by_scope.items() if other != scope]  # fmt: skip
                    for label, headers, status, code in trials:
                        response = client.request(method.upper(), url, json=body, headers=headers)
                        row.requests += 1
                        problem = _refused(response, status, code, ws)
                        if problem:
                            row.failures += 1
                            row.problems.append(f"{where} with {label}: {problem}")
                    allowed = client.request(method.upper(), url, json=body,
                                             headers={"X-API-Key": ws.keys.by_scope[scope]})  # fmt: skip
                    row.requests += 1
                    if allowed.status_code in (401, 403) or allowed.status_code >= 500:
                        row.failures += 1
                        row.problems.append(f"{where} with its {scope} key: {allowed.status_code}")
    row.notes.append(f"{operations // rounds} operations with a scope")
    row.require(operations > 0, "no operation with a scope in the document")
    return row
