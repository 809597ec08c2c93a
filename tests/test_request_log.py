"""Request ids and the JSON log: every response has an ``X-Request-ID``, every request one JSON
access record with its route template (never a customer id), key name and model version."""

from __future__ import annotations

import io
import json
import logging
import logging.config
import re
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from app.auth import new_key
from app.main import create_app
from app.request_log import ACCESS_LOGGER, JsonFormatter, log_config, request_id_of
from app.settings import Settings
from training.cli import cli

FRESH = re.compile(r"[0-9a-f]{32}")


@pytest.fixture(scope="module")
def customer(retailer: tuple[Path, Path]) -> str:
    interactions = pd.read_parquet(retailer[0] / "interactions.parquet")
    return str(interactions["customer_id"].iloc[0])


def access_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == ACCESS_LOGGER]


def as_json(record: logging.LogRecord) -> dict[str, Any]:
    line = JsonFormatter().format(record)
    assert "\n" not in line
    parsed: dict[str, Any] = json.loads(line)
    return parsed


def test_the_request_id_is_echoed_when_sane_else_fresh(client: TestClient) -> None:
    given = "edge-7f3a.b_9:1"
    assert client.get("/healthz", headers={"X-Request-ID": given}).headers["x-request-id"] == given
    first = client.get("/healthz").headers["x-request-id"]
    second = client.get("/healthz").headers["x-request-id"]
    assert FRESH.fullmatch(first) and FRESH.fullmatch(second) and first != second
    for insane in ("a" * 129, "has space", "semi;colon", "<script>", ""):
        echoed = client.get("/healthz", headers={"X-Request-ID": insane}).headers["x-request-id"]
        assert FRESH.fullmatch(echoed), insane
    assert request_id_of([(b"x-request-id", "é".encode())]) != "é"


def test_refusals_and_errors_carry_a_request_id_too(client: TestClient) -> None:
    assert FRESH.fullmatch(client.get("/v1/no-such-route").headers["x-request-id"])
    big = client.post("/v1/events", content=b" " * (5 * 1024 * 1024))
    assert big.status_code == 413 and FRESH.fullmatch(big.headers["x-request-id"])


def test_one_json_access_record_per_request_without_the_customer_id(
    retailer: tuple[Path, Path],
    tmp_path: Path,
    customer: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    key, entry = new_key("storefront", ["read"])
    settings = Settings(
        bundle_dir=retailer[1],
        event_log_dir=tmp_path / "events",
        bundle_poll_seconds=0,
        redis_url=None,
        api_keys=[entry],
    )
    with TestClient(create_app(settings)) as c:
        version = c.get("/readyz").json()["model_version"]
        caplog.clear()
        with caplog.at_level(logging.INFO, logger=ACCESS_LOGGER):
            ok = c.get(
                f"/v1/customers/{customer}/recommendations?k=3",
                headers={"Authorization": f"Bearer {key}", "X-Request-ID": "req-1"},
            )
            refused = c.get(f"/v1/customers/{customer}/profile")
    assert ok.status_code == 200 and refused.status_code == 401
    first, second = access_records(caplog)
    line = JsonFormatter().format(first)
    record = as_json(first)
    assert record["request_id"] == "req-1" == ok.headers["x-request-id"]
    assert record["route"] == "/v1/customers/{customer_id}/recommendations"
    assert record["method"] == "GET" and record["status"] == 200
    assert record["key"] == "storefront" and record["model_version"] == version
    assert isinstance(record["duration_ms"], float) and record["duration_ms"] > 0
    assert record["level"] == "INFO" and record["logger"] == ACCESS_LOGGER and record["time"]
    assert customer not in line and key not in line
    refusal = as_json(second)
    assert refusal["route"] == "/v1/customers/{customer_id}/profile"
    assert refusal["status"] == 401 and refusal["key"] == "-"
    assert refusal["request_id"] == refused.headers["x-request-id"]
    assert customer not in JsonFormatter().format(second)


def test_records_logged_during_a_request_carry_its_id(tmp_path: Path) -> None:
    settings = Settings(
        bundle_dir=tmp_path / "none", event_log_dir=tmp_path / "events", bundle_poll_seconds=0
    )
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("lookbook")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        with TestClient(create_app(settings)) as c:
            stream.truncate(0)
            stream.seek(0)
            response = c.get("/v1/customers/C0000042/recommendations")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert response.status_code == 503
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    warning = next(line for line in lines if line["logger"] == "lookbook.app")
    access = next(line for line in lines if line["logger"] == ACCESS_LOGGER)
    assert warning["level"] == "WARNING" and "{customer_id}" in warning["message"]
    assert warning["request_id"] == access["request_id"] == response.headers["x-request-id"]
    assert access["model_version"] is None and access["status"] == 503
    assert "C0000042" not in stream.getvalue()


def test_the_formatter_writes_the_traceback_and_extra_fields() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord(
            "lookbook.test", logging.ERROR, __file__, 1, "failed %s", ("x",), sys.exc_info()
        )
    record.store = "S1"
    out = as_json(record)
    assert out["message"] == "failed x" and out["store"] == "S1" and "request_id" not in out
    assert "ValueError: boom" in out["exc_info"]


def test_serve_logs_json_lines_and_turns_uvicorns_access_log_off(
    restore_logging: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import uvicorn

    seen: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: seen.update(kwargs))
    result = CliRunner().invoke(cli, ["serve", "--port", "8123"])
    assert result.exit_code == 0, result.output
    assert seen["access_log"] is False and seen["log_config"] == log_config("INFO", "json")
    assert logging.getLogger("uvicorn.access").propagate is False
    (handler,) = logging.getLogger().handlers
    assert isinstance(handler.formatter, JsonFormatter)
    logging.config.dictConfig(log_config("INFO", "json"))
    logging.getLogger("uvicorn.error").info("Started server process [%d]", 1)
    logging.getLogger("uvicorn.access").info('1.2.3.4 - "GET /v1/customers/C1/profile" 200')
    lines = capsys.readouterr().err.strip().splitlines()
    assert [json.loads(line)["message"] for line in lines] == ["Started server process [1]"]
