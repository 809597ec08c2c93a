"""CPU cost of the bandit's reranking step for one request (models.bandit.rerank), next to the
fixed-weights fusion it replaces (models.bundle.rrf_fuse_row), and of the state's read and update.

The request: ``--sources`` lists of ``--candidates`` items each (drawn from a catalog so that the
lists overlap a little, as the service's do), ``k`` positions, at exploration levels 0 (greedy),
0.5 (Thompson sampling, the default) and 1 (uniform). Figures are process CPU time per call
(``time.process_time``), the median of ``--repeats`` timed batches of ``--calls`` calls, so other
processes on the machine do not inflate them. The issue's budget is 0.3 ms per list.

    python benchmarks/bandit_cost.py [--sources 6 --candidates 36 --k 12 --draws 256]
    python benchmarks/bandit_cost.py --redis redis://127.0.0.1:6379/15   # + the Redis state
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np

from feature_store.bandit_state import ArmStats, InMemoryBanditState, RedisBanditState
from models.bandit import BanditConfig, posterior, rerank
from models.bundle import DEFAULT_RRF_K, rrf_fuse_row


def cpu_per_call(fn: Callable[[], object], calls: int, repeats: int) -> float:
    """Median process CPU seconds per call of ``fn`` over ``repeats`` batches of ``calls``."""
    fn()  # warm up
    batches = []
    for _ in range(repeats):
        start = time.process_time()
        for _ in range(calls):
            fn()
        batches.append((time.process_time() - start) / calls)
    return statistics.median(batches)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", type=int, default=6)
    parser.add_argument("--candidates", type=int, default=36)
    parser.add_argument("--k", type=int, default=12)
    parser.add_argument("--draws", type=int, default=256)
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--redis", default=None, help="also time the Redis state at this URL")
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    names = [f"source{s}" for s in range(args.sources)]
    catalog = args.sources * args.candidates * 3
    lists = [rng.choice(catalog, args.candidates, replace=False).tolist() for _ in names]
    weights = {
        name: float(w) for name, w in zip(names, rng.uniform(0.5, 1.5, len(names)), strict=True)
    }
    config = BanditConfig(enabled=True, draws=args.draws)
    evidence = {
        name: ArmStats(
            impressions=float(rng.integers(100, 5000)), clicks=float(rng.integers(3, 150))
        )
        for name in names
    }
    belief = posterior(names, weights, evidence, config)
    request_rng = np.random.default_rng(args.seed + 1)

    print(
        f"# bandit reranking: {args.sources} sources x {args.candidates} candidates, "
        f"k = {args.k}, {args.draws} posterior draws; CPU per call (median of {args.repeats} "
        f"batches of {args.calls})"
    )
    print("| step | µs per list |")
    print("|---|---:|")
    rows: list[tuple[str, Callable[[], object]]] = [
        (
            "fixed weights: rrf_fuse_row (today's blend)",
            lambda: rrf_fuse_row(lists, [weights[n] for n in names], DEFAULT_RRF_K, args.k),
        ),
        (
            "posterior from evidence (models.bandit.posterior)",
            lambda: posterior(names, weights, evidence, config),
        ),
    ]
    for level, label in ((0.0, "greedy"), (0.5, "Thompson"), (1.0, "uniform")):
        rows.append(
            (
                f"rerank, exploration {level} ({label})",
                lambda level=level: rerank(
                    lists, belief, args.k, level, request_rng, draws=args.draws
                ),
            )
        )
    rows.append(
        (
            "posterior + rerank at 0.5 (the whole step, in-process state aside)",
            lambda: rerank(
                lists,
                posterior(names, weights, evidence, config),
                args.k,
                0.5,
                request_rng,
                draws=args.draws,
            ),
        )
    )
    memory = InMemoryBanditState(config.half_life_seconds)
    memory.add("home", "default", evidence, 1.7e9)
    rows.append(
        (
            "in-process state: read one (surface, segment)",
            lambda: memory.read("home", "default", 1.7e9),
        )
    )
    rows.append(
        (
            "in-process state: add a list's impressions",
            lambda: memory.add("home", "default", {names[0]: ArmStats(impressions=7.0)}, 1.7e9),
        )
    )
    if args.redis:
        shared = RedisBanditState(config.half_life_seconds, url=args.redis, prefix="lbbench:")
        shared.add("home", "default", evidence, 1.7e9)
        rows.append(
            (
                "Redis state: read (CPU only; one round trip)",
                lambda: shared.read("home", "default", 1.7e9),
            )
        )
    for label, fn in rows:
        print(f"| {label} | {cpu_per_call(fn, args.calls, args.repeats) * 1e6:.1f} |")
    if args.redis:
        client = shared._client
        keys = list(client.scan_iter(match="lbbench:*"))
        if keys:
            client.delete(*keys)
        shared.close()


if __name__ == "__main__":
    main()
