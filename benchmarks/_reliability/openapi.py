"""Generated requests from the OpenAPI schema: schemathesis (its Python API) reads the live
service's ``/openapi.json`` and generates requests for every operation — valid ones and ones
that break the schema — sent with a key of every scope. Criteria: 0 responses 5xx, 0 responses
that do not match the documented schema, 0 undocumented status codes; and every 2xx body
validated against its pydantic response model in ``app/schemas.py`` (the list endpoints build
their bodies themselves, so FastAPI never checks them)."""

# ruff: noqa: B023  (each ``exercise`` runs at once, inside the loop iteration that defines it)
from __future__ import annotations

import contextlib
import warnings
from collections import Counter
from typing import Any

import httpx
from pydantic import BaseModel

from benchmarks._reliability.common import SEED, Row, Size, Workspace, service_env, serving


def response_models(spec: dict[str, Any]) -> dict[tuple[str, str], type[BaseModel]]:
    """(METHOD, path template) → the pydantic model of its 2xx JSON body, found in
    ``app/schemas.py`` by the component name the document refers to."""
    import app.schemas

    found: dict[tuple[str, str], type[BaseModel]] = {}
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            for status, response in operation.get("responses", {}).items():
                ref = (
                    response.get("content", {})
                    .get("application/json", {})
                    .get("schema", {})
                    .get("$ref", "")
                )
                model = getattr(app.schemas, ref.rsplit("/", 1)[-1], None) if ref else None
                if (
                    status.startswith("2")
                    and isinstance(model, type)
                    and issubclass(model, BaseModel)
                ):
                    found[(method.upper(), path)] = model
    return found


def run(ws: Workspace, size: Size) -> Row:
    import hypothesis
    import schemathesis
    from hypothesis import HealthCheck, Phase, given
    from hypothesis import settings as hsettings
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    target = 1000 if size == "full" else 200
    folder = ws.folder("openapi")
    env = service_env(ws, event_log_dir=str(folder / "events"))
    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ]
    problems: Counter[str] = Counter()
    statuses: Counter[int] = Counter()
    sent = validated = 0
    with serving(env, folder / "service.log") as service:
        schema = schemathesis.openapi.from_url(f"{service.url}/openapi.json")
        models = response_models(httpx.get(f"{service.url}/openapi.json", timeout=30).json())
        operations = [result.ok() for result in schema.get_all_operations()]
        per_operation = max(2, -(-target // len(operations)))
        positive = max(1, per_operation * 2 // 3)
        headers = ws.keys.header()
        session_headers = {"X-API-Key": ws.keys.everything}
        http = httpx.Client(base_url=service.url, timeout=30)
        try:
            for attempt in range(6):  # more seeds until the target is reached (bounded)
                if sent >= target:
                    break
                for operation in operations:
                    if attempt > 0 and sent >= target:
                        break  # every operation had its share in the first pass
                    model = models.get((operation.method.upper(), operation.path))
                    for mode, examples in ((schemathesis.GenerationMode.POSITIVE, positive),
                                       (schemathesis.GenerationMode.NEGATIVE, per_operation - positive)):  # fmt: skip
                        if examples <= 0:
                            continue
                        strategy = operation.as_strategy(generation_mode=mode)

                        @hsettings(max_examples=examples, database=None, deadline=None,
                               phases=[Phase.generate], suppress_health_check=list(HealthCheck))  # fmt: skip
                        @given(case=strategy)
                        def exercise(case: Any) -> None:
                            nonlocal sent, validated
                            case.headers = {**(case.headers or {}), **headers}
                            try:
                                response = case.call(
                                    base_url=service.url, headers=session_headers, timeout=30
                                )
                            except Exception as exc:  # no answer at all is a failure too
                                problems[
                                    f"{operation.label}: no answer ({type(exc).__name__})"
                                ] += 1
                                sent += 1
                                return
                            sent += 1
                            statuses[response.status_code] += 1
                            try:
                                case.validate_response(response, checks=checks)
                            except Exception as exc:
                                first = str(exc).strip().splitlines()
                                problems[
                                    f"{operation.label}: {response.status_code} {first[0][:140] if first else type(exc).__name__}"
                                ] += 1
                            if model is not None and 200 <= response.status_code < 300:
                                try:
                                    model.model_validate(response.json())
                                    validated += 1
                                except Exception as exc:
                                    problems[
                                        f"{operation.label}: body is not a {model.__name__}: {str(exc)[:140]}"
                                    ] += 1

                        with warnings.catch_warnings():
                            warnings.simplefilter("ignore")
                            # Unsatisfiable: nothing to break in this operation (negative mode)
                            with contextlib.suppress(hypothesis.errors.Unsatisfiable):
                                hypothesis.seed(SEED + attempt)(exercise)()
            alive = http.get("/readyz").status_code == 200
        finally:
            http.close()
    row = Row("openapi", f"schemathesis: {len(operations)} operations, positive and negative, "
              f"≥ {target} requests, keys of every scope", "generated requests (seeded)")  # fmt: skip
    row.requests = sent
    row.failures = sum(problems.values())
    row.notes.append(f"statuses {dict(sorted(statuses.items()))}; {validated} 2xx bodies validated "
                     "against their response models")  # fmt: skip
    for problem, count in problems.most_common(12):
        row.problems.append(f"{problem} (×{count})")
    row.require(sent >= target, f"only {sent} requests sent (target {target})")
    row.require(alive, "the service is no longer ready")
    return row
