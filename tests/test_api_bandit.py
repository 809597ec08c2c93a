"""The bandit as the feed's reranking stage: off by default (bodies of the fixed fusion), on it
records propensities and sources per position, learns from echoed clicks (visible at
``/v1/admin/bandit`` and in Prometheus), is deterministic under a seed, honours the exploration a
variant sets, composes with diversity by stepping aside, and shares its state through Redis."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.pipeline import Context
from app.schemas import BanditReport
from app.settings import Settings
from feature_store.errors import StoreUnavailable
from helpers import assert_matches
from models.bandit import BanditConfig


def make_settings(retailer: tuple[Path, Path], tmp_path: Path, **extra: Any) -> Settings:
    _, bundles = retailer
    return Settings(
        bundle_dir=bundles,
        event_log_dir=tmp_path / "events",
        bundle_poll_seconds=0,
        **{"redis_url": None, "cache_ttl_seconds": 0, **extra},
    )


def bandit_on(**extra: Any) -> BanditConfig:
    return BanditConfig(enabled=True, **extra)


@pytest.fixture(scope="module")
def customers(retailer: tuple[Path, Path]) -> list[str]:
    """Customers with the most purchases (personalized feeds with several sources)."""
    data, _ = retailer
    frame = pd.read_parquet(data / "interactions.parquet")
    bought = frame[frame["type"] == "purchase"]
    counts = bought.groupby("customer_id", observed=True).size().sort_values(ascending=False)
    return [str(c) for c in counts.index[:6]]


def feed(client: TestClient, customer: str, k: int = 10, extra: str = "") -> dict[str, Any]:
    response = client.get(
        f"/v1/customers/{customer}/recommendations?k={k}&exclude_purchased=false{extra}"
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def without_id(body: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in body.items() if key != "recommendation_id"}


def record(client: TestClient, recommendation_id: str) -> Any:
    found = client.app.state.service.attribution_store.get_served(recommendation_id)  # type: ignore[attr-defined]
    assert found is not None
    return found


def arms(client: TestClient) -> dict[tuple[str, str, str], dict[str, Any]]:
    response = client.get("/v1/admin/bandit")
    assert response.status_code == 200, response.text
    report = response.json()
    assert_matches(BanditReport, report)
    return {(a["surface"], a["segment"], a["source"]): a for a in report["arms"]}


def test_bandit_off_by_default_gives_the_fixed_fusion_bodies(
    retailer: tuple[Path, Path], tmp_path: Path, customers: list[str]
) -> None:
    """Off (the default) and explicitly off are the fixed fusion: the same bodies, propensity 1,
    no policy in the record, no evidence."""
    with (
        TestClient(create_app(make_settings(retailer, tmp_path / "a"))) as default,
        TestClient(
            create_app(make_settings(retailer, tmp_path / "b", bandit=BanditConfig(enabled=False)))
        ) as off,
        TestClient(create_app(make_settings(retailer, tmp_path / "c", bandit=bandit_on()))) as on,
    ):
        differs = 0
        for customer in customers:
            a, b, c = (feed(x, customer) for x in (default, off, on))
            assert without_id(a) == without_id(b)
            differs += without_id(a) != without_id(c)
            rec = record(default, a["recommendation_id"])
            assert rec.policy is None
            assert all(p.propensity == 1.0 for p in rec.items)
        assert differs > 0  # the bandit does change lists: the comparison can fail
        assert all(arm["impressions"] == 0 for arm in arms(default).values())


def test_bandit_on_records_propensities_and_sources_per_position(
    retailer: tuple[Path, Path], tmp_path: Path, customers: list[str]
) -> None:
    settings = make_settings(retailer, tmp_path, bandit=bandit_on(), bandit_seed=3)
    with TestClient(create_app(settings)) as client:
        below_one = 0
        for customer in customers:
            body = feed(client, customer)
            rec = record(client, body["recommendation_id"])
            assert rec.policy == "bandit"
            assert rec.strategy_surface == "home" and rec.segment == body["segment"]
            assert [p.item_id for p in rec.items] == [i["item_id"] for i in body["items"]]
            assert [p.source for p in rec.items] == [i["source"] for i in body["items"]]
            assert all(0.0 < p.propensity <= 1.0 for p in rec.items)
            below_one += sum(p.propensity < 1.0 for p in rec.items)
            scores = [i["score"] for i in body["items"]]
            assert scores == sorted(scores, reverse=True)
        assert below_one > 0  # Thompson sampling at 0.5: some choices were uncertain
        shown = {key: a for key, a in arms(client).items() if a["impressions"] > 0}
        assert sum(a["impressions"] for a in shown.values()) == pytest.approx(
            10 * len(customers),
            rel=1e-5,  # decayed over the test's seconds
        )
        for (surface, segment, _), arm in shown.items():
            pair = [a for (s, g, _), a in shown.items() if (s, g) == (surface, segment)]
            assert sum(a["traffic_share"] for a in pair) == pytest.approx(1.0)
            assert arm["low"] <= arm["mean"] <= arm["high"]


def test_a_cached_list_shown_again_counts_again(
    retailer: tuple[Path, Path], tmp_path: Path, customers: list[str]
) -> None:
    settings = make_settings(retailer, tmp_path, bandit=bandit_on(), cache_ttl_seconds=300)
    with TestClient(create_app(settings)) as client:
        first, second = feed(client, customers[0]), feed(client, customers[0])
        assert without_id(first) == without_id(second)
        assert first["recommendation_id"] != second["recommendation_id"]
        total = sum(a["impressions"] for a in arms(client).values())
        assert total == pytest.approx(2 * len(first["items"]), rel=1e-5)


def click(client: TestClient, customer: str, body: dict[str, Any], position: int) -> None:
    event = {
        "customer_id": customer,
        "item_id": body["items"][position]["item_id"],
        "type": "click",
        "timestamp": datetime.now(UTC).isoformat(),  # decay: now, not a fixed day
        "recommendation_id": body["recommendation_id"],
        "position": position,
    }
    response = client.post("/v1/events", json=[event])
    assert response.status_code == 200, response.text


def test_an_echoed_click_moves_that_arms_posterior(
    retailer: tuple[Path, Path], tmp_path: Path, customers: list[str]
) -> None:
    settings = make_settings(retailer, tmp_path, bandit=bandit_on(), bandit_seed=1)
    with TestClient(create_app(settings)) as client:
        customer = customers[0]
        body = feed(client, customer)
        source, segment = body["items"][0]["source"], body["segment"]
        before = arms(client)[("home", segment, source)]
        assert before["rewards"] == 0
        click(client, customer, body, 0)
        after = arms(client)
        arm = after[("home", segment, source)]
        assert arm["rewards"] == pytest.approx(1.0, rel=1e-5)
        assert arm["mean"] > before["mean"]
        others = [a for (s, g, src), a in after.items() if (s, g) == ("home", segment)]
        assert sum(a["rewards"] for a in others) == pytest.approx(1.0, rel=1e-5)  # only that arm
        metrics = client.get("/metrics").text
        assert (
            f'lookbook_bandit_weight{{segment="{segment}",source="{source}",surface="home"}}'
            in (metrics)
        )


def test_a_click_on_a_fixed_fusion_list_teaches_nothing(
    retailer: tuple[Path, Path], tmp_path: Path, customers: list[str]
) -> None:
    with TestClient(create_app(make_settings(retailer, tmp_path))) as client:
        body = feed(client, customers[0])
        click(client, customers[0], body, 0)
        assert all(a["rewards"] == 0 and a["impressions"] == 0 for a in arms(client).values())


def test_deterministic_under_a_seed(
    retailer: tuple[Path, Path], tmp_path: Path, customers: list[str]
) -> None:
    def run(name: str, seed: int) -> list[Any]:
        settings = make_settings(retailer, tmp_path / name, bandit=bandit_on(), bandit_seed=seed)
        with TestClient(create_app(settings)) as client:
            out = []
            for customer in customers:
                body = feed(client, customer)
                rec = record(client, body["recommendation_id"])
                out.append((without_id(body), [p.propensity for p in rec.items]))
            return out

    assert run("a", 11) == run("b", 11)
    assert run("c", 11) != run("d", 12)


def sources_shown(client: TestClient, customers: list[str], extra: str = "") -> list[list[float]]:
    return [
        [
            p.propensity
            for p in record(client, feed(client, c, extra=extra)["recommendation_id"]).items
        ]
        for c in customers
    ]


def test_exploration_from_the_context_is_honoured(
    retailer: tuple[Path, Path],
    tmp_path: Path,
    customers: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A variant's exploration (``Context.exploration``) overrides the configured level: 0 is
    greedy (every propensity 1), 1 uniform (1 / sources left); ``bandit_enabled`` False turns
    the bandit off for the request although the configuration has it on."""
    import app.feeds as feeds_module

    overrides: dict[str, Any] = {}
    original = feeds_module.ListOptions.apply

    def apply(self: Any, ctx: Context) -> Context:
        result = original(self, ctx)
        for name, value in overrides.items():
            setattr(ctx, name, value)
        return result

    monkeypatch.setattr(feeds_module.ListOptions, "apply", apply)
    settings = make_settings(retailer, tmp_path, bandit=bandit_on(exploration=0.5), bandit_seed=5)
    with TestClient(create_app(settings)) as client:
        overrides["exploration"] = 0.0
        assert all(p == 1.0 for ps in sources_shown(client, customers) for p in ps)
        overrides["exploration"] = 1.0
        uniform = [p for ps in sources_shown(client, customers) for p in ps]
        assert all(any(abs(p - 1.0 / n) < 1e-12 for n in range(1, 12)) for p in uniform)
        assert min(uniform) < 0.5
        overrides.clear()
        overrides["bandit_enabled"] = False
        body = feed(client, customers[0])
        assert record(client, body["recommendation_id"]).policy is None


def test_exploration_per_surface_from_the_configuration(
    retailer: tuple[Path, Path], tmp_path: Path, customers: list[str]
) -> None:
    config = bandit_on(exploration=0.5, exploration_by_surface={"email": 0.0})
    with TestClient(create_app(make_settings(retailer, tmp_path, bandit=config))) as client:
        greedy = sources_shown(client, customers, extra="&surface=email")
        assert all(p == 1.0 for ps in greedy for p in ps)
        assert any(p < 1.0 for ps in sources_shown(client, customers) for p in ps)


def test_diversity_turns_the_bandit_off_for_the_request(
    retailer: tuple[Path, Path], tmp_path: Path, customers: list[str]
) -> None:
    """Diversity reorders the pool, so the bandit's propensities would not be those of the shown
    positions: such a request is ranked by the fixed fusion and teaches the bandit nothing."""
    settings = make_settings(retailer, tmp_path, bandit=bandit_on())
    off = make_settings(retailer, tmp_path / "off")
    with TestClient(create_app(settings)) as client, TestClient(create_app(off)) as fixed:
        for customer in customers[:3]:
            body = feed(client, customer, extra="&diversity=0.5")
            assert without_id(body) == without_id(feed(fixed, customer, extra="&diversity=0.5"))
            rec = record(client, body["recommendation_id"])
            assert rec.policy is None and all(p.propensity == 1.0 for p in rec.items)
        assert all(a["impressions"] == 0 for a in arms(client).values())


def test_bandit_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOKBOOK_BANDIT__ENABLED", "true")
    monkeypatch.setenv("LOOKBOOK_BANDIT__EXPLORATION_BY_SURFACE", '{"email": 0.2}')
    monkeypatch.setenv("LOOKBOOK_BANDIT_SEED", "4")
    settings = Settings(redis_url=None)
    assert settings.bandit.enabled and settings.bandit.exploration_for("email") == 0.2
    assert settings.bandit_seed == 4
    monkeypatch.setenv("LOOKBOOK_BANDIT__EXPLORATION", "1.5")
    with pytest.raises(ValueError, match="exploration"):
        Settings(redis_url=None)


@pytest.fixture
def two_replicas(
    retailer: tuple[Path, Path], tmp_path: Path, redis_url: str, redis_prefix: str
) -> Iterator[tuple[TestClient, TestClient]]:
    def settings(name: str) -> Settings:
        return make_settings(
            retailer,
            tmp_path / name,
            redis_url=redis_url,
            redis_prefix=redis_prefix,
            bandit=bandit_on(),
        )

    with (
        TestClient(create_app(settings("a"))) as a,
        TestClient(create_app(settings("b"))) as b,
    ):
        yield a, b


def test_redis_state_is_shared_by_replicas(
    two_replicas: tuple[TestClient, TestClient], customers: list[str]
) -> None:
    a, b = two_replicas
    customer = customers[0]
    body = feed(a, customer)
    source, segment = body["items"][0]["source"], body["segment"]
    before = arms(b)[("home", segment, source)]
    assert (
        before["impressions"] >= 1 - 1e-6
    )  # A's showing, seen by B (decayed since: a hair under 1)
    click(a, customer, body, 0)
    after = arms(b)[("home", segment, source)]
    assert after["rewards"] == pytest.approx(1.0, rel=1e-5)
    assert after["mean"] > before["mean"]
    raw = orjson.loads(b.get("/v1/admin/bandit").content)
    assert raw["enabled"] is True


class BrokenState:
    """A bandit state whose every operation fails like an unreachable Redis."""

    half_life = BanditConfig().half_life_seconds

    def add(self, surface: str, segment: str, updates: Any, at: float, batch: Any = None) -> None:
        raise StoreUnavailable("bandit state down")

    def read(self, surface: str, segment: str, at: float) -> Any:
        raise StoreUnavailable("bandit state down")

    def arms(self, at: float) -> Any:
        raise StoreUnavailable("bandit state down")

    def ping(self) -> bool:
        return False


def test_a_failing_state_never_fails_a_list_or_an_event(
    retailer: tuple[Path, Path], tmp_path: Path, customers: list[str]
) -> None:
    """Reads fall back to the prior, writes are dropped; both are counted. The admin view says
    503 (the state is the report)."""
    settings = make_settings(retailer, tmp_path, bandit=bandit_on(), bandit_seed=2)
    with TestClient(create_app(settings)) as client:
        client.app.state.service.bandit.bandit.state = BrokenState()  # type: ignore[attr-defined]
        body = feed(client, customers[0])
        assert record(client, body["recommendation_id"]).policy == "bandit"
        click(client, customers[0], body, 0)
        metrics = client.get("/metrics").text
        for where in ("read", "impressions", "event"):
            assert f'lookbook_bandit_errors_total{{where="{where}"}} 1.0' in metrics
        assert client.get("/v1/admin/bandit").status_code == 503


def test_the_record_names_the_bandit_policy_only_when_it_ranked() -> None:
    from feature_store.served_lists import ServedList, stamp, template

    positions = [("I1", "als", 0.5), ("I2", "repeat", 1.0)]
    fixed = template(surface="personalized", model_version="v1", positions=positions)
    assert b"policy" not in fixed  # fixed-fusion records are byte-identical to before
    ranked = template(
        surface="personalized", model_version="v1", positions=positions, policy="bandit"
    )
    parsed = ServedList.from_json(stamp(ranked, "r1", datetime.now(UTC)))
    assert parsed.policy == "bandit"
    assert ServedList.from_record(parsed.to_record()) == parsed
    assert "policy" not in ServedList.from_json(stamp(fixed, "r2", datetime.now(UTC))).to_record()


def test_a_purchase_credited_through_the_window_rewards_the_arm(
    retailer: tuple[Path, Path], tmp_path: Path, customers: list[str]
) -> None:
    """With purchase as the reward, a purchase that echoes nothing but follows an attributed
    click of the same item (within the window) rewards the arm whose list showed the item."""
    settings = make_settings(retailer, tmp_path, bandit=bandit_on(reward="purchase"), bandit_seed=3)
    with TestClient(create_app(settings)) as client:
        customer = customers[1]
        body = feed(client, customer)
        source, segment = body["items"][0]["source"], body["segment"]
        click(client, customer, body, 0)
        assert arms(client)[("home", segment, source)]["rewards"] == 0  # a click is no purchase
        purchase = {
            "customer_id": customer,
            "item_id": body["items"][0]["item_id"],
            "type": "purchase",
            "timestamp": datetime.now(UTC).isoformat(),
            "price": 20.0,
        }
        assert client.post("/v1/events", json=[purchase]).status_code == 200
        arm = arms(client)[("home", segment, source)]
        assert arm["rewards"] == pytest.approx(1.0, rel=1e-5)
