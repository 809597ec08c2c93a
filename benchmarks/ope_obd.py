"""Off-policy evaluation on the Open Bandit Dataset sample (ZOZOTOWN, campaign ``all``).

What click rate would a policy have had on the impressions that the uniform ``random`` policy
logged? One table, every figure with its 95 % bootstrap interval over rounds:

* the two logs' own (on-policy) click rates: ``random`` and the logged Bernoulli-TS (``bts``);
* the logged BTS policy reproduced from ``prior_bts.yaml`` (action distribution from
  ``--n-draws`` seeded simulated impressions), by IPW / SNIPW / DM / DR on the whole random log —
  the check against the reference IPW ≈ 0.00455;
* Lookbook's own policies, learned on the first ``--train-share`` of the random log by time and
  evaluated on the rest: context-free Beta-Bernoulli Thompson sampling over items, and a
  contextual ε-greedy policy (ε = 0.1) over an L2-regularised logistic click model (user × item
  features and the user-item affinity; ``l2`` chosen on the training part's last quarter); the
  uniform policy's value on the same held-out rounds beside them.

The ESS column (Kish's effective sample size of the importance weights) says how many rounds an
importance-weighted estimate really rests on: a policy that concentrates on a few items per user
has an ESS of tens of rounds, i.e. well under one expected click, and its IPW / DR figures then
hinge on whether one held-out click happens to match.

DM and DR use the context-free smoothed click-rate model (``training.ope_reward.ClickRateModel``),
cross-fitted on the evaluated rounds (``--folds`` contiguous blocks of time: each round's
prediction comes from a model fitted on the other blocks, never on the policy's training part,
so the reward model does not share the learned policy's selection bias). The intervals resample
rounds with the policy held fixed; DM and DR refit the reward model on every resample.

    .venv/bin/python benchmarks/ope_obd.py [--data-root ../shared/data] [--seed 0]

Prints a Markdown table; writes nothing. Deterministic under ``--seed``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import numpy.typing as npt

from feature_store.open_bandit import PRIOR_FILE, BanditLog, load_bandit_log, load_bts_prior
from training.ope import (
    Estimator,
    EstimatorConfig,
    OffPolicyEstimate,
    Policy,
    effective_sample_size,
    estimate_all,
    on_policy_value,
)
from training.ope_policies import (
    EpsilonGreedyConfig,
    EpsilonGreedyPolicy,
    ThompsonConfig,
    UniformPolicy,
    bts_policy,
    fit_thompson,
)
from training.ope_reward import (
    ClickRateModel,
    LogisticConfig,
    LogisticRewardModel,
    choose_l2,
    cross_fit,
)
from training.report import markdown_table

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data"
OBD_FOLDER = "open_bandit_dataset_sample"
CAMPAIGN = "all"
ESTIMATORS = (Estimator.IPW, Estimator.SNIPW, Estimator.DM, Estimator.DR)
L2_GRID = (0.1, 1.0, 10.0, 100.0)
HEADERS = ("policy", "evaluated on", "rounds", "ESS", "on-policy", *[e.value for e in ESTIMATORS])


def on_policy_row(name: str, data: str, value: OffPolicyEstimate) -> list[str]:
    rounds = str(value.n_rounds)
    return [name, data, rounds, rounds, value.cell(), *["—"] * len(ESTIMATORS)]


def off_policy_row(
    name: str, data: str, policy: Policy, log: BanditLog, folds: int, config: EstimatorConfig
) -> list[str]:
    pi = policy.action_distribution(log.contexts)

    def fit_q(part: BanditLog) -> npt.NDArray[np.float64]:
        return cross_fit(ClickRateModel, part, folds)

    found = estimate_all(log, pi, config=config, fit_q=fit_q)
    ess = f"{effective_sample_size(log, pi):.0f}"
    return [name, data, str(len(log)), ess, "—", *[found[e].cell() for e in ESTIMATORS]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-draws", type=int, default=100_000)
    parser.add_argument("--n-resamples", type=int, default=1000)
    parser.add_argument("--train-share", type=float, default=0.5)
    parser.add_argument("--folds", type=int, default=2)
    parser.add_argument(
        "--l2-grid", type=float, nargs="+", default=list(L2_GRID), help="the contextual model's l2"
    )
    args = parser.parse_args(argv)

    root = args.data_root / OBD_FOLDER
    if not root.is_dir():
        print(f"the Open Bandit Dataset sample is not at {root}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    config = EstimatorConfig(n_resamples=args.n_resamples, seed=args.seed)
    random_log = load_bandit_log(root, "random", CAMPAIGN)
    bts_log = load_bandit_log(root, "bts", CAMPAIGN)
    prior = load_bts_prior(root / PRIOR_FILE, CAMPAIGN)
    train, test = random_log.split(args.train_share)
    held_out = f"random, last {1 - args.train_share:.0%}"

    logged_bts = bts_policy(prior, random_log.n_positions, args.n_draws, args.seed)
    thompson = fit_thompson(train, ThompsonConfig(n_draws=args.n_draws, seed=args.seed))
    l2_grid = tuple(args.l2_grid)
    l2 = choose_l2(train, l2_grid)
    contextual = EpsilonGreedyPolicy(
        LogisticRewardModel(LogisticConfig(l2=l2)).fit(train),
        train.n_actions,
        train.n_positions,
        EpsilonGreedyConfig(),
    )
    rows = [
        on_policy_row("random (logged)", "random", on_policy_value(random_log, config)),
        on_policy_row("Bernoulli TS (logged)", "bts", on_policy_value(bts_log, config)),
        off_policy_row(
            "Bernoulli TS from prior_bts.yaml", "random", logged_bts, random_log, args.folds, config
        ),
        on_policy_row("random (logged)", held_out, on_policy_value(test, config)),
        off_policy_row("Lookbook TS, context-free", held_out, thompson, test, args.folds, config),
        off_policy_row(
            "Lookbook ε-greedy logistic, contextual",
            held_out,
            contextual,
            test,
            args.folds,
            config,
        ),
        off_policy_row(
            "uniform (check: = on-policy)",
            held_out,
            UniformPolicy(test.n_actions, test.n_positions),
            test,
            args.folds,
            config,
        ),
    ]
    print(
        f"Open Bandit Dataset sample, campaign {CAMPAIGN}: click rate per impression, "
        f"value [95 % bootstrap interval, {args.n_resamples} resamples], seed {args.seed}; "
        f"learned policies fitted on the first {args.train_share:.0%} of the random log "
        f"({len(train)} rounds, {int(train.rewards.sum())} clicks; the contextual model's l2 = "
        f"{l2:g}, chosen from {l2_grid} on that part's last quarter); ESS = Kish's effective "
        "sample size of the importance weights\n"
    )
    print(markdown_table(HEADERS, rows))
    print(f"\n{time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
