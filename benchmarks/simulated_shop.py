"""A simulated shop: the synthetic retailer's hidden tastes click on what the real service shows.

Builds (or reuses, in ``--work``) the small synthetic retailer (800 customers × 400 items, seed 7)
and a bundle trained on it, then builds the real app in-process (``create_app`` + ``TestClient``,
response cache off) and runs rounds: each round ``--per-round`` customers (drawn with a seeded
generator) GET their home feed (k = 12); the click model of
:mod:`feature_store.synthetic.shopper` (position bias × style / colour / price-band match with the
customer's latent tastes) decides clicks and purchases, and they are POSTed to ``/v1/events``
echoing ``recommendation_id`` and ``position`` — so attribution and the bandit's rewards run
through the real path. One source (``--boost-source``, default ``seasonal``) is made truly better:
its shown items are clicked ``--boost`` times as often (×3).

Policies, each in a fresh app on the same customer sequence and seeds:

* ``bandit``  — Thompson sampling per slot at exploration 0.5, prior from the fitted weights;
* ``fixed``   — bandit off: the trainer's fitted blend weights (reciprocal-rank fusion);
* ``uniform`` — the bandit at exploration 1: each slot's source uniformly among those available.

Then an A/B experiment in one app (50/50: control = fitted weights, ``bandit`` = bandit on, the
truly better variant here), reported at ``GET /v1/admin/experiments/{name}``.

Writes ``cumulative_reward.png`` (cumulative clicks per policy vs rounds; matplotlib from the
``bench`` extra, skipped with a message when absent) and ``results.json`` into ``--out``, prints
the tables. Known answers (also in ``tests/test_simulated_shop.py``, with fewer rounds): the bandit
gives the boosted source the largest share of slots; the truly better variant reaches p < 0.05.

The simulation's clock: the bandit stage reuses a posterior for a second of its clock; the driver
gives the stage a simulated clock that advances one second per round, so every round ranks with
the evidence of all earlier rounds and nothing depends on wall time (with evidence decay off,
``half_life_days`` None, a run is deterministic under its seeds).

    .venv/bin/python benchmarks/simulated_shop.py --out /tmp/lookbook-bench/simulated-shop
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings
from feature_store.synthetic.shopper import ClickModel, Shopper
from models.bandit import BanditConfig

#: Policies compared by the benchmark: name → bandit configuration.
POLICIES: dict[str, BanditConfig] = {
    "bandit": BanditConfig(enabled=True, exploration=0.5, half_life_days=None),
    "fixed": BanditConfig(enabled=False, half_life_days=None),
    "uniform": BanditConfig(enabled=True, exploration=1.0, half_life_days=None),
}
EXPERIMENT = "sim_boosted_source"


class SimClock:
    """Seconds since the epoch, advanced by the simulation (one second per round)."""

    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class ShopRun:
    """What one simulated run showed and earned, per round."""

    clicks: list[int] = field(default_factory=list)
    purchases: list[int] = field(default_factory=list)
    revenue: list[float] = field(default_factory=list)
    impressions: list[int] = field(default_factory=list)
    #: per round: positions shown per source
    shown: list[Counter[str]] = field(default_factory=list)

    def cumulative_clicks(self) -> np.ndarray:
        return np.cumsum(self.clicks)

    def share(self, source: str, rounds: slice = slice(None)) -> float:
        """``source``'s share of the positions shown in ``rounds``."""
        total: Counter[str] = Counter()
        for counts in self.shown[rounds]:
            total.update(counts)
        return total[source] / max(sum(total.values()), 1)

    def largest_source(self, rounds: slice) -> str:
        total: Counter[str] = Counter()
        for counts in self.shown[rounds]:
            total.update(counts)
        return total.most_common(1)[0][0]


def shop_settings(
    bundles: Path, work: Path, bandit: BanditConfig, *, seed: int, **extra: Any
) -> Settings:
    return Settings(
        bundle_dir=bundles,
        event_log_dir=work / "events",
        bundle_poll_seconds=0,
        redis_url=None,
        cache_ttl_seconds=0,  # every showing is a fresh ranking
        bandit=bandit,
        bandit_seed=seed,
        **extra,
    )


def experiment_file(path: Path) -> Path:
    """Control = the fitted weights (bandit off); ``bandit`` = the bandit on at exploration 0.5,
    the truly better variant when one source is boosted in the simulation."""
    spec = {
        "experiments": [
            {
                "name": EXPERIMENT,
                "surface": "home",
                "description": "simulated shop: a truly better source",
                "start": "2020-01-01T00:00:00Z",
                "end": "2100-01-01T00:00:00Z",
                "variants": [
                    {"name": "control", "share": 0.5, "control": True},
                    {
                        "name": "bandit",
                        "share": 0.5,
                        "bandit": {"enabled": True, "exploration": 0.5},
                    },
                ],
            }
        ]
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(spec, indent=2))
    return path


def _stamp(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat()


def run_shop(
    client: TestClient,
    shopper: Shopper,
    customers: Sequence[str],
    *,
    rounds: int,
    per_round: int,
    seed: int,
    k: int = 12,
    on_round: Callable[[int, ShopRun], None] | None = None,
) -> ShopRun:
    """Drive the app behind ``client`` for ``rounds`` rounds of ``per_round`` customers' home
    feeds; the shopper's clicks and purchases go back as echoed events. Customers and reactions
    come from generators seeded by ``seed`` (so two policies see the same visitors)."""
    clock = SimClock(time.time() - rounds - 600.0)  # in the (recent) past: events are not future
    client.app.state.service.bandit._clock = clock  # type: ignore[attr-defined]
    visits = np.random.default_rng([seed, 0])
    reactions = np.random.default_rng([seed, 1])
    run = ShopRun()
    for r in range(rounds):
        shown: Counter[str] = Counter()
        clicks = purchases = impressions = 0
        revenue = 0.0
        events: list[dict[str, Any]] = []
        for c in visits.choice(len(customers), size=per_round, replace=False):
            customer = customers[int(c)]
            response = client.get(f"/v1/customers/{customer}/recommendations?k={k}")
            response.raise_for_status()
            body = response.json()
            items = [i["item_id"] for i in body["items"]]
            sources = [i["source"] for i in body["items"]]
            shown.update(sources)
            impressions += len(items)
            outcome = shopper.react(customer, items, sources, reactions)
            for position in np.flatnonzero(outcome.clicked).tolist():
                echo = {
                    "customer_id": customer,
                    "item_id": items[position],
                    "recommendation_id": body["recommendation_id"],
                    "position": position,
                }
                events.append({**echo, "type": "click", "timestamp": _stamp(clock())})
                clicks += 1
                if outcome.purchased[position]:
                    price = float(body["items"][position].get("price") or 0.0)
                    events.append({**echo, "type": "purchase", "timestamp": _stamp(clock() + 0.5)})
                    purchases += 1
                    revenue += price
        if events:
            posted = client.post("/v1/events", json=events)
            posted.raise_for_status()
        run.clicks.append(clicks)
        run.purchases.append(purchases)
        run.revenue.append(revenue)
        run.impressions.append(impressions)
        run.shown.append(shown)
        clock.advance(1.0)  # the next round ranks with a fresh posterior
        if on_round is not None:
            on_round(r, run)
    return run


def first_round_largest(run: ShopRun, source: str, window: int) -> int | None:
    """The first round from which ``source`` has the largest share of the positions shown in
    every ``window``-round window to the end (None: never)."""
    first: int | None = None
    for r in range(len(run.shown) - window + 1):
        if run.largest_source(slice(r, r + window)) == source:
            if first is None:
                first = r + window
        else:
            first = None
    return first


def customers_of(data: Path) -> list[str]:
    import pandas as pd

    frame = pd.read_parquet(data / "customers.parquet", columns=["customer_id"])
    return frame["customer_id"].astype(str).tolist()


def run_policy(
    data: Path,
    bundles: Path,
    work: Path,
    policy: BanditConfig,
    shopper: Shopper,
    *,
    rounds: int,
    per_round: int,
    seed: int,
) -> tuple[ShopRun, dict[str, Any]]:
    """One policy in a fresh app: the run and the final ``GET /v1/admin/bandit``."""
    settings = shop_settings(bundles, work, policy, seed=seed)
    with TestClient(create_app(settings)) as client:
        run = run_shop(
            client, shopper, customers_of(data), rounds=rounds, per_round=per_round, seed=seed
        )
        report = client.get("/v1/admin/bandit").json()
    return run, report


def run_experiment(
    data: Path,
    bundles: Path,
    work: Path,
    shopper: Shopper,
    *,
    rounds: int,
    per_round: int,
    seed: int,
) -> tuple[dict[str, Any], list[float | None]]:
    """The A/B experiment in one app (bandit off by default; the ``bandit`` variant turns it
    on): ``GET /v1/admin/experiments/{name}`` after ``rounds`` rounds, and the bandit variant's
    CTR p-value against control after each round."""
    path = experiment_file(work / "experiments.json")
    settings = shop_settings(bundles, work, POLICIES["fixed"], seed=seed, experiments_file=path)
    p_values: list[float | None] = []
    with TestClient(create_app(settings)) as client:

        def report() -> dict[str, Any]:
            response = client.get(f"/v1/admin/experiments/{EXPERIMENT}")
            response.raise_for_status()
            body: dict[str, Any] = response.json()
            return body

        def after_round(_: int, __: ShopRun) -> None:
            variants = {v["name"]: v for v in report()["variants"]}
            vs = variants["bandit"]["click_through_rate"]["vs_control"] or {}
            p_values.append(vs.get("p_value"))

        run_shop(
            client,
            shopper,
            customers_of(data),
            rounds=rounds,
            per_round=per_round,
            seed=seed,
            on_round=after_round,
        )
        final = report()
    return final, p_values


def first_significant(p_values: Sequence[float | None], alpha: float = 0.05) -> int | None:
    """The first round after which the p-value stays below ``alpha`` to the end (None: never)."""
    first: int | None = None
    for r, p in enumerate(p_values, start=1):
        if p is not None and p < alpha:
            if first is None:
                first = r
        else:
            first = None
    return first


def plot(runs: dict[str, ShopRun], path: Path, title: str) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install -e '.[bench]'): no plot, figures only")
        return False
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, run in runs.items():
        ax.plot(np.arange(1, len(run.clicks) + 1), run.cumulative_clicks(), label=name)
    ax.set_xlabel("round")
    ax.set_ylabel("cumulative clicks")
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def main(argv: list[str] | None = None) -> None:
    from benchmarks.bandit_serve_cost import prepare

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("/tmp/lookbook-bench/simulated-shop"))
    parser.add_argument("--work", type=Path, default=Path("/tmp/lookbook-bench/bandit-serve"))
    parser.add_argument("--rounds", type=int, default=150)
    parser.add_argument("--per-round", type=int, default=40)
    parser.add_argument("--boost-source", default="seasonal")
    parser.add_argument("--boost", type=float, default=3.0)
    parser.add_argument("--window", type=int, default=10, help="rounds per share window")
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args(argv)

    data, bundles = prepare(args.work, 800, 400)
    args.out.mkdir(parents=True, exist_ok=True)
    shopper = Shopper(data, ClickModel(source_boost={args.boost_source: args.boost}))
    runs: dict[str, ShopRun] = {}
    reports: dict[str, Any] = {}
    for name, policy in POLICIES.items():
        started = time.perf_counter()
        runs[name], reports[name] = run_policy(
            data,
            bundles,
            args.out / "work" / name,
            policy,
            shopper,
            rounds=args.rounds,
            per_round=args.per_round,
            seed=args.seed,
        )
        print(f"{name}: {args.rounds} rounds in {time.perf_counter() - started:.1f} s")

    b = args.boost_source
    print(
        f"\n{args.rounds} rounds × {args.per_round} customers, k = 12, '{b}' clicked ×{args.boost}"
    )
    print("| policy | clicks | CTR | purchases | revenue | share of '" + b + "' (last 20 rounds) |")
    print("|---|---:|---:|---:|---:|---:|")
    rows = {}
    for name, run in runs.items():
        shown = sum(run.impressions)
        rows[name] = {
            "clicks": int(sum(run.clicks)),
            "ctr": sum(run.clicks) / shown,
            "purchases": int(sum(run.purchases)),
            "revenue": round(sum(run.revenue), 2),
            "boosted_share_last_20": run.share(b, slice(-20, None)),
            "cumulative_clicks": run.cumulative_clicks().tolist(),
        }
        print(
            f"| {name} | {rows[name]['clicks']} | {rows[name]['ctr']:.4f} | "
            f"{rows[name]['purchases']} | {rows[name]['revenue']:.0f} | "
            f"{rows[name]['boosted_share_last_20']:.2f} |"
        )
    bandit = runs["bandit"]
    first = first_round_largest(bandit, b, args.window)
    print(
        f"\nbandit: '{b}' has the largest share of slots in every {args.window}-round window "
        f"from round {first} on; its share by window: "
        + ", ".join(
            f"{bandit.share(b, slice(r, r + args.window)):.2f}"
            for r in range(0, args.rounds, args.window)
        )
    )
    arms = [a for a in reports["bandit"]["arms"] if a["surface"] == "home" and a["impressions"] > 0]
    print("\nGET /v1/admin/bandit after the bandit run (home, arms with impressions):")
    print("| segment | source | posterior mean | traffic share |")
    print("|---|---|---:|---:|")
    for a in sorted(arms, key=lambda a: (a["segment"], -a["traffic_share"])):
        print(f"| {a['segment']} | {a['source']} | {a['mean']:.4f} | {a['traffic_share']:.2f} |")

    started = time.perf_counter()
    experiment, p_values = run_experiment(
        data,
        bundles,
        args.out / "work" / "experiment",
        shopper,
        rounds=args.rounds,
        per_round=args.per_round,
        seed=args.seed,
    )
    print(f"\nexperiment: {args.rounds} rounds in {time.perf_counter() - started:.1f} s")
    print(f"GET /v1/admin/experiments/{EXPERIMENT}:")
    print("| variant | impressions | clicks | CTR [95 %] | − control | p-value |")
    print("|---|---:|---:|---|---:|---:|")
    for v in experiment["variants"]:
        ctr = v["click_through_rate"]
        vs = ctr["vs_control"] or {}
        diff = "" if vs.get("difference") is None else f"{vs['difference']:+.4f}"
        p = "" if vs.get("p_value") is None else f"{vs['p_value']:.2g}"
        print(
            f"| {v['name']} | {v['impressions']} | {v['clicks']} | "
            f"{ctr['value']:.4f} [{ctr['low']:.4f}, {ctr['high']:.4f}] | {diff} | {p} |"
        )

    significant = first_significant(p_values)
    print(
        f"bandit vs control: p < 0.05 from round {significant} on "
        f"(p after rounds 5, 10, 15, 20, 25: "
        + ", ".join(f"{p:.2g}" if p is not None else "-" for p in p_values[4:25:5])
        + ")"
    )

    png = args.out / "cumulative_reward.png"
    title = f"Simulated shop: cumulative clicks ('{b}' ×{args.boost}, {args.per_round}/round)"
    if plot(runs, png, title):
        print(f"\nplot: {png}")
    results = {
        "rounds": args.rounds,
        "per_round": args.per_round,
        "boost_source": b,
        "boost": args.boost,
        "seed": args.seed,
        "policies": rows,
        "bandit_largest_from_round": first,
        "window": args.window,
        "experiment": experiment,
        "experiment_significant_from_round": significant,
        "experiment_p_values": p_values,
    }
    (args.out / "results.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
