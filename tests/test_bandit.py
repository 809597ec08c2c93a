"""The Thompson-sampling bandit over recommendation sources (models.bandit) and its state
(feature_store.bandit_state): one contract suite on the in-process and the Redis state, the
reranking step's propensities, exploration, prior, decay, and a simulated shop it must learn."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from scipy import integrate
from scipy import stats as sps

from feature_store.bandit_state import (
    EPOCH_HALF_LIVES,
    ArmStats,
    BanditState,
    InMemoryBanditState,
    RedisBanditState,
)
from feature_store.config import StrictConfig
from feature_store.schema import InteractionType
from feature_store.timeutils import SECONDS_PER_DAY
from models.bandit import (
    Bandit,
    BanditConfig,
    Posterior,
    concentration,
    fixed_rerank,
    posterior,
    prior,
    rerank,
    slot_probabilities,
)
from models.bundle import DEFAULT_WEIGHTS, SOURCES, rrf_fuse_row

HALF_LIFE = 7 * SECONDS_PER_DAY
T0 = 1_700_000_000.0


# --------------------------------------------------------------------------------------------------
# State: one contract suite, in-process and Redis
# --------------------------------------------------------------------------------------------------


def _make_state(request: pytest.FixtureRequest, half_life: float | None) -> Iterator[BanditState]:
    if request.param == "memory":
        yield InMemoryBanditState(half_life)
        return
    url: str = request.getfixturevalue("redis_url")
    prefix: str = request.getfixturevalue("redis_prefix")
    state = RedisBanditState(half_life, url=url, prefix=prefix)
    yield state
    state.close()


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def state(request: pytest.FixtureRequest) -> Iterator[BanditState]:
    yield from _make_state(request, HALF_LIFE)


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def undecayed(request: pytest.FixtureRequest) -> Iterator[BanditState]:
    yield from _make_state(request, None)


def _approx(stats: ArmStats, **expected: float) -> None:
    for name in ("impressions", "clicks", "add_to_carts", "purchases", "revenue"):
        assert getattr(stats, name) == pytest.approx(expected.get(name, 0.0), rel=1e-12, abs=1e-12)


def test_state_implements_the_protocol(state: BanditState) -> None:
    assert isinstance(state, BanditState)
    assert state.ping() is True
    assert state.read("home", "default", T0) == {}
    assert state.arms(T0) == {}


def test_state_adds_and_reads_back_at_the_same_time(state: BanditState) -> None:
    state.add("home", "default", {"als": ArmStats(impressions=12, clicks=1)}, T0)
    state.add("home", "default", {"als": ArmStats(impressions=3), "repeat": ArmStats(9, 2)}, T0)
    state.add("email", "new", {"starter": ArmStats(purchases=1, revenue=59.9)}, T0)
    read = state.read("home", "default", T0)
    assert set(read) == {"als", "repeat"}
    _approx(read["als"], impressions=15, clicks=1)
    _approx(read["repeat"], impressions=9, clicks=2)
    _approx(state.read("email", "new", T0)["starter"], purchases=1, revenue=59.9)
    assert state.read("home", "new", T0) == {}


def test_decay_halves_old_evidence_after_one_half_life(state: BanditState) -> None:
    state.add("home", "default", {"als": ArmStats(impressions=100, clicks=8)}, T0)
    _approx(state.read("home", "default", T0 + HALF_LIFE)["als"], impressions=50, clicks=4)
    _approx(state.read("home", "default", T0 + 3 * HALF_LIFE)["als"], impressions=12.5, clicks=1)
    # a late event is decayed from its own time: one half-life old when read at T0
    state.add("home", "default", {"als": ArmStats(impressions=40)}, T0 - HALF_LIFE)
    _approx(state.read("home", "default", T0)["als"], impressions=120, clicks=8)


def test_decay_carries_across_an_epoch_boundary(state: BanditState) -> None:
    epoch_length = EPOCH_HALF_LIVES * HALF_LIFE
    boundary = (np.floor(T0 / epoch_length) + 1) * epoch_length
    before, after = boundary - HALF_LIFE / 2, boundary + HALF_LIFE / 2
    state.add("home", "default", {"als": ArmStats(impressions=64)}, before)
    state.add("home", "default", {"als": ArmStats(impressions=10)}, after)
    # the first is one half-life old at `after`; the second is new
    _approx(state.read("home", "default", after)["als"], impressions=42)
    _approx(state.read("home", "default", after + HALF_LIFE)["als"], impressions=21)


def test_without_a_half_life_evidence_never_fades(undecayed: BanditState) -> None:
    undecayed.add("home", "default", {"als": ArmStats(impressions=5, clicks=1)}, T0)
    undecayed.add("home", "default", {"als": ArmStats(impressions=5)}, T0 + 1e9)
    _approx(undecayed.read("home", "default", T0 + 2e9)["als"], impressions=10, clicks=1)


def test_arms_lists_every_surface_and_segment(state: BanditState) -> None:
    state.add("home", "default", {"als": ArmStats(1), "repeat": ArmStats(2)}, T0)
    state.add("email", "sleeping", {"win_back": ArmStats(4, 1)}, T0 - HALF_LIFE)
    arms = state.arms(T0)
    assert sorted(arms) == [("email", "sleeping"), ("home", "default")]
    assert sorted(arms["home", "default"]) == ["als", "repeat"]
    _approx(arms["email", "sleeping"]["win_back"], impressions=2, clicks=0.5)


def test_names_with_the_separator_are_refused(state: BanditState) -> None:
    with pytest.raises(ValueError, match="surface"):
        state.add("home:x", "default", {"als": ArmStats(1)}, T0)
    with pytest.raises(ValueError, match="source"):
        state.add("home", "default", {"a:b": ArmStats(1)}, T0)


@pytest.mark.redis
def test_redis_and_memory_state_agree(redis_url: str, redis_prefix: str) -> None:
    memory = InMemoryBanditState(HALF_LIFE)
    shared = RedisBanditState(HALF_LIFE, url=redis_url, prefix=redis_prefix)
    rng = np.random.default_rng(7)
    sources = ["als", "repeat", "popularity"]
    for _ in range(60):
        at = T0 + float(rng.uniform(-30, 30)) * SECONDS_PER_DAY  # out of order, across epochs
        surface = str(rng.choice(["home", "email"]))
        updates = {
            str(s): ArmStats(
                impressions=float(rng.integers(1, 13)),
                clicks=float(rng.integers(0, 2)),
                purchases=float(rng.integers(0, 2)),
                revenue=float(rng.uniform(0, 100)),
            )
            for s in rng.choice(sources, size=2, replace=False)
        }
        memory.add(surface, "default", updates, at)
        shared.add(surface, "default", updates, at)
    for at in (T0, T0 + 40 * SECONDS_PER_DAY):
        a, b = memory.arms(at), shared.arms(at)
        assert sorted(a) == sorted(b)
        for pair in a:
            assert sorted(a[pair]) == sorted(b[pair])
            for source, stats in a[pair].items():
                for name in ("impressions", "clicks", "purchases", "revenue"):
                    assert getattr(b[pair][source], name) == pytest.approx(
                        getattr(stats, name), rel=1e-12
                    )
    shared.close()


@pytest.mark.redis
def test_concurrent_updates_from_two_clients_add_up(redis_url: str, redis_prefix: str) -> None:
    replicas = [RedisBanditState(HALF_LIFE, url=redis_url, prefix=redis_prefix) for _ in range(2)]
    per_thread = 150

    def work(replica: RedisBanditState, offset: float) -> None:
        for i in range(per_thread):
            update = {"als": ArmStats(impressions=1, clicks=i % 2), "repeat": ArmStats(2)}
            replica.add("home", "default", update, T0 + offset + i)

    threads = [
        threading.Thread(target=work, args=(replica, 1000.0 * n))
        for n, replica in enumerate(replicas)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    at = T0 + 2000.0
    expected_als = sum(
        float(2 ** (-(at - (T0 + 1000.0 * n + i)) / HALF_LIFE))
        for n in range(2)
        for i in range(per_thread)
    )
    read = replicas[0].read("home", "default", at)
    assert read["als"].impressions == pytest.approx(expected_als, rel=1e-12)
    assert read["repeat"].impressions == pytest.approx(2 * expected_als, rel=1e-12)
    assert read == replicas[1].read("home", "default", at)
    assert read["als"].impressions == pytest.approx(2 * per_thread, rel=5e-3)  # barely decayed
    for replica in replicas:
        replica.close()


# --------------------------------------------------------------------------------------------------
# The reranking step
# --------------------------------------------------------------------------------------------------


def _lists(seed: int, n_sources: int = 6, depth: int = 36, catalog: int = 300) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [rng.choice(catalog, depth, replace=False).tolist() for _ in range(n_sources)]


def _belief(a: list[float], b: list[float]) -> Posterior:
    return Posterior(tuple(f"s{i}" for i in range(len(a))), np.array(a), np.array(b))


def test_rerank_is_deterministic_under_a_seed() -> None:
    belief = prior(SOURCES, {s: 1.0 for s in SOURCES}, BanditConfig())
    lists = _lists(0)
    first = rerank(lists, belief, 12, 0.5, np.random.default_rng(3))
    again = rerank(lists, belief, 12, 0.5, np.random.default_rng(3))
    other = rerank(lists, belief, 12, 0.5, np.random.default_rng(4))
    assert (first.items, first.sources, first.propensities) == (
        again.items,
        again.sources,
        again.propensities,
    )
    assert first.sources != other.sources


def test_each_item_is_taken_once_from_its_source_in_order() -> None:
    lists = [[1, 2, 3, 4], [2, 3, 5, 6], [3, 1, 7, 8]]
    belief = _belief([5.0, 5.0, 5.0], [95.0, 95.0, 95.0])
    for seed in range(20):
        out = rerank(lists, belief, 10, 0.5, np.random.default_rng(seed))
        assert len(out.items) == len(set(out.items)) == 8  # every distinct candidate, once
        for s, items in enumerate(lists):
            mine = [i for i, src in zip(out.items, out.sources, strict=True) if src == s]
            assert mine == [i for i in items if i in mine]  # the source's own order
            assert all(i in items for i in mine)


def test_propensities_sum_to_one_over_the_available_sources() -> None:
    lists = [list(range(0, 3)), list(range(100, 136)), list(range(200, 205)), [], [100, 101]]
    belief = _belief([3.0, 2.0, 4.0, 9.0, 2.5], [97.0, 98.0, 96.0, 1.0, 97.5])
    out = rerank(lists, belief, 12, 0.6, np.random.default_rng(0))
    taken: set[int] = set()
    for position, (item, s, p) in enumerate(
        zip(out.items, out.sources, out.propensities, strict=True)
    ):
        dist = out.distributions[position]
        available = [any(i not in taken for i in lst) for lst in lists]
        assert dist.sum() == pytest.approx(1.0, abs=1e-12)
        assert np.all(dist[~np.array(available)] == 0.0)  # the empty source 3 never counts
        assert p == dist[s] > 0.0
        taken.add(item)


def _exact_win_probabilities(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """P(source s's Beta draw is the largest), by numerical integration."""

    def density(x: float, s: int) -> float:
        others = [sps.beta.cdf(x, a[t], b[t]) for t in range(len(a)) if t != s]
        return float(sps.beta.pdf(x, a[s], b[s]) * np.prod(others))

    return np.array([integrate.quad(density, 0, 1, args=(s,), limit=200)[0] for s in range(len(a))])


def test_propensities_match_the_empirical_choice_frequency() -> None:
    a, b = np.array([6.0, 9.0, 4.0, 7.5]), np.array([194.0, 191.0, 196.0, 192.5])
    belief = _belief(a.tolist(), b.tolist())
    lists = [list(range(100 * s, 100 * s + 36)) for s in range(4)]
    rng = np.random.default_rng(11)
    runs = 3000
    chosen = np.zeros((runs, 12), dtype=np.int64)
    mean_prop = np.zeros(4)
    for r in range(runs):
        out = rerank(lists, belief, 12, 0.5, rng, draws=256)
        chosen[r] = out.sources
        mean_prop += out.distributions[0]
    mean_prop /= runs
    freq = np.bincount(chosen.ravel(), minlength=4) / chosen.size
    exact = _exact_win_probabilities(a, b)
    # the logged propensities are the probabilities the choices were drawn with ...
    se = np.sqrt(exact * (1 - exact) / chosen.size)
    assert np.all(np.abs(freq - mean_prop) < 4 * se + 1e-3)
    # ... and, averaged over requests, Thompson sampling's own win probabilities
    assert np.all(np.abs(mean_prop - exact) < 0.01)
    assert np.argmax(freq) == 1


def test_exploration_zero_is_greedy_and_deterministic() -> None:
    lists = [list(range(0, 4)), list(range(10, 15)), list(range(20, 40))]
    belief = _belief([2.0, 8.0, 5.0], [98.0, 92.0, 95.0])  # means 0.02, 0.08, 0.05
    outs = [rerank(lists, belief, 12, 0.0, np.random.default_rng(seed)) for seed in range(5)]
    assert all(o.items == outs[0].items for o in outs)
    out = outs[0]
    assert out.sources == [1] * 5 + [2] * 7  # the best mean until it runs out, then the next
    assert out.items == [10, 11, 12, 13, 14, *range(20, 27)]
    assert out.propensities == [1.0] * 12


def test_exploration_one_is_uniform_over_the_sources_left() -> None:
    lists = [[1], list(range(10, 40)), list(range(50, 80))]
    belief = _belief([1.0, 50.0, 2.0], [99.0, 50.0, 98.0])
    out = rerank(lists, belief, 12, 1.0, np.random.default_rng(2))
    for position in range(len(out)):
        left = 3 if 0 not in out.sources[:position] else 2
        assert out.propensities[position] == pytest.approx(1 / left)
    shares = np.zeros(3)
    for seed in range(400):
        shares += np.bincount(
            rerank(lists, belief, 1, 1.0, np.random.default_rng(seed)).sources, minlength=3
        )
    assert np.all(np.abs(shares / 400 - 1 / 3) < 0.08)


def test_more_exploration_spreads_the_slots() -> None:
    belief = _belief([6.0, 4.0, 4.0, 4.0], [194.0, 196.0, 196.0, 196.0])
    lists = [list(range(100 * s, 100 * s + 36)) for s in range(4)]
    best_share = []
    for level in (0.2, 0.5, 0.8):
        rng = np.random.default_rng(5)
        chosen = [s for _ in range(200) for s in rerank(lists, belief, 12, level, rng).sources]
        best_share.append(np.mean(np.asarray(chosen) == 0))
    assert best_share[0] > best_share[1] > best_share[2] > 0.25
    assert concentration(0.5) == 1.0
    assert concentration(0.25) > 1.0 > concentration(0.75)


def test_reserved_new_items_share() -> None:
    lists = [list(range(0, 36)), list(range(100, 136)), list(range(200, 206))]
    belief = _belief([9.0, 5.0, 1.0], [91.0, 95.0, 99.0])
    counts = np.zeros(3)
    for seed in range(300):
        out = rerank(
            lists, belief, 12, 0.0, np.random.default_rng(seed), reserved=2, reserved_share=0.25
        )
        for position, s in enumerate(out.sources):
            dist = out.distributions[position]
            if dist[2] > 0:  # new items left: exactly the reserved share, the rest to the best
                assert dist[2] == pytest.approx(0.25)
                assert dist[0] == pytest.approx(0.75)
            assert out.propensities[position] == dist[s]
        counts += np.bincount(out.sources, minlength=3)
    assert counts[1] == 0  # exploration 0: the best source takes every unreserved slot
    assert 0.15 < counts[2] / counts.sum() < 0.3


def test_fixed_rerank_is_the_fused_blend_with_propensity_one() -> None:
    lists = _lists(1, n_sources=6)
    weights = [DEFAULT_WEIGHTS[s] for s in SOURCES]
    out = fixed_rerank(lists, weights, 60.0, 12)
    fused = rrf_fuse_row(lists, weights, 60.0, 12)
    assert out.items == [i for i, _, _ in fused]
    assert out.sources == [s for _, _, s in fused]
    assert out.propensities == [1.0] * 12


def test_slot_probabilities_count_the_winners() -> None:
    samples = np.array([[0.1, 0.5, 0.2], [0.6, 0.5, 0.2], [0.1, 0.2, 0.3], [0.1, 0.0, 0.05]])
    assert slot_probabilities(samples, np.array([True, True, True])).tolist() == [
        0.5,
        0.25,
        0.25,
    ]
    assert slot_probabilities(samples, np.array([False, True, True])).tolist() == [
        0.0,
        0.5,
        0.5,
    ]


# --------------------------------------------------------------------------------------------------
# Prior, posterior, configuration
# --------------------------------------------------------------------------------------------------


def test_the_prior_reproduces_the_fitted_weights_order() -> None:
    config = BanditConfig(prior_strength=150)
    belief = prior(SOURCES, DEFAULT_WEIGHTS, config)
    weights = np.array([DEFAULT_WEIGHTS[s] for s in SOURCES])
    assert np.argsort(-belief.mean(), kind="stable").tolist() == (
        np.argsort(-weights, kind="stable").tolist()
    )
    assert np.allclose(belief.a + belief.b, 150)
    assert belief.mean().mean() == pytest.approx(config.prior_rate * 1.0, rel=0.05)
    # greedy on the bare prior: the fitted weights' favourite first, then the next as it runs out
    lists = [list(range(100 * s, 100 * s + 3)) for s in range(6)]
    out = rerank(lists, belief, 12, 0.0, np.random.default_rng(0))
    order = np.argsort(-weights, kind="stable").tolist()
    assert out.sources == [order[0]] * 3 + [order[1]] * 3 + [order[2]] * 3 + [order[3]] * 3
    revenue = prior(SOURCES, DEFAULT_WEIGHTS, BanditConfig(reward="revenue"))
    assert np.argsort(-revenue.mean(), kind="stable").tolist() == order


def test_posterior_adds_the_evidence() -> None:
    config = BanditConfig(prior_strength=100, prior_rate=0.05)
    weights = {"als": 1.0, "repeat": 1.0}
    evidence = {"als": ArmStats(impressions=400, clicks=60, purchases=3, revenue=90.0)}
    belief = posterior(["als", "repeat"], weights, evidence, config)
    assert belief.a.tolist() == pytest.approx([5 + 60, 5])
    assert belief.b.tolist() == pytest.approx([95 + 340, 95])
    low, high = belief.interval()
    assert np.all(low < belief.mean()) and np.all(belief.mean() < high)
    buying = posterior(["als"], weights, evidence, config.model_copy(update={"reward": "purchase"}))
    assert buying.a.tolist() == pytest.approx([8.0])
    money = posterior(
        ["als"], weights, evidence, BanditConfig(reward="revenue", prior_strength=100)
    )
    # Gamma(100 · 1.0 / 10 + 90 / 10, 100 + 400): revenue per impression (100 + 90) / 500
    assert money.kind == "gamma"
    assert money.mean()[0] == pytest.approx((100 * 1.0 + 90.0) / 500)


def test_bandit_config_is_strict() -> None:
    assert issubclass(BanditConfig, StrictConfig)
    with pytest.raises(ValueError):
        BanditConfig.model_validate({"explore": 0.3})
    with pytest.raises(ValueError):
        BanditConfig.model_validate({"exploration_by_surface": {"home": 1.5}})
    config = BanditConfig(exploration=0.4, exploration_by_surface={"email": 0.0})
    assert (config.exploration_for("home"), config.exploration_for("email")) == (0.4, 0.0)
    assert config.half_life_seconds == 14 * SECONDS_PER_DAY


def test_bandit_refuses_a_state_with_another_half_life() -> None:
    with pytest.raises(ValueError, match="half-life"):
        Bandit(BanditConfig(half_life_days=3), InMemoryBanditState(HALF_LIFE))


# --------------------------------------------------------------------------------------------------
# Known answer: a simulated shop where one source is clearly better
# --------------------------------------------------------------------------------------------------

#: Rounds (one list of 12 per round) after which the better source must hold the largest share.
ROUNDS = 200


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_bandit_learns_which_source_is_better(seed: int) -> None:
    """Click rate 0.10 for ``popularity`` against 0.03 for the five others, and a prior that
    ranks ``popularity`` last (weights 1.0 … 0.5): within 200 rounds of 12 slots (2,400
    impressions) it holds the largest share of the slots of rounds 150–200."""
    config = BanditConfig(enabled=True, exploration=0.5)
    bandit = Bandit(config, InMemoryBanditState(config.half_life_seconds))
    weights: dict[str, Any] = dict(zip(SOURCES, [1.0, 0.9, 0.8, 0.7, 0.6, 0.5], strict=True))
    rates = np.array([0.03, 0.03, 0.03, 0.03, 0.03, 0.10])
    rng = np.random.default_rng(seed)
    shares = np.zeros((ROUNDS, len(SOURCES)))
    for r in range(ROUNDS):
        at = T0 + 60.0 * r
        lists = [rng.choice(2000, 36, replace=False).tolist() for _ in SOURCES]
        shown = bandit.rerank("home", "default", SOURCES, lists, weights, 12, rng, at)
        bandit.record_shown("home", "default", SOURCES, shown, at)
        for s in shown.sources:
            if rng.random() < rates[s]:
                bandit.record_event("home", "default", SOURCES[s], InteractionType.CLICK, at + 5)
        shares[r] = np.bincount(shown.sources, minlength=len(SOURCES)) / len(shown)
    assert shares[:10].mean(axis=0)[5] < 0.2  # it starts where the prior puts it
    late = shares[150:].mean(axis=0)
    assert int(np.argmax(late)) == 5
    assert late[5] > 0.5
    report = {
        arm.source: arm for arm in bandit.report(T0 + 60.0 * ROUNDS, {("home", "default"): weights})
    }
    assert max(report, key=lambda s: report[s].mean) == "popularity"
    assert max(report, key=lambda s: report[s].traffic_share) == "popularity"
    assert sum(arm.traffic_share for arm in report.values()) == pytest.approx(1.0)
    assert all(arm.low <= arm.mean <= arm.high for arm in report.values())


def test_record_event_counts_rewards_only() -> None:
    config = BanditConfig(half_life_days=None)
    bandit = Bandit(config, InMemoryBanditState(None))
    assert bandit.record_event("home", "new", "als", InteractionType.PURCHASE, T0, revenue=30.0)
    assert bandit.record_event("home", "new", "als", InteractionType.CLICK, T0)
    assert not bandit.record_event("home", "new", "als", InteractionType.VIEW, T0)
    _approx(bandit.state.read("home", "new", T0)["als"], clicks=1, purchases=1, revenue=30.0)


def test_report_shows_every_arm_as_the_service_sees_it() -> None:
    config = BanditConfig()
    bandit = Bandit(config, InMemoryBanditState(config.half_life_seconds))
    weights = {"als": 1.0, "repeat": 4.0, "popularity": 0.25}
    bandit.state.add("home", "default", {"als": ArmStats(impressions=300, clicks=12)}, T0)
    bandit.state.add("home", "default", {"repeat": ArmStats(impressions=100, clicks=9)}, T0)
    report = bandit.report(T0, {("home", "default"): weights, ("email", "new"): {"starter": 1.0}})
    assert [(a.surface, a.segment, a.source) for a in report] == [
        ("email", "new", "starter"),
        ("home", "default", "als"),
        ("home", "default", "popularity"),
        ("home", "default", "repeat"),
    ]
    served = bandit.posterior("home", "default", list(weights), weights, T0)
    means = dict(zip(served.sources, served.mean().tolist(), strict=True))
    for arm in report[1:]:
        assert arm.mean == pytest.approx(means[arm.source], rel=1e-12)
    shares = {a.source: a.traffic_share for a in report[1:]}
    assert shares == pytest.approx({"als": 0.75, "popularity": 0.0, "repeat": 0.25})
    assert report[0].impressions == 0.0 and report[0].traffic_share == 0.0
