"""Customer intelligence on real data: segments, churn risk and size profiles — and profile
computation at scale.

    .venv/bin/python benchmarks/customer_intelligence.py [--data-root ../shared/data] [--scale]

Prints Markdown tables:

(a) tier and lifecycle-stage distribution of the H&M sample (``hm_neo4j_customer_sample``) as of
    its last date, with mean churn risk and lifetime value per tier;
(b) churn-risk AUC with a time split (features as of a cutoff, label = no purchase in the next
    ``--horizon`` days; the model is trained on earlier snapshots whose label windows end by the
    evaluation cutoff) beside the recency-only baseline, with paired bootstrap 95 % CIs;
(c) size-profile accuracy on ``renttherunway_clean``: profiles built from the rentals before a
    cutoff; for every (customer, category) with a rental before and after it, does the profile's
    size equal the size of the customer's next rental in that category? Beside the "most common
    size" baselines (global per category; the customer's own most common) and the last size;
(d) with ``--scale``: time and peak memory of computing profiles for 1M customers / 10M
    interactions of the synthetic retailer (reused from ``/tmp/lookbook-bench`` when there).

Datasets that are absent are reported and skipped; the script then still exits 0.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import resource
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import pandas as pd

from benchmarks._common import (
    DEFAULT_WORK,
    RetailerSpec,
    data_dir,
    human_bytes,
    load_average,
    machine_info,
)
from feature_store.dataset import Dataset
from feature_store.loaders import load_dataset
from feature_store.profiles import (
    STAGES,
    TIERS,
    CustomerProfiles,
    EventTable,
    ProfileConfig,
    compute_profiles,
)
from feature_store.schema import Interaction, InteractionType, ReturnReason
from feature_store.synthetic import generate
from models.churn import ChurnConfig, ChurnModel, training_cutoffs
from training.churn_eval import evaluate
from training.metrics import bootstrap_ci
from training.report import markdown_table

REPO = Path(__file__).resolve().parents[1]
HM = "hm_neo4j_customer_sample"
RTR = "renttherunway_clean"

# Rent the Runway categories → Lookbook categories (others are left out of the size evaluation).
RTR_CATEGORY = {
    **dict.fromkeys(
        (
            "dress", "gown", "sheath", "shift", "maxi", "mini", "shirtdress", "frock", "midi",
            "ballgown", "kaftan", "caftan", "tunic", "jumpsuit", "romper", "overalls", "combo",
            "print",
        ),
        "dress",
    ),
    **dict.fromkeys(
        (
            "top", "blouse", "sweater", "shirt", "cardigan", "tank", "sweatshirt", "pullover",
            "knit", "turtleneck", "tee", "cami", "hoodie", "t-shirt", "henley", "crewneck",
            "buttondown", "sweatershirt", "blouson", "kimono",
        ),
        "top",
    ),
    **dict.fromkeys(
        (
            "skirt", "skirts", "pants", "pant", "culottes", "culotte", "leggings", "legging",
            "trouser", "trousers", "tight", "skort", "jogger", "jeans", "sweatpants",
        ),
        "bottom",
    ),
    **dict.fromkeys(
        (
            "jacket", "coat", "blazer", "down", "vest", "bomber", "cape", "poncho", "peacoat",
            "trench", "parka", "duster", "overcoat", "suit",
        ),
        "outerwear",
    ),
}  # fmt: skip


def section(title: str) -> None:
    print(f"\n## {title}\n", flush=True)


def pct(part: float, whole: float) -> str:
    return f"{100.0 * part / whole:.1f} %" if whole else "–"


def fmt_ci(value: float, low: float, high: float, digits: int = 3) -> str:
    return f"{value:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


# --------------------------------------------------------------------------------------------
# (a) + (b) H&M: segments and churn
# --------------------------------------------------------------------------------------------


def hm_sections(root: Path, horizon: int, n_boot: int) -> None:
    path = root / HM
    section(f"(a) Tiers and lifecycle stages — H&M sample ({HM})")
    if not path.is_dir():
        print(f"dataset {HM} not found at {path}: (a) and (b) skipped.")
        return
    ds = load_dataset(path)
    events = EventTable.from_dataset(ds)
    end = datetime.fromtimestamp(int(events.ts.max()), tz=UTC)
    config = ChurnConfig(horizon_days=horizon)

    # Production-style: the churn model fitted on windows ending at the last date, profiles as of it.
    churn = ChurnModel(config).fit_until(events, end)
    profiles = compute_profiles(events, end, ProfileConfig(), churn=churn)
    counts = profiles.counts()
    n = counts["customers"]
    print(
        f"As of {end.date()} (last date of the data): {n} customers, "
        f"{len(ds.interactions)} purchase rows. Default ProfileConfig (R/F/M high = score ≥ 4; "
        f"stages new ≤ 30 d, active ≤ 90 d, cooling < 180 d, sleeping < 365 d, churned ≥ 365 d); "
        f"churn risk = P(no purchase in {horizon} d) from the model below, fitted on windows "
        f"ending at the last date.\n"
    )
    print(f"RFM quintile edges: {json.dumps(profiles.thresholds.to_dict())}\n")
    tier = profiles.column("tier")
    risk = profiles.column("churn_risk").astype(np.float64)
    ltv = profiles.column("ltv")
    rows = []
    for i, name in enumerate(TIERS):
        members = tier == i
        count = int(members.sum())
        mean_risk = float(np.nanmean(risk[members])) if count and name != "prospect" else math.nan
        rows.append(
            [
                name,
                count,
                pct(count, n),
                "–" if math.isnan(mean_risk) else f"{mean_risk:.2f}",
                f"{float(ltv[members].mean()):.3f}" if count else "–",
            ]
        )
    print(markdown_table(["tier", "customers", "share", "mean churn risk", "mean LTV"], rows))
    print()
    stage_rows = [[name, counts["stages"][name], pct(counts["stages"][name], n)] for name in STAGES]
    print(markdown_table(["stage", "customers", "share"], stage_rows))
    print(
        "\n(H&M prices are Kaggle's scaled prices, so monetary and LTV are in those units. "
        "The sample holds only customers who bought in the two years, hence no prospects.)"
    )

    section(f"(b) Churn risk AUC, time split — H&M sample, horizon {horizon} days")
    eval_cutoff = end - timedelta(days=horizon)
    cutoffs = training_cutoffs(eval_cutoff, config)
    started = time.perf_counter()
    model = ChurnModel(config).fit(events, cutoffs)
    fit_s = time.perf_counter() - started
    result = evaluate(model, events, eval_cutoff, n_boot=n_boot, seed=0)
    print(
        f"Train: {len(cutoffs)} snapshots, cutoffs {cutoffs[0].date()} .. {cutoffs[-1].date()} "
        f"every {config.snapshot_every_days} d ({model.training['rows']} customer-snapshots, "
        f"{100 * model.training['positive_rate']:.1f} % without a purchase in the next "
        f"{horizon} d; fitted in {fit_s:.1f} s). Every training label window ends by the "
        f"evaluation cutoff.\n"
        f"Evaluate: features as of {eval_cutoff.date()}, label = no purchase in "
        f"({eval_cutoff.date()}, {end.date()}]; {result.customers} customers who had purchased "
        f"by the cutoff, {100 * result.positive_rate:.1f} % churned. "
        f"95 % CIs from {n_boot} paired bootstrap resamples of customers.\n"
    )
    print(
        markdown_table(
            ["scorer", "AUC [95 % CI]"],
            [
                ["recency only (days since last purchase)", fmt_ci(*_t(result.recency))],
                ["churn model (logistic, 24 RFM + behaviour features)", fmt_ci(*_t(result.model))],
                ["model − recency", fmt_ci(*_t(result.model_minus_recency))],
            ],
        )
    )
    top = sorted(model.coefficients().items(), key=lambda kv: -abs(kv[1]))[:6]
    print(
        "\nLargest standardised coefficients (+ = more churn): "
        + ", ".join(f"{k} {v:+.2f}" for k, v in top)
    )


def _t(estimate: Any) -> tuple[float, float, float]:
    return float(estimate.auc), float(estimate.low), float(estimate.high)


# --------------------------------------------------------------------------------------------
# (c) Rent the Runway: size profiles
# --------------------------------------------------------------------------------------------


def rtr_dataset(records: pd.DataFrame) -> Dataset:
    """RTR rentals as a Lookbook dataset: each record a purchase in its size; a ``small`` /
    ``large`` fit verdict a ``too_small`` / ``too_large`` return one second later. An item's
    sizes are the sizes it was rented in, in numeric order."""
    items_sizes = records.groupby("item")["size"].agg(lambda s: sorted(set(s.tolist())))
    first_category = records.groupby("item")["category"].first()
    items = pd.DataFrame(
        {
            "item_id": items_sizes.index.astype(str),
            "name": first_category.reindex(items_sizes.index).to_numpy(),
            "category": first_category.reindex(items_sizes.index).to_numpy(),
            "price": np.full(len(items_sizes), np.nan),
            "sizes": [[str(x) for x in v] for v in items_sizes.to_numpy()],
        }
    )
    base = pd.DataFrame(
        {
            "customer_id": records["customer"].astype(str).to_numpy(),
            "item_id": records["item"].astype(str).to_numpy(),
            "type": InteractionType.PURCHASE.value,
            "timestamp": records["timestamp"].to_numpy(),
            "size": records["size"].astype(str).to_numpy(),
            "return_reason": None,
        }
    )
    verdict = records["fit"].astype(str).to_numpy()
    wrong = verdict != "fit"
    returns = base[wrong].copy()
    returns["type"] = InteractionType.RETURN.value
    returns["timestamp"] = returns["timestamp"] + pd.Timedelta(seconds=1)
    returns["return_reason"] = np.where(
        verdict[wrong] == "small", ReturnReason.TOO_SMALL.value, ReturnReason.TOO_LARGE.value
    )
    interactions = pd.concat([base, returns], ignore_index=True)
    interactions["timestamp"] = pd.to_datetime(interactions["timestamp"], utc=True)
    return Dataset(items=items, interactions=interactions, source="renttherunway_clean")


@dataclass
class SizeResult:
    name: str
    correct: np.ndarray
    correct_fit: np.ndarray


def rtr_records(path: Path) -> pd.DataFrame:
    raw = pd.read_parquet(
        path, columns=["fit", "user_id", "item_id", "category", "size", "review_date"]
    )
    raw = raw.assign(category=raw["category"].astype(str).map(RTR_CATEGORY)).dropna(
        subset=["category"]
    )
    records = pd.DataFrame(
        {
            "customer": raw["user_id"].to_numpy(),
            "item": raw["item_id"].to_numpy(),
            "category": raw["category"].to_numpy(),
            "size": raw["size"].astype(int).to_numpy(),
            "fit": raw["fit"].astype(str).to_numpy(),
            "timestamp": pd.to_datetime(raw["review_date"]).dt.tz_localize("UTC").to_numpy(),
        }
    )
    records["order"] = np.arange(len(records))
    return records


def split_targets(
    records: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp | None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rentals before ``start``; per (customer, category) seen before, the first rental in
    ``[start, end)``)."""
    train = records[records["timestamp"] < start]
    later = records[records["timestamp"] >= start]
    if end is not None:
        later = later[later["timestamp"] < end]
    nxt = later.sort_values(["timestamp", "order"]).drop_duplicates(
        ["customer", "category"], keep="first"
    )
    seen = train[["customer", "category"]].drop_duplicates()
    return train, nxt.merge(seen, on=["customer", "category"], how="inner")


def profile_sizes(
    train_ds: Dataset, now: pd.Timestamp, config: ProfileConfig, targets: pd.DataFrame
) -> pd.DataFrame:
    """``targets`` with the profile's ``profile`` size and ``confidence`` per row."""
    sizes = compute_profiles(train_ds, now.to_pydatetime(), config).size_table()
    sizes["customer"] = sizes["customer_id"].astype(np.int64)
    return targets.merge(
        sizes[["customer", "category", "size", "confidence"]].rename(columns={"size": "profile"}),
        on=["customer", "category"],
        how="left",
    )


def rtr_section(root: Path, cutoff: date, n_boot: int) -> None:
    path = root / RTR / "cleandata.parquet"
    section(f"(c) Size-profile accuracy — Rent the Runway ({RTR}), time split")
    if not path.is_file():
        print(f"dataset {RTR} not found at {path}: (c) skipped.")
        return
    records = rtr_records(path)
    cut = pd.Timestamp(cutoff, tz="UTC")
    val_cut = cut - pd.DateOffset(years=1)

    # Rental configuration: chosen on a validation split that lies wholly before the test cutoff.
    val_train, val_targets = split_targets(records, val_cut, cut)
    val_ds = rtr_dataset(val_train)
    grid = []
    for take_back in (0.0, 0.25, 0.5, 1.0):
        for shift in (0.0, 0.25, 0.5, 1.0):
            config = ProfileConfig(size_return_weight=take_back, size_shift_weight=shift)
            found = profile_sizes(val_ds, val_cut, config, val_targets)
            accuracy = float((found["profile"].astype(str) == found["size"].astype(str)).mean())
            grid.append((accuracy, -take_back, -shift, config))
    grid.sort(key=lambda g: (g[0], g[1], g[2]), reverse=True)
    best_val, _, _, rental = grid[0]

    train, targets = split_targets(records, cut, None)
    started = time.perf_counter()
    ds = rtr_dataset(train)
    merged = profile_sizes(ds, cut, ProfileConfig(), targets)
    build_s = time.perf_counter() - started
    rental_found = profile_sizes(ds, cut, rental, targets)
    truth = merged["size"].astype(str).to_numpy()
    is_fit = merged["fit"].to_numpy() == "fit"

    # Baselines from the same training rentals.
    global_mode = (
        train.groupby(["category", "size"]).size().reset_index(name="n")
        .sort_values(["category", "n", "size"], ascending=[True, False, True])
        .drop_duplicates("category").set_index("category")["size"]
    )  # fmt: skip
    own = (
        train.groupby(["customer", "category", "size"])
        .agg(n=("order", "size"), last=("order", "max"))
        .reset_index()
        .sort_values(["customer", "category", "n", "last"], ascending=[True, True, False, False])
        .drop_duplicates(["customer", "category"])
        .set_index(["customer", "category"])["size"]
    )
    last_rows = train.sort_values(["timestamp", "order"]).drop_duplicates(
        ["customer", "category"], keep="last"
    )
    last = last_rows.set_index(["customer", "category"])
    keys = pd.MultiIndex.from_frame(merged[["customer", "category"]])
    predictions = {
        "most common size per category (global)": merged["category"]
        .map(global_mode)
        .astype(str)
        .to_numpy(),
        "customer's own most common size (ties: latest)": own.reindex(keys).astype(str).to_numpy(),
        "customer's last size": last["size"].reindex(keys).astype(str).to_numpy(),
        "profile, retail default (size return 1.0, shift 1.0)": merged["profile"]
        .astype(str)
        .to_numpy(),
        f"profile, rental config (size return {rental.size_return_weight:g}, shift "
        f"{rental.size_shift_weight:g})": rental_found["profile"].astype(str).to_numpy(),
    }
    results = [SizeResult(k, v == truth, (v == truth)[is_fit]) for k, v in predictions.items()]
    print(
        f"{len(records)} rentals in dress/top/bottom/outerwear categories; test cutoff {cutoff} "
        f"({len(train)} rentals before it build the profiles, {build_s:.1f} s). Targets: each "
        f"(customer, category) with a rental before the cutoff and one after — the size of the "
        f"first rental after it: {len(merged)} targets, {int(is_fit.sum())} of which the "
        f"customer said fitted. A 'small' / 'large' verdict is read as a too_small / too_large "
        f"return; an item's size order is the sizes it was rented in. The rental config is the "
        f"best of a 4 × 4 grid (size_return_weight × size_shift_weight) on a validation split "
        f"wholly before the test cutoff (profiles before {val_cut.date()}, targets in "
        f"[{val_cut.date()}, {cutoff}): {len(val_targets)} targets, best "
        f"{100 * best_val:.1f} %). 95 % CIs: {n_boot} bootstrap resamples of targets.\n"
    )

    def ci(values: np.ndarray) -> str:
        # the same seed resamples the same targets for every prediction (paired)
        mean, low, high = bootstrap_ci(values.astype(np.float64), n_boot=n_boot, seed=0)
        return f"{100 * mean:.1f} % [{100 * low:.1f}, {100 * high:.1f}]"

    rows = [[r.name, ci(r.correct), ci(r.correct_fit)] for r in results]
    own_result = results[1]
    for profile in results[3:]:
        diff = profile.correct.astype(float) - own_result.correct.astype(float)
        rows.append(
            [
                f"{profile.name.split(' (')[0]} − own most common",
                ci(diff),
                ci(diff[is_fit]),
            ]
        )
    print(
        markdown_table(
            ["prediction", "exact size accuracy, all targets", "… targets that fitted"], rows
        )
    )

    # Why the shift rule does not pay here: what customers rent after a fit verdict.
    verdict = last["fit"].reindex(keys).to_numpy()
    before = last["size"].reindex(keys).to_numpy()
    after = merged["size"].to_numpy()
    verdict_rows = []
    for name in ("small", "fit", "large"):
        members = verdict == name
        total = int(members.sum())
        verdict_rows.append(
            [
                name,
                total,
                pct(float((after[members] > before[members]).sum()), total),
                pct(float((after[members] == before[members]).sum()), total),
                pct(float((after[members] < before[members]).sum()), total),
            ]
        )
    print("\nNext rental's size vs the last one, by the last rental's fit verdict:\n")
    print(markdown_table(["last verdict", "targets", "larger", "same", "smaller"], verdict_rows))
    print(
        "\nAfter a 'small' verdict RTR customers mostly go *down* a size, after 'large' up: the "
        "verdicts come with sizes above (small) / below (large) the customer's usual one — "
        "customers size around items known to run small or large, and the verdict describes "
        "the item. The retail rule (a too_small return means the customer needs the next size "
        "up) therefore does not transfer to these verdicts; an item-fit-adjusted size model "
        "(the size-fit model) is where they belong."
    )

    confidence = merged["confidence"].fillna(0.0).to_numpy()
    profile = results[3]
    band_rows = []
    for lo, hi in [(0.0, 0.4), (0.4, 0.6), (0.6, 0.8), (0.8, 1.01)]:
        members = (confidence >= lo) & (confidence < hi)
        band_rows.append(
            [
                f"{lo:.1f} – {min(hi, 1.0):.1f}",
                int(members.sum()),
                pct(float(profile.correct[members].sum()), float(members.sum())),
            ]
        )
    print("\nRetail-default profile accuracy by its confidence:\n")
    print(markdown_table(["confidence", "targets", "accuracy"], band_rows))


# --------------------------------------------------------------------------------------------
# (d) scale
# --------------------------------------------------------------------------------------------


def _rss_bytes() -> int:
    with open("/proc/self/statm", "rb") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRss:
    """Samples this process's resident memory every 20 ms while active."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_bytes())
            self._stop.wait(0.02)

    def __enter__(self) -> PeakRss:
        self.peak = _rss_bytes()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_bytes())


def scale_dataset(work: Path, customers: int, items: int) -> Path:
    spec = RetailerSpec(customers=customers, items=items)
    folder = data_dir(work, spec)
    meta = folder / "synthetic.json"
    if meta.is_file() and (folder / "interactions.parquet").is_file():
        params = json.loads(meta.read_text()).get("parameters", {})
        if params.get("customers") == customers and params.get("items") == items:
            print(f"reusing synthetic retailer {folder}")
            return folder
    tmp = folder.with_name(folder.name + ".tmp")
    print(f"generating synthetic retailer ({customers} customers, {items} items) → {folder}")
    generate(tmp, customers=customers, items=items, seed=spec.seed, stores=spec.stores)
    if folder.exists():
        raise SystemExit(f"{folder} exists but is incomplete: remove it and run again")
    tmp.rename(folder)
    return folder


def scale_section(work: Path, customers: int, items: int) -> None:
    section(f"(d) Profile computation at scale — synthetic retailer, {customers} customers")
    folder = scale_dataset(work, customers, items)
    started = time.perf_counter()
    ds = load_dataset(folder)
    load_s = time.perf_counter() - started
    n_events = len(ds.interactions)
    rss_loaded = _rss_bytes()
    now = datetime.fromtimestamp(int(ds.interactions["timestamp"].max().timestamp()), tz=UTC)

    with PeakRss() as peak:
        cpu0, started = time.process_time(), time.perf_counter()
        events = EventTable.from_dataset(ds)
        table_s = time.perf_counter() - started
        t1 = time.perf_counter()
        profiles = compute_profiles(events, now, ProfileConfig())
        profile_s = time.perf_counter() - t1
        cpu_s = time.process_time() - cpu0
    compute_peak = peak.peak

    with PeakRss() as churn_peak:
        t0, c0 = time.perf_counter(), time.process_time()
        churn = ChurnModel(ChurnConfig()).fit_until(events, now)
        churn_fit_s, churn_cpu_s = time.perf_counter() - t0, time.process_time() - c0
        t0 = time.perf_counter()
        with_churn = compute_profiles(events, now, ProfileConfig(), churn=churn)
        with_churn_s = time.perf_counter() - t0

    with tempfile.TemporaryDirectory(prefix="lookbook-profiles-") as tmp:
        t0 = time.perf_counter()
        with_churn.save(Path(tmp))
        save_s = time.perf_counter() - t0
        disk = sum(p.stat().st_size for p in Path(tmp).iterdir())
        t0 = time.perf_counter()
        loaded = CustomerProfiles.load(Path(tmp))
        load_profiles_s = time.perf_counter() - t0

    rng = np.random.default_rng(0)
    ids = loaded.customer_ids[rng.integers(0, len(loaded), 2000)]
    t0 = time.perf_counter()
    for cid in ids:
        loaded.lookup(str(cid))
    lookup_us = (time.perf_counter() - t0) / len(ids) * 1e6
    t0 = time.perf_counter()
    cursor = None
    for _ in range(20):
        page = loaded.list_segment(
            "sleeping_high_value", cursor=cursor, limit=100, min_churn_risk=0.5
        )
        cursor = page["next_cursor"]
        if cursor is None:
            break
    page_ms = (time.perf_counter() - t0) / 20 * 1e3
    item = ds.items.iloc[0]
    attrs = {
        k: item[k]
        for k in ("category", "sizes", "styles", "colour", "material", "price_band", "price")
    }
    event = Interaction(
        customer_id=str(ids[0]),
        item_id=str(item["item_id"]),
        type=InteractionType.PURCHASE,
        timestamp=now,
        size=str(item["sizes"][0]) if len(item["sizes"]) else None,
        price=float(item["price"]),
    )
    state = loaded.state(str(ids[0]))
    t0 = time.perf_counter()
    for _ in range(2000):
        loaded.render(loaded.apply_event(state, event, attrs, now), now)
    update_us = (time.perf_counter() - t0) / 2000 * 1e6
    t0 = time.perf_counter()
    for cid in ids[:20]:
        loaded.erase(str(cid))
    erase_ms = (time.perf_counter() - t0) / 20 * 1e3

    print(
        f"{len(profiles)} customers, {n_events} interactions ({folder.name}), as of {now.date()}. "
        f"Machine: {machine_info()['cpu']}, load average {load_average()} (shared with other "
        f"engineers: wall times are upper bounds).\n"
    )
    print(
        markdown_table(
            ["step", "wall time", "notes"],
            [
                ["load_dataset (Parquet → Dataset)", f"{load_s:.1f} s", f"RSS after load {human_bytes(rss_loaded)}"],
                ["EventTable.from_dataset", f"{table_s:.1f} s", "ids, codes, prices, sizes as arrays"],
                ["compute_profiles (no churn model)", f"{profile_s:.1f} s", f"CPU {cpu_s:.1f} s for both steps"],
                ["peak RSS during the two steps", human_bytes(compute_peak), f"+{human_bytes(compute_peak - rss_loaded)} over the loaded dataset"],
                ["ChurnModel.fit_until (6 snapshots)", f"{churn_fit_s:.1f} s", f"CPU {churn_cpu_s:.1f} s; {churn.training['snapshot_rows']} snapshot rows, {churn.training['rows']} fitted"],
                ["compute_profiles with churn scoring", f"{with_churn_s:.1f} s", f"peak RSS {human_bytes(churn_peak.peak)}"],
                ["save (Parquet + JSON)", f"{save_s:.1f} s", human_bytes(disk)],
                ["CustomerProfiles.load", f"{load_profiles_s:.1f} s", ""],
                ["lookup one customer (JSON dict)", f"{lookup_us:.0f} µs", "mean of 2000"],
                ["list_segment page of 100 (+ churn filter)", f"{page_ms:.1f} ms", "mean of 20 pages"],
                ["apply_event + render (online update)", f"{update_us:.0f} µs", "mean of 2000"],
                ["erase one customer", f"{erase_ms:.0f} ms", "mean of 20; copies the columns"],
            ],
        )
    )  # fmt: skip
    print(
        f"\nProcess peak RSS (ru_maxrss, includes loading): {human_bytes(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)}"
    )


# --------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--scale", action="store_true", help="also run (d), profiles at 1M scale")
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK, help="synthetic data folder")
    parser.add_argument("--customers", type=int, default=1_000_000, help="(d): customers")
    parser.add_argument("--items", type=int, default=100_000, help="(d): items")
    parser.add_argument("--horizon", type=int, default=90, help="churn horizon in days")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples")
    parser.add_argument(
        "--rtr-cutoff", type=date.fromisoformat, default=date(2017, 1, 1), help="(c) time split"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    print("# Customer intelligence benchmark\n")
    print(f"data root: {args.data_root}")
    if not args.data_root.is_dir():
        print(
            f"\nThe shared data folder {args.data_root} is absent: the real-data sections (a)–(c) "
            "are skipped (pass --data-root to point at it)."
        )
    else:
        hm_sections(args.data_root, args.horizon, args.bootstrap)
        rtr_section(args.data_root, args.rtr_cutoff, args.bootstrap)
    if args.scale:
        scale_section(args.work, args.customers, args.items)
    return 0


if __name__ == "__main__":
    sys.exit(main())
