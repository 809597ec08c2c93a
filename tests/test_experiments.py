"""A/B experiments: the file's validation, sticky assignment and its shares, the window, the
variant in body / record / cache key / pipeline context, the admin endpoints, and the statistics
against scipy's own tests and hand-computed answers."""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from scipy import stats

import app.feeds
from app.cache import InProcessCache
from app.customers import Clock
from app.experiments import Experiments, bucket
from app.main import create_app
from app.outfit_sources import look_sources
from app.pipeline import Context, Pipeline
from app.response_cache import FeedKey
from app.schemas import (
    ExperimentList,
    ExperimentReport,
    PersonalizedList,
    PersonalizedListInExperiment,
    SessionListInExperiment,
)
from app.settings import Settings
from app.strategy_sources import build_sources
from feature_store.errors import DataFormatError
from helpers import assert_matches
from models import experiment_stats as st

NOW = datetime.now(UTC)
SOURCES = {**build_sources(), "popular": app.feeds.PopularitySource(), **look_sources(Clock())}
SURFACES = {"home", "email", "session"}
LOOK = ("complete_look", "seasonal")


def experiment(
    name: str = "feed_test",
    surface: str = "home",
    *,
    start: datetime = NOW - timedelta(days=1),
    end: datetime = NOW + timedelta(days=30),
    variants: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "name": name,
        "surface": surface,
        "start": start.isoformat(),
        "end": end.isoformat(),
        "variants": variants
        or [
            {"name": "control", "share": 0.5, "control": True},
            {
                "name": "popular_only",
                "share": 0.5,
                "strategy": {"default": [{"source": "popular", "weight": 1.0}]},
                "bandit": {"enabled": True, "exploration": 0.3},
            },
        ],
    }


def parse(*experiments: dict[str, Any]) -> Experiments:
    return Experiments({"experiments": list(experiments)}, SOURCES, SURFACES, file="exp.json")


def error_of(*experiments: dict[str, Any]) -> str:
    with pytest.raises(DataFormatError) as caught:
        parse(*experiments)
    return str(caught.value)


# -- the file ------------------------------------------------------------------------------------


def test_file_errors_name_the_key() -> None:
    bad_share = experiment(variants=[{"name": "a", "share": 0.5, "control": True},
                                     {"name": "b", "share": 0.4}])  # fmt: skip
    message = error_of(bad_share)
    assert "'experiments.0.variants'" in message and "shares must sum to 1" in message
    assert "exp.json" in message

    unknown = experiment(variants=[
        {"name": "a", "share": 0.5, "control": True},
        {"name": "b", "share": 0.5, "strategy": {"high_value": [{"source": "nope"}]}},
    ])  # fmt: skip
    message = error_of(unknown)
    assert "'experiments.0.variants.1.strategy.high_value.0.source'" in message
    assert "unknown source 'nope'" in message

    weights = experiment(variants=[
        {"name": "a", "share": 0.5, "control": True},
        {"name": "b", "share": 0.5, "blend": {"weights": {"alss": 1.0}}},
    ])  # fmt: skip
    assert "'experiments.0.variants.1.blend.weights.alss'" in error_of(weights)

    misspelt = experiment(variants=[{"name": "a", "share": 1.0, "contorl": True},
                                    {"name": "b", "share": 0.0}])  # fmt: skip
    message = error_of(misspelt)
    assert "unknown key 'contorl'" in message and "experiments.0.variants.0.contorl" in message
    assert "allowed: bandit, blend, control, name, ranker, share, strategy" in message
    missing = experiment(variants=[{"name": "a", "control": True}, {"name": "b", "share": 1.0}])
    assert "'experiments.0.variants.0.share'" in error_of(missing)

    two_controls = experiment(variants=[{"name": "a", "share": 0.5, "control": True},
                                        {"name": "b", "share": 0.5, "control": True}])  # fmt: skip
    assert "exactly one variant must be control, got 2" in error_of(two_controls)
    assert "unknown surface 'kiosk'" in error_of(experiment(surface="kiosk"))
    backwards = experiment(start=NOW, end=NOW - timedelta(hours=1))
    assert "must be after start" in error_of(backwards)
    exploration = experiment(variants=[
        {"name": "a", "share": 0.5, "control": True},
        {"name": "b", "share": 0.5, "bandit": {"exploration": 1.5}},
    ])  # fmt: skip
    assert "experiments.0.variants.1.bandit.exploration" in error_of(exploration)
    assert "duplicate experiment" in error_of(experiment(surface="home"),
                                              experiment(surface="email"))  # fmt: skip


def test_overlapping_experiments_on_one_surface_are_refused() -> None:
    first = experiment("first", start=NOW, end=NOW + timedelta(days=10))
    overlapping = experiment("second", start=NOW + timedelta(days=9), end=NOW + timedelta(days=20))
    message = error_of(first, overlapping)
    assert "'experiments.1.start'" in message and "overlaps 'first'" in message
    after = experiment("second", start=NOW + timedelta(days=10), end=NOW + timedelta(days=20))
    elsewhere = experiment("third", surface="email", start=NOW, end=NOW + timedelta(days=10))
    assert set(parse(first, after, elsewhere).experiments) == {"first", "second", "third"}


def test_yaml_file_and_start_up_errors(retailer: tuple[Path, Path], tmp_path: Path) -> None:
    path = tmp_path / "experiments.yaml"
    path.write_text(
        "experiments:\n"
        "  - name: yaml_test\n    surface: email\n"
        "    start: 2020-01-01T00:00:00Z\n    end: 2100-01-01T00:00:00Z\n"
        "    variants:\n"
        "      - {name: control, share: 0.25, control: true}\n"
        "      - {name: treatment, share: 0.75, blend: {rrf_k: 10}}\n"
    )
    loaded = Experiments.from_file(path, SOURCES, SURFACES).experiments["yaml_test"]
    assert [(v.name, v.share, v.rrf_k) for v in loaded.variants] == [
        ("control", 0.25, None),
        ("treatment", 0.75, 10.0),
    ]
    path.write_text("experiments: [unclosed")
    with pytest.raises(DataFormatError, match="cannot read experiments file"):
        Experiments.from_file(path, SOURCES, SURFACES)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"experiments": [experiment(surface="nowhere")]}))
    with pytest.raises(DataFormatError, match=r"experiments\.0\.surface"):
        create_app(settings(retailer, tmp_path, experiments_file=bad))


# -- assignment ----------------------------------------------------------------------------------


def test_assignment_is_sticky_and_deterministic() -> None:
    one, two = parse(experiment()), parse(experiment())  # two "app instances"
    for i in range(200):
        customer = f"C{i:07d}"
        a = one.assign("home", customer, NOW)
        b = two.assign("home", customer, NOW)
        assert a is not None and b is not None
        assert a.variant.name == b.variant.name == one.assign("home", customer, NOW).variant.name  # type: ignore[union-attr]
    # the hash is fixed: SHA-256 of "<experiment>\0<unit>", first 64 bits over 2**64
    digest = hashlib.sha256(b"feed_test\x00C0000001").digest()
    assert bucket("feed_test", "C0000001") == int.from_bytes(digest[:8], "big") / 2**64
    assert bucket("feed_test", "C0000001") != bucket("other_test", "C0000001")


def test_shares_are_respected() -> None:
    variants = [
        {"name": "control", "share": 0.2, "control": True},
        {"name": "b", "share": 0.3},
        {"name": "c", "share": 0.5},
    ]
    experiments = parse(experiment(variants=variants))
    n = 20_000
    seen = Counter(
        experiments.assign("home", f"customer-{i}", NOW).variant.name  # type: ignore[union-attr]
        for i in range(n)
    )
    for variant in variants:
        share = seen[variant["name"]] / n
        # 4 standard errors of a binomial share at n = 20,000 is at most 0.014
        assert share == pytest.approx(variant["share"], abs=0.014), (variant, share)


def test_nobody_is_assigned_outside_the_window_or_on_another_surface() -> None:
    start, end = NOW, NOW + timedelta(days=7)
    experiments = parse(experiment(start=start, end=end))
    assert experiments.assign("home", "C1", start) is not None
    assert experiments.assign("home", "C1", start - timedelta(seconds=1)) is None
    assert experiments.assign("home", "C1", end) is None, "the window is [start, end)"
    assert experiments.assign("email", "C1", start) is None
    assert experiments.assign("home", None, start) is None


def test_the_variant_sets_the_pipeline_context() -> None:
    experiments = parse(experiment())
    customer = next(
        f"C{i}"
        for i in range(1000)
        if experiments.assign("home", f"C{i}", NOW).variant.name == "popular_only"  # type: ignore[union-attr]
    )
    assignment = experiments.assign("home", customer, NOW)
    assert assignment is not None
    ctx = assignment.apply(Context(bundle=None, k=5))  # type: ignore[arg-type]
    assert (ctx.variant, ctx.bandit_enabled, ctx.exploration) == (
        "feed_test:popular_only",
        True,
        0.3,
    )
    als = SOURCES["als"]
    strategy = assignment.strategy("high_value", [(als, 1.0)])
    assert [(s.name, w) for s, w in strategy] == [("popular", 1.0)], "default covers every segment"
    blended = parse(experiment(variants=[
        {"name": "control", "share": 0.0, "control": True},
        {"name": "b", "share": 1.0, "blend": {"weights": {"popular": 2.0, "seasonal": 9.0},
                                              "rrf_k": 10}},
    ])).assign("home", "C1", NOW)  # fmt: skip
    assert blended is not None
    weights, rrf_k = blended.reweighted([(als, 1.0), (SOURCES["popular"], 0.5)], 60.0)
    assert [(s.name, w) for s, w in weights] == [("als", 1.0), ("popular", 2.0)] and rrf_k == 10
    assert blended.strategy("new", [(als, 1.0)]) == [(als, 1.0)], "no strategy: the surface's"


def test_variants_never_share_a_cache_key() -> None:
    base = {"version": "v", "customer_id": "C1", "k": 12, "category": None,
            "exclude_purchased": True, "surface": "home", "in_stock_in_my_size": False,
            "store_id": None}  # fmt: skip
    plain = FeedKey(**base)  # type: ignore[arg-type]
    assert plain.field == "rec:12::1:home:0:", "keys outside experiments are unchanged"
    a = FeedKey(**base, variant="feed_test:control")  # type: ignore[arg-type]
    b = FeedKey(**base, variant="feed_test:popular_only")  # type: ignore[arg-type]
    assert len({plain.field, a.field, b.field}) == 3 and a.group == b.group == plain.group


# -- through the API -----------------------------------------------------------------------------


def settings(retailer: tuple[Path, Path], tmp_path: Path, **extra: Any) -> Settings:
    _, bundles = retailer
    return Settings(
        bundle_dir=bundles,
        event_log_dir=tmp_path / "events",
        bundle_poll_seconds=0,
        **{"redis_url": None, **extra},
    )


def write(tmp_path: Path, *experiments: dict[str, Any], name: str = "experiments.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps({"experiments": list(experiments)}))
    return path


@pytest.fixture(scope="module")
def customers(retailer: tuple[Path, Path]) -> list[str]:
    data, _ = retailer
    frame = pd.read_parquet(data / "interactions.parquet")
    bought = frame[frame["type"] == "purchase"]
    counts = bought.groupby("customer_id", observed=True).size().sort_values(ascending=False)
    return [str(c) for c in counts.index[:60]]


@pytest.fixture
def client(retailer: tuple[Path, Path], tmp_path: Path) -> Iterator[TestClient]:
    path = write(tmp_path, experiment(), experiment("session_test", "session"))
    with TestClient(create_app(settings(retailer, tmp_path, experiments_file=path))) as c:
        yield c


def one_in(client: TestClient, customers: list[str], variant: str, surface: str = "home") -> str:
    experiments = client.app.state.service.feeds.experiments  # type: ignore[attr-defined]
    return next(c for c in customers if experiments.assign(surface, c, NOW).variant.name == variant)


def feed(client: TestClient, customer: str, surface: str = "home") -> dict[str, Any]:
    response = client.get(f"/v1/customers/{customer}/recommendations?k=8&surface={surface}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_variant_in_body_record_and_sticky_across_app_instances(
    client: TestClient, customers: list[str], retailer: tuple[Path, Path], tmp_path: Path
) -> None:
    service = client.app.state.service  # type: ignore[attr-defined]
    for variant in ("control", "popular_only"):
        customer = one_in(client, customers, variant)
        body = feed(client, customer)
        assert_matches(PersonalizedListInExperiment, body)
        assert body["experiment"] == {"name": "feed_test", "variant": variant}
        record = service.attribution_store.get_served(body["recommendation_id"])
        assert record.variant == f"feed_test:{variant}"
        again = feed(client, customer)  # from the cache: the same variant, a new record
        assert again["experiment"] == body["experiment"]
        assert again["items"] == body["items"]
        assert service.attribution_store.get_served(again["recommendation_id"]).variant == (
            f"feed_test:{variant}"
        )
        if variant == "popular_only":  # the look sources join every strategy at low weights
            assert {i["source"] for i in body["items"]} <= {"popular", *LOOK}
    other_dir = tmp_path / "other"
    other_dir.mkdir()
    path = write(other_dir, experiment())
    with TestClient(create_app(settings(retailer, other_dir, experiments_file=path))) as other:
        for customer in customers[:20]:
            assert feed(other, customer)["experiment"] == feed(client, customer)["experiment"]


def test_bodies_outside_experiments_are_unchanged(
    client: TestClient, customers: list[str], retailer: tuple[Path, Path], tmp_path: Path
) -> None:
    plain_dir = tmp_path / "plain"
    plain_dir.mkdir()
    service = client.app.state.service  # type: ignore[attr-defined]
    with TestClient(create_app(settings(retailer, plain_dir))) as plain:
        for customer in customers[:5]:
            inside = feed(client, customer, surface="email")  # no experiment on email
            outside = feed(plain, customer, surface="email")
            assert "experiment" not in inside
            assert_matches(PersonalizedList, inside)
            del inside["recommendation_id"], outside["recommendation_id"]
            assert inside == outside
            rec = feed(client, customer, surface="email")["recommendation_id"]
            assert service.attribution_store.get_served(rec).variant is None
        assert plain.get("/v1/admin/experiments").json() == {"experiments": []}


def test_a_customer_without_consent_is_in_no_experiment(
    client: TestClient, customers: list[str]
) -> None:
    customer = customers[-1]
    response = client.put(f"/v1/customers/{customer}/consent", json={"personalization": False})
    assert response.status_code == 200, response.text
    body = feed(client, customer)
    assert "experiment" not in body and body["personalized"] is False


def test_variants_never_share_a_cached_body(
    retailer: tuple[Path, Path], tmp_path: Path, customers: list[str]
) -> None:
    cache = InProcessCache(max_groups=1000)
    everyone_control = [{"name": "control", "share": 1.0, "control": True},
                        {"name": "popular_only", "share": 0.0,
                         "strategy": {"default": [{"source": "popular"}]}}]  # fmt: skip
    everyone_treated = [{**everyone_control[0], "share": 0.0},
                        {**everyone_control[1], "share": 1.0}]  # fmt: skip
    bodies = []
    for i, variants in enumerate((everyone_control, everyone_treated)):
        folder = tmp_path / str(i)
        folder.mkdir()
        path = write(folder, experiment(variants=variants))
        app_ = create_app(settings(retailer, folder, experiments_file=path), cache=cache)
        with TestClient(app_) as c:
            bodies.append(feed(c, customers[0]))
    control, treated = bodies
    assert control["experiment"]["variant"] == "control"
    assert treated["experiment"]["variant"] == "popular_only", "not the cached control body"
    assert {i["source"] for i in treated["items"]} <= {"popular", *LOOK}
    assert not {i["source"] for i in control["items"]} <= {"popular", *LOOK}


def test_the_pipeline_sees_the_variant(
    client: TestClient, customers: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[str | None, bool | None, float | None]] = []
    run = Pipeline.run

    def spy(self: Pipeline, ctx: Context) -> Any:
        seen.append((ctx.variant, ctx.bandit_enabled, ctx.exploration))
        return run(self, ctx)

    monkeypatch.setattr(Pipeline, "run", spy)
    feed(client, one_in(client, customers, "popular_only"))
    feed(client, one_in(client, customers, "control"))
    assert seen == [("feed_test:popular_only", True, 0.3), ("feed_test:control", None, None)]


def test_sessions_join_an_experiment_with_a_session_id(
    client: TestClient, retailer: tuple[Path, Path]
) -> None:
    data, _ = retailer
    item = str(pd.read_parquet(data / "items.parquet")["item_id"].iloc[0])
    plain = client.post("/v1/sessions/recommendations", json={"items": [item], "k": 5}).json()
    assert "experiment" not in plain
    experiments = client.app.state.service.feeds.experiments  # type: ignore[attr-defined]
    session = next(
        f"s{i}"
        for i in range(1000)
        if experiments.assign("session", f"s{i}", NOW).variant.name == "popular_only"  # type: ignore[union-attr]
    )
    request = {"items": [item], "k": 5, "session_id": session}
    body = client.post("/v1/sessions/recommendations", json=request).json()
    assert_matches(SessionListInExperiment, body)
    assert body["experiment"] == {"name": "session_test", "variant": "popular_only"}
    assert {i["source"] for i in body["items"]} == {"popular"}
    record = client.app.state.service.attribution_store.get_served(body["recommendation_id"])  # type: ignore[attr-defined]
    assert record.variant == "session_test:popular_only" and record.customer_id is None


def test_admin_listing_and_unknown_experiment(client: TestClient) -> None:
    listing = client.get("/v1/admin/experiments").json()
    assert_matches(ExperimentList, listing)
    names = {e["name"]: e for e in listing["experiments"]}
    assert set(names) == {"feed_test", "session_test"}
    variants = names["feed_test"]["variants"]
    assert names["feed_test"]["running"] is True
    assert [(v["name"], v["share"], v["control"]) for v in variants] == [
        ("control", 0.5, True),
        ("popular_only", 0.5, False),
    ]
    assert variants[1]["strategy_override"] is True and variants[1]["exploration"] == 0.3
    response = client.get("/v1/admin/experiments/nope")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_attributed_clicks_show_up_in_their_variants_ctr(
    client: TestClient, customers: list[str]
) -> None:
    control_customer = one_in(client, customers, "control")
    treated_customer = one_in(client, customers, "popular_only")
    control = feed(client, control_customer)
    treated = feed(client, treated_customer)
    item = treated["items"][1]
    events = [
        {"customer_id": treated_customer, "item_id": item["item_id"], "type": "click",
         "timestamp": NOW.isoformat(), "recommendation_id": treated["recommendation_id"],
         "position": 1},
        {"customer_id": treated_customer, "item_id": item["item_id"], "type": "purchase",
         "timestamp": NOW.isoformat(), "price": 30.0},
    ]  # fmt: skip
    assert client.post("/v1/events", json=events).status_code == 200
    report = client.get("/v1/admin/experiments/feed_test").json()
    assert_matches(ExperimentReport, report)
    by_name = {v["name"]: v for v in report["variants"]}
    c, t = by_name["control"], by_name["popular_only"]
    assert (c["impressions"], c["clicks"], c["purchases"]) == (len(control["items"]), 0, 0)
    assert (t["impressions"], t["clicks"], t["purchases"]) == (len(treated["items"]), 1, 1)
    assert t["revenue"] == 30.0
    n = t["impressions"]
    assert t["click_through_rate"]["value"] == pytest.approx(1 / n)
    wilson = stats.binomtest(1, n).proportion_ci(method="wilson")
    assert t["click_through_rate"]["low"] == pytest.approx(wilson.low)
    assert t["click_through_rate"]["high"] == pytest.approx(wilson.high)
    assert c["click_through_rate"]["value"] == 0.0 and c["click_through_rate"]["vs_control"] is None
    diff = t["click_through_rate"]["vs_control"]
    assert diff["difference"] == pytest.approx(1 / n)
    assert diff["p_value"] == pytest.approx(
        st.compare_proportions(1, n, 0, c["impressions"]).p_value
    )
    assert t["revenue_per_1000"]["value"] == pytest.approx(30_000 / n)


# -- the statistics ------------------------------------------------------------------------------


@pytest.mark.parametrize(("k", "n"), [(0, 10), (1, 10), (38, 10_000), (7, 7), (120, 900)])
def test_wilson_matches_scipy(k: int, n: int) -> None:
    ours = st.wilson_interval(k, n)
    theirs = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    assert ours.value == k / n
    assert (ours.low, ours.high) == pytest.approx((theirs.low, theirs.high), abs=1e-12)
    assert st.wilson_interval(0, 0) == st.Estimate(None, None, None)
    with pytest.raises(ValueError):
        st.wilson_interval(11, 10)


@pytest.mark.parametrize(("a", "n", "b", "m"), [(42, 10_000, 38, 10_000), (30, 500, 12, 480),
                                                (0, 100, 5, 100)])  # fmt: skip
def test_two_proportion_z_test_matches_chi_square_and_hand_interval(
    a: int, n: int, b: int, m: int
) -> None:
    ours = st.compare_proportions(a, n, b, m)
    table = np.array([[a, n - a], [b, m - b]])
    chi2 = stats.chi2_contingency(table, correction=False)
    assert ours.p_value == pytest.approx(chi2.pvalue, rel=1e-9)
    p1, p0 = a / n, b / m
    half = 1.959963984540054 * math.sqrt(p1 * (1 - p1) / n + p0 * (1 - p0) / m)
    assert ours.difference == pytest.approx(p1 - p0)
    assert (ours.low, ours.high) == pytest.approx((p1 - p0 - half, p1 - p0 + half))
    assert st.compare_proportions(0, 100, 0, 100).p_value == 1.0
    assert st.compare_proportions(1, 0, 1, 10).p_value is None


def test_revenue_per_1000_matches_welch() -> None:
    rng = np.random.default_rng(3)
    variant = np.where(rng.random(4000) < 0.02, rng.uniform(10, 90, 4000), 0.0)
    control = np.where(rng.random(3000) < 0.01, rng.uniform(10, 90, 3000), 0.0)

    def summary(x: np.ndarray) -> tuple[float, float, int]:
        return float(x.sum()), float((x * x).sum()), len(x)

    est = st.mean_interval(*summary(variant), scale=1000.0)
    se = variant.std(ddof=1) / math.sqrt(len(variant))
    assert est.value == pytest.approx(1000 * variant.mean())
    assert est.low == pytest.approx(1000 * (variant.mean() - 1.959963984540054 * se))
    ours = st.compare_means(*summary(variant), *summary(control), scale=1000.0)
    welch = stats.ttest_ind(variant, control, equal_var=False)
    ci = welch.confidence_interval(0.95)
    assert ours.p_value == pytest.approx(welch.pvalue, rel=1e-6)
    assert ours.difference == pytest.approx(1000 * (variant.mean() - control.mean()))
    assert (ours.low, ours.high) == pytest.approx((1000 * ci.low, 1000 * ci.high), rel=1e-6)
    assert st.compare_means(0.0, 0.0, 10, 0.0, 0.0, 10).p_value == 1.0
    assert st.mean_interval(0.0, 0.0, 0) == st.Estimate(None, None, None)


def test_a_variant_reweights_the_look_sources_too(
    retailer: tuple[Path, Path],
    tmp_path: Path,
    customers: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The seasonal and complete-the-look sources join every strategy that does not name them;
    a variant's blend weight for them must reach the pipeline like any other source's."""
    heavy = experiment(
        variants=[
            {"name": "control", "share": 0.5, "control": True},
            {"name": "seasonal_heavy", "share": 0.5, "blend": {"weights": {"seasonal": 10.0}}},
        ]
    )
    seen: dict[str | None, dict[str, float]] = {}
    run = Pipeline.run

    def spy(self: Pipeline, ctx: Context) -> Any:
        seen[ctx.variant] = {source.name: weight for source, weight in self.sources}
        return run(self, ctx)

    monkeypatch.setattr(Pipeline, "run", spy)
    path = write(tmp_path, heavy)
    with TestClient(create_app(settings(retailer, tmp_path, experiments_file=path))) as c:
        feed(c, one_in(c, customers, "seasonal_heavy"))
        feed(c, one_in(c, customers, "control"))
    assert seen["feed_test:seasonal_heavy"]["seasonal"] == 10.0
    assert 0 < seen["feed_test:control"]["seasonal"] < 10.0


def test_a_variant_turns_the_learned_ranker_off_or_on() -> None:
    variants = [
        {"name": "control", "share": 0.5, "control": True},
        {"name": "no_ranker", "share": 0.5, "ranker": False},
    ]
    experiments = parse(experiment(variants=variants))
    seen = {}
    for i in range(200):
        assignment = experiments.assign("home", f"C{i}", NOW)
        assert assignment is not None
        ctx = assignment.apply(Context(bundle=None, k=5))  # type: ignore[arg-type]
        seen[assignment.variant.name] = ctx.ranker_enabled
    assert seen == {"control": None, "no_ranker": False}  # None: the service's setting
