"""``lookbook train``: load data, split by time, fit, evaluate against baselines, write a bundle."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from pydantic import (
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from feature_store.config import StrictConfig, load_config
from feature_store.dataset import Dataset
from feature_store.errors import DataFormatError
from feature_store.event_store import EventStore, describe_location, open_event_store
from feature_store.loaders import load_dataset
from feature_store.profiles import STAGES, TIERS, EventTable, ProfileConfig, compute_profiles
from feature_store.schema import CustomerCols, InteractionCols, InteractionType
from models.als import ALSRecommender
from models.base import IntArray, Recommender, TrainingData
from models.bundle import (
    BlendWeights,
    BundleWriter,
    CandidateTables,
    CustomerPools,
    CustomerVectors,
    DataSection,
    ProfilesSection,
    SequenceSection,
    new_version,
    prune_bundles,
)
from models.bundle.layout import SEQUENCE_SESSIONS
from models.candidates import (
    build_product_siblings,
    build_repeat_rates,
    neighbour_ranking,
    repeat_ranking,
    repurchase_ranking,
)
from models.churn import ChurnConfig, ChurnModel
from models.index import ItemIndex
from models.popularity import PopularityRecommender
from models.ranker import LearnedRanker, RankerConfig
from models.ranker_features import ItemStats
from models.sequence import (
    ItemFeatures,
    SequenceConfig,
    SequenceHyperparameters,
    SequenceRecommender,
)
from models.size_fit import SizeFitConfig
from models.size_fit_ranker import SizeFitRankerConfig
from training.background import Background
from training.blend import fit_blend_weights
from training.churn_eval import evaluate as evaluate_churn
from training.data import (
    PURCHASE_CODE,
    IdMaps,
    build_id_maps,
    encode,
    opted_out_rows,
    purchase_log,
    purchase_matrix,
    return_log,
    to_training_data,
    without_rows,
)
from training.evaluate import catalog_groups, event_prices, event_sizes, product_codes
from training.look import ComplementaryConfig, SeasonalConfig, fit_complementary, fit_seasonal
from training.metrics import catalog_coverage, map_at_k, recall_at_k
from training.pools import als_pools, sequence_pools
from training.ranker import fit_served_ranker, served_item_stats
from training.size_fit import fit_size_model
from training.split import time_split

logger = logging.getLogger("lookbook.training")

PERSONAL_HNSW_ITEMS = 50_000
#: Depth of each source's ranked list handed to the blend fit (as the evaluation harness).
BLEND_DEPTH = 100


class ALSConfig(StrictConfig):
    factors: int = Field(64, ge=2, le=1024)
    regularization: float = Field(0.05, ge=0)
    alpha: float = Field(2.0, gt=0)
    iterations: int = Field(15, ge=1, le=200)


class PopularityConfig(StrictConfig):
    half_life_days: float = Field(14.0, gt=0)


#: What ``lookbook train`` fits where it differs from the model's defaults
#: (:class:`~models.sequence.SequenceHyperparameters`): a smaller network and a fit bounded
#: whatever the data size, on one torch thread (fastest on a shared 2-core machine).
SEQUENCE_TRAIN_DEFAULTS: dict[str, Any] = {
    "epochs": 2,
    "max_len": 20,
    "feature_dim": 8,
    "hidden_dim": 64,
    "output_dim": 32,
    "num_negatives": 512,
    "batch_size": 256,
    "learning_rate": 1e-2,
    "max_windows": 10_000,
    "max_train_seconds": 90.0,
    "num_threads": 1,
    "table_rows": "batch",
}
#: The trainer's bounds on a config file's values, ``(low, high, low is allowed)``: fits that
#: finish on the machine (the model itself only requires positive sizes).
SEQUENCE_TRAIN_LIMITS: dict[str, tuple[float, float, bool]] = {
    "epochs": (1, 200, True),
    "max_len": (1, 1000, True),
    "id_dim": (1, 1024, True),
    "feature_dim": (1, 256, True),
    "hidden_dim": (1, 2048, True),
    "output_dim": (1, 1024, True),
    "num_negatives": (1, 100_000, True),
    "batch_size": (1, 65_536, True),
    "learning_rate": (0, 1, False),
    "num_threads": (1, 64, True),
}


class SequenceTrainConfig(SequenceHyperparameters):
    """The LSTM sequence model (:mod:`models.sequence`) as ``lookbook train`` fits it: the
    model's hyperparameters, with :data:`SEQUENCE_TRAIN_DEFAULTS` where the trainer's differ,
    within :data:`SEQUENCE_TRAIN_LIMITS`; the seed is ``TrainConfig.seed``.

    Training is bounded whatever the data size: each epoch reads at most ``max_windows`` training
    windows (a fresh seeded sample of customers per epoch) and a fit stops after the epoch in
    which ``max_train_seconds`` ran out. Under the cap the fit is deterministic under
    ``TrainConfig.seed``; when the time budget is what stops it (logged, and recorded in the
    manifest's ``sequence`` section), the number of epochs run depends on the machine's speed.
    """

    enabled: bool = Field(
        True, description="fit the LSTM, write it with its index and fit the served blend weights"
    )
    blend_customers: int = Field(
        2_000, ge=1, description="held-out customers the blend weights are fitted on (seeded)"
    )

    @model_validator(mode="before")
    @classmethod
    def _trainer_defaults(cls, data: Any) -> Any:
        return {**SEQUENCE_TRAIN_DEFAULTS, **data} if isinstance(data, dict) else data

    @field_validator(*SEQUENCE_TRAIN_LIMITS)
    @classmethod
    def _within_trainer_limits(cls, value: float, info: ValidationInfo) -> float:
        low, high, low_allowed = SEQUENCE_TRAIN_LIMITS[str(info.field_name)]
        if not (low <= value if low_allowed else low < value) or value > high:
            bound = ">=" if low_allowed else ">"
            raise ValueError(f"must be {bound} {low:g} and <= {high:g}, got {value}")
        return value

    def sequence_config(self, seed: int) -> SequenceConfig:
        """The model's hyperparameters, with the run's seed."""
        fields = self.model_dump(exclude={"enabled", "blend_customers"})
        return SequenceConfig(**fields, seed=seed)


class TrainConfig(StrictConfig):
    """Everything ``lookbook train`` can be told; ``--config`` takes a JSON file of these fields."""

    seed: int = 42
    test_days: int = Field(7, ge=1, description="held-out period at the end of the data, in days")
    k: int = Field(12, ge=1, le=100, description="cut-off of the evaluation metrics")
    eval_customers: int = Field(
        20_000, ge=1, description="at most this many held-out customers are scored (random, seeded)"
    )
    refit_full: bool = Field(True, description="refit on all data after evaluation for the bundle")
    als: ALSConfig = Field(default_factory=ALSConfig)
    popularity: PopularityConfig = Field(default_factory=PopularityConfig)
    index_kind: str = Field("auto", pattern="^(auto|flat|hnsw)$")
    similar_items_precomputed: int = Field(
        50, ge=1, le=1000, description="neighbours per item precomputed for similar-items lists"
    )
    customer_pools: int = Field(
        64,
        ge=0,
        le=1000,
        description="candidates per customer precomputed from the ALS and LSTM indexes (0: none; "
        "a feed of k reads them while max(3k, k+8) plus the exclusions fit)",
    )
    customer_profiles: bool = Field(
        True, description="compute RFM tiers, stages, sizes, affinities and churn into the bundle"
    )
    churn_horizon_days: int = Field(90, ge=1, le=730)
    profiles: ProfileConfig = Field(
        default_factory=ProfileConfig, description="day counts, thresholds, weights of profiles"
    )
    complementary: ComplementaryConfig = Field(default_factory=ComplementaryConfig)
    seasonal: SeasonalConfig = Field(default_factory=SeasonalConfig)
    sequence: SequenceTrainConfig = Field(default_factory=SequenceTrainConfig)
    learned_ranker: bool = Field(
        True,
        description="fit the learned ranker (LambdaRank over the blend's sources, on the blend's "
        "held-out customers) into the bundle; needs the sequence model",
    )
    ranker: RankerConfig = Field(default_factory=RankerConfig)
    keep_bundles: int = Field(
        5,
        ge=1,
        description="bundles kept in the output folder after publishing (older ones are pruned; "
        "never the pinned one, never the newest)",
    )
    size_fit: SizeFitConfig | None = Field(
        default_factory=SizeFitConfig, description="the size-fit model (null: not fitted)"
    )
    size_fit_ranker: SizeFitRankerConfig | None = Field(
        default_factory=SizeFitRankerConfig,
        description="the small / fit / large classifier served with the size-fit model (null: "
        "the latent model's probabilities)",
    )

    @classmethod
    def from_file(cls, path: Path | None) -> TrainConfig:
        """The config in the JSON file at ``path`` (the defaults for None); a misspelt key is a
        :class:`DataFormatError` naming it and the keys allowed there."""
        return load_config(cls, path, what="training config")


@dataclass
class TrainResult:
    bundle_path: Path
    version: str
    metrics: dict[str, dict[str, float]]
    timings: dict[str, float] = field(default_factory=dict)


def drop_customers(dataset: Dataset, customer_ids: set[str]) -> Dataset:
    """``dataset`` without any row of ``customer_ids`` (customers table and interactions)."""
    if not customer_ids:
        return dataset
    inter = dataset.interactions
    keep = ~inter[InteractionCols.CUSTOMER_ID].astype(str).isin(customer_ids).to_numpy()
    customers = dataset.customers
    keep_c = ~customers[CustomerCols.ID].astype(str).isin(customer_ids).to_numpy()
    logger.info(
        "erasure: dropping %d interactions and %d customer rows of %d erased customers",
        int((~keep).sum()),
        int((~keep_c).sum()),
        len(customer_ids),
    )
    kept = inter[keep].reset_index(drop=True)
    ids = kept[InteractionCols.CUSTOMER_ID]
    if isinstance(ids.dtype, pd.CategoricalDtype):  # categories would keep the erased ids
        kept[InteractionCols.CUSTOMER_ID] = ids.cat.remove_unused_categories()
    return Dataset(
        items=dataset.items,
        interactions=kept,
        customers=customers[keep_c].reset_index(drop=True),
        stock=dataset.stock,
        source=dataset.source,
    )


def apply_consents(dataset: Dataset, consents: dict[str, bool]) -> Dataset:
    """``dataset`` whose customers carry the consent recorded through the service (it overrides
    the data's ``consent_personalization``; customers only the service knows are added)."""
    if not consents:
        return dataset
    customers = dataset.customers.copy()
    column = CustomerCols.CONSENT_PERSONALIZATION
    if column not in customers.columns:
        customers[column] = pd.NA
    customers[column] = customers[column].astype("boolean")
    ids = customers[CustomerCols.ID].astype(str)
    known = ids.isin(consents.keys())
    customers.loc[known, column] = ids[known].map(consents).astype("boolean")
    extra = sorted(set(consents) - set(ids))
    if extra:
        added = pd.DataFrame({CustomerCols.ID: extra, column: [consents[c] for c in extra]})
        customers = pd.concat([customers, added.astype({column: "boolean"})], ignore_index=True)
    logger.info("consent: %d customers' consent recorded through the service", len(consents))
    return Dataset(
        items=dataset.items,
        interactions=dataset.interactions,
        customers=customers,
        stock=dataset.stock,
        source=dataset.source,
    )


def _event_source(events_dir: Path | None, database_url: str | None) -> EventStore | None:
    """The event store to read: the database when a URL is given, else the log folder if any."""
    if database_url:
        return open_event_store(database_url, read_only=True)
    if events_dir is not None and events_dir.exists():
        return open_event_store(events_dir, read_only=True)
    return None


def load_training_frame(
    data: Path, events_dir: Path | None, database_url: str | None = None
) -> Dataset:
    """The dataset at ``data`` plus the durable events (the event log folder, or the PostgreSQL
    event store when ``database_url`` is given, streamed out with COPY) appended to its
    interactions.

    Erasure: customers with a tombstone in the event log are removed from the dataset's customers
    and interactions before anything is fitted; the log itself yields none of their events logged
    or dated before the tombstone. The next bundle therefore holds nothing of them.
    """
    dataset = load_dataset(data)
    log = _event_source(events_dir, database_url)
    if log is not None:
        dataset = drop_customers(dataset, set(log.erased_customers()))
        dataset = apply_consents(dataset, log.consents())
        events = log.read_frame()
        log.close()
        if len(events):
            known = (
                events[InteractionCols.ITEM_ID]
                .astype(str)
                .isin(dataset.items["item_id"].astype(str))
            )
            if not known.all():
                logger.warning(
                    "event log: %d events name items not in the catalog; skipped",
                    int((~known).sum()),
                )
            logger.info("event log: appending %d events", int(known.sum()))
            frames = [dataset.interactions, events[known]]
            cols = list(dataset.interactions.columns)
            merged = pd.concat([f.reindex(columns=cols) for f in frames], ignore_index=True)
            for col in (InteractionCols.CUSTOMER_ID, InteractionCols.ITEM_ID):
                merged[col] = merged[col].astype(str)
            dataset = Dataset(
                items=dataset.items,
                interactions=merged,
                customers=dataset.customers,
                stock=dataset.stock,
                source=dataset.source,
            )
    return dataset


def _fit_models(
    data: TrainingData, config: TrainConfig, progress: bool, opted_out: np.ndarray
) -> tuple[ALSRecommender, PopularityRecommender]:
    """ALS learns only from customers who consented to personalization (``opted_out`` are the
    dense indices of those who did not); popularity counts everyone's purchases anonymously."""
    als = ALSRecommender(
        factors=config.als.factors,
        regularization=config.als.regularization,
        alpha=config.als.alpha,
        iterations=config.als.iterations,
        random_state=config.seed,
    )
    als.fit(without_rows(data, opted_out), show_progress=progress)
    popularity = PopularityRecommender(half_life_days=config.popularity.half_life_days)
    popularity.fit(data, show_progress=progress)
    return als, popularity


@dataclass(frozen=True)
class HeldOut:
    """Customers who bought something in the held-out period (dense indices, ascending; at most
    ``max_customers``, a seeded sample) and the items each bought there (sorted, distinct)."""

    users: IntArray
    truths: list[list[int]]

    def __len__(self) -> int:
        return len(self.users)


def held_out_customers(
    test: pd.DataFrame, maps: IdMaps, *, max_customers: int, seed: int
) -> HeldOut:
    """The held-out customers :func:`evaluate` scores (customers unseen in training included)."""
    bought = test[test[InteractionCols.TYPE].astype(str) == InteractionType.PURCHASE.value]
    users = encode(bought[InteractionCols.CUSTOMER_ID], maps.customers)
    items = encode(bought[InteractionCols.ITEM_ID], maps.items)
    mask = (users >= 0) & (items >= 0)
    truth_frame = pd.DataFrame({"u": users[mask], "i": items[mask]})
    truth = truth_frame.groupby("u")["i"].agg(lambda s: sorted(set(s.tolist())))
    if len(truth) == 0:
        return HeldOut(np.empty(0, dtype=np.int64), [])
    rng = np.random.default_rng(seed)
    chosen = np.sort(
        rng.choice(truth.index.to_numpy(), size=min(max_customers, len(truth)), replace=False)
    ).astype(np.int64)
    return HeldOut(chosen, [truth[u] for u in chosen])


class HeldOutLists:
    """Each model's ranked list (``depth`` items, -1 padded) for the held-out customers, computed
    once per model on first use: the metrics read the first ``k`` columns, the blend all."""

    def __init__(
        self,
        models: Mapping[str, Recommender],
        train: TrainingData,
        held_out: HeldOut,
        *,
        depth: int,
        progress: bool = False,
    ) -> None:
        self.models = dict(models)
        self.train = train
        self.held_out = held_out
        self.depth = int(depth)
        self.progress = progress
        self._lists: dict[str, IntArray] = {}
        self._pending: dict[str, Future[IntArray]] = {}

    def add(self, name: str, model: Recommender) -> None:
        """Rank the held-out customers by ``model`` too (as ``name``)."""
        self.models[name] = model

    def prefetch(self, names: Sequence[str], background: Background) -> None:
        """Compute the lists of ``names`` on ``background``'s thread (each model's ``recommend``
        reads only its own fitted state, so the lists are the ones computed inline)."""
        for name in names:
            if name not in self._lists and name not in self._pending:
                model = self.models[name]
                self._pending[name] = background.submit(partial(self._rank, model, name))

    def __getitem__(self, name: str) -> IntArray:
        if name not in self._lists:
            pending = self._pending.pop(name, None)
            self._lists[name] = (
                pending.result()
                if pending is not None
                else self._rank(self.models[name], name, self.progress)
            )
        return self._lists[name]

    def _rank(self, model: Recommender, name: str, progress: bool = False) -> IntArray:
        users = self.held_out.users
        rows = self.train.user_items[users]
        out = np.full((len(users), self.depth), -1, dtype=np.int64)
        batch = 2048
        for start in tqdm(
            range(0, len(users), batch), desc=f"evaluate {name}", disable=not progress
        ):
            ids, _ = model.recommend(
                users[start : start + batch],
                rows[start : start + batch],
                N=self.depth,
                filter_already_liked_items=False,
            )
            ids = np.asarray(ids, dtype=np.int64)
            ids = ids.reshape(len(users[start : start + batch]), -1)[:, : self.depth]
            out[start : start + len(ids), : ids.shape[1]] = ids
        return out

    def metrics(self, name: str, k: int) -> dict[str, float]:
        """Recall@k, MAP@k, catalog coverage of the top ``k`` and the number of customers."""
        top = self[name][:, :k]
        predicted = [row[row >= 0].tolist() for row in top]
        actual = self.held_out.truths
        return {
            f"recall@{k}": float(recall_at_k(actual, predicted, k)),
            f"map@{k}": float(map_at_k(actual, predicted, k)),
            "coverage": float(catalog_coverage(predicted, self.train.n_items)),
            "customers": float(len(self.held_out)),
        }


def evaluate(
    models: dict[str, Recommender],
    train: TrainingData,
    test: pd.DataFrame,
    maps: IdMaps,
    *,
    k: int,
    max_customers: int,
    seed: int,
    progress: bool = False,
) -> dict[str, dict[str, float]]:
    """Recall@k / MAP@k of each model on the customers who bought something in ``test``.

    Ground truth is the set of items each such customer bought in the held-out period; customers
    unseen in training are scored too (every model then falls back to what it can do for them).
    """
    held_out = held_out_customers(test, maps, max_customers=max_customers, seed=seed)
    if len(held_out) == 0:
        logger.warning("no purchases in the held-out period: nothing to evaluate")
        return {name: {} for name in models}
    lists = HeldOutLists(models, train, held_out, depth=k, progress=progress)
    return {name: lists.metrics(name, k) for name in models}


# --------------------------------------------------------------------------- the LSTM and the blend


def _without_customers(
    data: TrainingData, sizes: list[str | None], rows: npt.NDArray[np.int64]
) -> tuple[TrainingData, list[str | None]]:
    """``data`` (and its per-event ``sizes``) without any event of the customers ``rows``."""
    if len(rows) == 0:
        return data, sizes
    keep = ~np.isin(data.user_idx, rows)
    kept = without_rows(data, rows)
    return (
        replace(
            kept,
            user_idx=data.user_idx[keep],
            item_idx=data.item_idx[keep],
            timestamps=data.timestamps[keep],
            event_types=data.event_types[keep],
            weights=data.weights[keep],
        ),
        [s for s, k in zip(sizes, keep.tolist(), strict=True) if k],
    )


def _fit_sequence(
    frame: pd.DataFrame,
    data: TrainingData,
    maps: IdMaps,
    features: ItemFeatures,
    config: TrainConfig,
    progress: bool,
    opted_out: npt.NDArray[np.int64],
) -> SequenceRecommender:
    """The LSTM on ``data`` (encoded from ``frame``) with the catalog's side features and the
    sizes of the events. Like ALS it learns only from customers who consented to
    personalization: the others' events are left out (so it keeps no history of them either)."""
    columns = [
        c
        for c in (
            InteractionCols.CUSTOMER_ID,
            InteractionCols.ITEM_ID,
            InteractionCols.TIMESTAMP,
            InteractionCols.SIZE,
        )
        if c in frame.columns
    ]
    sizes = event_sizes(frame[columns], maps, data)  # sorting four columns, not all
    data, sizes = _without_customers(data, sizes, opted_out)
    model = SequenceRecommender(
        config.sequence.sequence_config(config.seed), item_features=features
    )
    return model.fit(data, sizes=sizes, show_progress=progress)


def _sequence_summary(model: SequenceRecommender) -> dict[str, Any]:
    return {
        "train_seconds": round(model.train_seconds, 3),
        "epochs_run": len(model.loss_history),
        "stopped_by_budget": model.stopped_by_budget,
        "final_loss": round(model.loss_history[-1], 4) if model.loss_history else None,
    }


@dataclass(frozen=True)
class BlendContext:
    """What a blend source reads: the customers to rank (``users``, rows ``rows`` of the held-out
    lists), the training period's data and end, its purchase log (:func:`purchase_log`, shared by
    the purchase-based sources) and the models' held-out lists."""

    users: IntArray
    rows: IntArray
    train: TrainingData
    purchases: dict[str, npt.NDArray[Any]]
    lists: HeldOutLists
    depth: int


BlendSource = Callable[[BlendContext], IntArray]


def _model_source(name: str) -> BlendSource:
    """A blend source that is a model's ranked list from the held-out evaluation."""

    def source(ctx: BlendContext) -> IntArray:
        return ctx.lists[name][ctx.rows, : ctx.depth]

    return source


def candidate_tables(dataset: Dataset, maps: IdMaps, data: TrainingData) -> CandidateTables:
    """The tables of a bundle trained on ``data``: rebuy rates from its purchases (grouped by the
    catalog's product type, else category) and product siblings proposing only items with an
    event in ``data`` (an item nobody touched is not on sale)."""
    ids = maps.items.ids()
    groups = catalog_groups(dataset.items, ids)
    bought = data.event_types == PURCHASE_CODE
    rates = build_repeat_rates(
        data.user_idx[bought], data.item_idx[bought], data.timestamps[bought], groups
    )
    seen = np.zeros(len(ids), dtype=bool)
    seen[data.item_idx] = True
    siblings = build_product_siblings(product_codes(dataset.items, ids), eligible=seen)
    return CandidateTables(repeat_rates=rates, siblings=siblings)


def _purchases_source(
    rank: Callable[[IntArray, npt.NDArray[np.int64], npt.NDArray[np.float64], int], IntArray],
) -> BlendSource:
    """A blend source ranking each held-out customer from their training-period purchases."""

    def source(ctx: BlendContext) -> IntArray:
        log = ctx.purchases
        indptr = log["indptr"]
        out = np.full((len(ctx.users), ctx.depth), -1, dtype=np.int64)
        for r, user in enumerate(ctx.users.tolist()):
            a, b = int(indptr[user]), int(indptr[user + 1])
            ranked = rank(
                log["items"][a:b].astype(np.int64),
                log["timestamps"][a:b],
                log["weights"][a:b].astype(np.float64),
                ctx.train.now,
            )[: ctx.depth]
            out[r, : len(ranked)] = ranked
        return out

    return source


def table_sources(
    tables: CandidateTables, popularity_scores: npt.NDArray[np.floating[Any]]
) -> dict[str, BlendSource]:
    """The ``repeat`` and ``siblings`` blend sources over a bundle's candidate tables (ranked
    by the same functions, with the same defaults, as the service's sources)."""
    scores = np.asarray(popularity_scores, dtype=np.float64)
    return {
        "repeat": _purchases_source(
            lambda items, ts, w, now: repeat_ranking(items, ts, w, now, tables.repeat_rates)[0]
        ),
        "siblings": _purchases_source(
            lambda items, ts, w, now: neighbour_ranking(
                items, ts, w, now, tables.siblings, item_scores=scores, depth=BLEND_DEPTH
            )[0]
        ),
    }


#: The served blend's model-free and model sources (names as :data:`models.bundle.SOURCES` and the
#: service know them) → how each ranks the held-out customers; :func:`table_sources` adds the
#: sources over the candidate tables. Adding a source is one entry here.
BLEND_SOURCES: dict[str, BlendSource] = {
    # the customer's own purchases by recency-weighted count, as of the training period's end
    "repurchase": _purchases_source(
        lambda items, ts, w, now: repurchase_ranking(items, ts, w, now)[0]
    ),
    "als": _model_source("als"),
    "sequence": _model_source("sequence"),
    "popularity": _model_source("popularity"),
}


def fit_served_blend(
    lists: HeldOutLists,
    train: TrainingData,
    *,
    k: int,
    max_customers: int,
    seed: int,
    sources: Mapping[str, BlendSource] = BLEND_SOURCES,
    window: dict[str, Any] | None = None,
) -> tuple[BlendWeights, dict[str, Any]]:
    """Blend weights fitted on the time split: at most ``max_customers`` of the held-out customers
    (a seeded sample), each source's list of depth :data:`BLEND_DEPTH` from the training period,
    their held-out purchases as the truth. Returns the weights and a summary for the manifest."""
    held_out = lists.held_out
    n = min(int(max_customers), len(held_out))
    rng = np.random.default_rng([seed, 0xB1E])
    rows = np.sort(rng.choice(len(held_out), size=n, replace=False)).astype(np.int64)
    ctx = BlendContext(
        users=held_out.users[rows],
        rows=rows,
        train=train,
        purchases=purchase_log(train),
        lists=lists,
        depth=BLEND_DEPTH,
    )
    rankings = {name: source(ctx) for name, source in sources.items()}
    truths = [np.asarray(held_out.truths[r], dtype=np.int64) for r in rows]
    weights = fit_blend_weights(rankings, truths, k=k)
    summary = {"customers": n, "depth": BLEND_DEPTH, "sources": list(sources)}
    if window is not None:  # the learned ranker is fitted on the same customers and lists
        window.update(users=ctx.users, rankings=rankings, truths=truths, purchases=ctx.purchases)
    return weights, summary


def _ranker_stats(
    dataset: Dataset,
    frame: pd.DataFrame,
    maps: IdMaps,
    data: TrainingData,
    tables: CandidateTables,
) -> ItemStats:
    """The learned ranker's item statistics as of the end of ``data`` (``to_training_data(frame,
    maps, ...)``): prices paid, popularity, first sales, rebuy rates."""
    ids = maps.items.ids()
    return served_item_stats(
        data,
        event_prices(frame, maps, data),
        as_of=int(data.now) + 1,
        groups=catalog_groups(dataset.items, ids),
        codes=product_codes(dataset.items, ids),
        rebuy=tables.repeat_rates,
    )


def _customer_intelligence(
    dataset: Dataset, now: pd.Timestamp, config: TrainConfig
) -> tuple[tuple[Any, ChurnModel | None], dict[str, Any]]:
    """Churn model and customer profiles as of the data's last day, plus a manifest summary.

    The churn AUC is measured on a time split: a model fitted with labels ending one horizon
    before ``now`` is scored on the customers at that cutoff (labels from the last horizon),
    beside the recency-only baseline. Too little history for churn → profiles without churn risk.
    """
    as_of = now.to_pydatetime()
    events = EventTable.from_dataset(dataset)
    churn_config = ChurnConfig(horizon_days=config.churn_horizon_days, seed=config.seed)
    churn: ChurnModel | None = None
    churn_summary: dict[str, Any] = {"horizon_days": config.churn_horizon_days}
    try:
        churn = ChurnModel(churn_config).fit_until(events, as_of)
    except ValueError as exc:
        logger.warning("churn model not fitted (profiles carry no churn risk): %s", exc)
        churn_summary["skipped"] = str(exc)
    if churn is not None:
        cutoff = as_of - pd.Timedelta(days=config.churn_horizon_days)
        try:
            held = ChurnModel(churn_config).fit_until(events, cutoff)
            result = evaluate_churn(held, events, cutoff, n_boot=0, seed=config.seed)
            churn_summary.update(
                {
                    "eval_cutoff": result.cutoff.isoformat(),
                    "eval_customers": result.customers,
                    "auc": round(result.model.auc, 4),
                    "recency_auc": round(result.recency.auc, 4),
                }
            )
        except ValueError as exc:
            logger.warning("churn AUC not measured: %s", exc)
            churn_summary["eval_skipped"] = str(exc)
    profiles = compute_profiles(events, as_of, config.profiles, churn=churn)
    counts = profiles.counts()
    summary = {
        "as_of": counts["as_of"],
        "customers": counts["customers"],
        "tiers": {name: counts["tiers"][name] for name in TIERS},
        "stages": {name: counts["stages"][name] for name in STAGES},
        "churn": churn_summary,
    }
    return (profiles, churn), summary


def train(
    data: Path,
    out: Path,
    *,
    config: TrainConfig | None = None,
    events_dir: Path | None = None,
    database_url: str | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train every model on ``data`` (+ event log) and publish a new bundle under ``out``.

    Some work (:class:`Background`) runs on a second thread beside single-threaded phases."""
    background = Background()
    try:
        return _train(
            data,
            out,
            config=config or TrainConfig(),
            events_dir=events_dir,
            database_url=database_url,
            progress=progress,
            background=background,
        )
    finally:
        background.close()


def _train(
    data: Path,
    out: Path,
    *,
    config: TrainConfig,
    events_dir: Path | None,
    database_url: str | None,
    progress: bool,
    background: Background,
) -> TrainResult:
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    dataset = load_training_frame(data, events_dir, database_url)
    timings["load"] = time.perf_counter() - t0
    logger.info(
        "loaded %s: %d items, %d customers, %d interactions",
        data,
        len(dataset.items),
        len(dataset.customers),
        dataset.n_interactions,
    )
    interactions = dataset.interactions
    if len(interactions) == 0:
        raise DataFormatError("no interactions to train on", file=str(data))
    maps = build_id_maps(dataset)
    now = pd.Timestamp(interactions[InteractionCols.TIMESTAMP].max())

    t = time.perf_counter()
    train_frame, test_frame = time_split(interactions, test_days=config.test_days)
    train_now = pd.Timestamp(train_frame[InteractionCols.TIMESTAMP].max())
    train_data = to_training_data(train_frame, maps, now=train_now)
    opted_out = opted_out_rows(dataset, maps)
    timings["prepare"] = time.perf_counter() - t

    t = time.perf_counter()
    als, popularity = _fit_models(train_data, config, progress, opted_out)
    timings["fit_eval_models"] = time.perf_counter() - t

    use_sequence = config.sequence.enabled
    sequence: SequenceRecommender | None = None
    features: ItemFeatures | None = None
    sequence_summary: dict[str, Any] = {}
    models: dict[str, Recommender] = {"als": als, "popularity": popularity}
    t = time.perf_counter()
    held_out = held_out_customers(
        test_frame, maps, max_customers=config.eval_customers, seed=config.seed
    )
    # with the blend to fit, each model's list is ranked once, deep enough for both
    depth = max(config.k, BLEND_DEPTH) if use_sequence else config.k
    lists = HeldOutLists(models, train_data, held_out, depth=depth, progress=progress)
    evaluate_seconds = time.perf_counter() - t
    if use_sequence:
        lists.prefetch(list(models), background)  # ranked while the LSTM fits
        t = time.perf_counter()
        features = ItemFeatures.from_frame(dataset.items, maps.items.ids())
        sequence = _fit_sequence(
            train_frame, train_data, maps, features, config, progress, opted_out
        )
        models["sequence"] = sequence
        lists.add("sequence", sequence)
        sequence_summary["eval_fit"] = _sequence_summary(sequence)
        timings["fit_eval_sequence"] = time.perf_counter() - t

    t = time.perf_counter()
    if len(held_out) == 0:
        logger.warning("no purchases in the held-out period: nothing to evaluate")
        metrics: dict[str, dict[str, float]] = {name: {} for name in models}
    else:
        # the models fitted last first: the earlier ones' lists may still be ranking on the
        # background thread meanwhile
        measured = {name: lists.metrics(name, config.k) for name in reversed(models)}
        metrics = {name: measured[name] for name in models}
    timings["evaluate"] = evaluate_seconds + time.perf_counter() - t

    blend: BlendWeights | None = None
    ranker: LearnedRanker | None = None
    window: dict[str, Any] = {}
    if use_sequence:
        t = time.perf_counter()
        train_tables = candidate_tables(dataset, maps, train_data)
        popularity_model = models["popularity"]
        assert isinstance(popularity_model, PopularityRecommender)
        popularity_scores = np.asarray(popularity_model.scores)
        blend, sequence_summary["blend"] = fit_served_blend(
            lists,
            train_data,
            k=config.k,
            max_customers=min(config.eval_customers, config.sequence.blend_customers),
            seed=config.seed,
            sources={**BLEND_SOURCES, **table_sources(train_tables, popularity_scores)},
            window=window,
        )
        timings["blend"] = time.perf_counter() - t
        if config.learned_ranker and window:
            t = time.perf_counter()
            ranker, sequence_summary["ranker"] = fit_served_ranker(
                window["rankings"],
                window["users"],
                window["truths"],
                window["purchases"],
                now=train_data.now + 1,
                stats=_ranker_stats(dataset, train_frame, maps, train_data, train_tables),
                depth=BLEND_DEPTH,
                config=config.ranker.model_copy(update={"seed": config.seed}),
                blend=blend.weights,
                blend_rrf_k=blend.rrf_k,
            )
            timings["ranker"] = time.perf_counter() - t
        del window
    del lists  # the held-out lists (customers x depth per model) are not needed any more

    # Inner product with raw factors ranks by the ALS score (personalized retrieval);
    # normalised factors rank by cosine similarity (similar items).
    # The personalized index answers every uncached feed request: past PERSONAL_HNSW_ITEMS
    # items an HNSW graph (~0.2 ms, recall@12 ~0.95) beats an exact scan (~1.5 ms).
    personal_kind = config.index_kind
    if personal_kind == "auto":
        personal_kind = "hnsw" if len(maps.items) > PERSONAL_HNSW_ITEMS else "flat"
    sequence_index: Future[ItemIndex] | None = None
    if config.refit_full:
        t = time.perf_counter()
        full = to_training_data(interactions, maps, now=now)
        als, popularity = _fit_models(full, config, progress, opted_out)
        timings["refit_full"] = time.perf_counter() - t
    else:
        full = train_data
    # the ALS indexes and the similar-items table are built while the trainer goes on
    als_index = background.build(als.item_factors, kind=personal_kind, seed=config.seed)
    similar = background.similar_items(
        als.item_vectors(),
        kind=config.index_kind,
        seed=config.seed,
        n=config.similar_items_precomputed,
    )
    # each customer's ALS answers, searched beside the LSTM's refit (training/pools.py)
    pools: dict[str, Future[CustomerPools]] = {}
    sessions: CustomerVectors | None = None  # the LSTM's, with its pools
    if config.customer_pools:
        pools["als"] = als_pools(
            background, config.customer_pools, users=als.user_factors, items=als.item_factors,
            served=als_index, seed=config.seed,
        )  # fmt: skip
    if config.refit_full and use_sequence:
        assert features is not None
        t = time.perf_counter()
        sequence = _fit_sequence(interactions, full, maps, features, config, progress, opted_out)
        timings["refit_sequence"] = time.perf_counter() - t
    if sequence is not None:
        sequence_summary["fit"] = _sequence_summary(sequence)
        # The LSTM's item vectors [v_i, b_i] queried with its session vector [u, 1]: inner
        # product = the model's score before the repeat term (added to the candidates at
        # request time), so it is built like the personalized ALS index.
        sequence_index = background.build(
            sequence.item_vectors(), kind=personal_kind, seed=config.seed
        )
    if config.customer_pools and sequence_index is not None:
        assert sequence is not None
        t = time.perf_counter()
        pools["sequence"], sessions = sequence_pools(
            background, config.customer_pools, sequence=sequence, served=sequence_index,
            seed=config.seed,
        )  # fmt: skip
        timings["pools"] = time.perf_counter() - t
    full_tables = candidate_tables(dataset, maps, full)
    if ranker is not None:  # served with the item statistics as of the bundle's data end
        full_frame = interactions if config.refit_full else train_frame
        ranker.stats = _ranker_stats(dataset, full_frame, maps, full, full_tables)

    profiles = None
    profile_summary: dict[str, Any] = {}
    if config.customer_profiles:
        t = time.perf_counter()
        # The churn model's small Newton steps are slower with threaded BLAS (thread start-up
        # and contention dominate a (d+1)² Hessian): one thread is ~10x faster here.
        with threadpool_limits(limits=1, user_api="blas"):
            profiles, profile_summary = _customer_intelligence(dataset, now, config)
        timings["profiles"] = time.perf_counter() - t

    # Complete the look (same-day baskets) and seasonal demand, fitted on all the data.
    look_models: dict[str, Any] = {}
    look_summary: dict[str, Any] = {}
    if config.complementary.enabled:
        t = time.perf_counter()
        look_models["complementary"], look_summary["complementary"] = fit_complementary(
            dataset, maps, config.complementary, now=now, seed=config.seed,
            index_kind=config.index_kind,
        )  # fmt: skip
        timings["complementary"] = time.perf_counter() - t
    if config.seasonal.enabled:
        t = time.perf_counter()
        look_models["seasonal"], look_summary["seasonal"] = fit_seasonal(
            dataset, full, config.seasonal
        )
        timings["seasonal"] = time.perf_counter() - t

    size_model = None
    if config.size_fit is not None:
        t = time.perf_counter()
        size_model, _ = fit_size_model(
            dataset, maps, opted_out, config.size_fit, config.size_fit_ranker, progress=progress
        )
        timings["size_fit"] = time.perf_counter() - t

    t = time.perf_counter()
    fingerprint = dataset.fingerprint()
    version = new_version(fingerprint)
    writer = BundleWriter(out, version)
    try:
        layout = writer.layout
        writer.write_ids(maps.items, maps.customers)
        writer.write_catalog(dataset.items)
        writer.write_stock(dataset.stock)
        writer.write_user_items(full.user_items)
        writer.write_purchases(purchase_matrix(full))
        writer.write_candidates(full_tables)
        writer.write_purchase_history(purchase_log(full))
        writer.write_returns(return_log(interactions, maps))
        als.save(layout.als_model)
        popularity.save(layout.popularity_model)
        sequence_seconds = 0.0
        if sequence is not None:
            t_seq = time.perf_counter()
            sequence.save(layout.sequence_model)
            sequence_seconds = time.perf_counter() - t_seq
        if profiles is not None:
            profiles_batch, churn = profiles
            profiles_batch.save(layout.profiles)
            if churn is not None:
                churn.save(layout.churn)
        if size_model is not None:
            size_model.save(layout.size_fit_model)
            if size_model.classifier is not None:
                size_model.classifier.save(layout.size_fit_ranker_model)
        if ranker is not None:
            ranker.save(layout.ranker_model)
        for name, look_model in look_models.items():
            if look_model is not None:
                look_model.save(layout.model(name))
        # last, so the background work had the longest to finish
        als_index.result().save(layout.als_index)
        if sequence_index is not None:
            t_seq = time.perf_counter()
            sequence_index.result().save(layout.sequence_index)
            sequence_seconds += time.perf_counter() - t_seq
        if sessions is not None:
            sessions.save(layout.pool(SEQUENCE_SESSIONS))
        for name, pool in pools.items():
            pool.result().save(layout.pool(name))
        cosine, neighbours = similar.result()
        cosine.save(layout.als_cosine_index)
        writer.write_similar_items(neighbours)
        timings["write"] = time.perf_counter() - t - sequence_seconds
        if sequence is not None:
            timings["write_sequence"] = sequence_seconds
        timings["background"] = background.busy_seconds
        timings["total"] = time.perf_counter() - t0
        path = writer.commit(
            data=DataSection(
                path=str(data),
                source=dataset.source,
                fingerprint=fingerprint,
                first_interaction=str(interactions[InteractionCols.TIMESTAMP].min()),
                last_interaction=str(now),
                interactions=len(interactions),
                event_log=(
                    describe_location(database_url)
                    if database_url
                    else (str(events_dir) if events_dir is not None else None)
                ),
            ),
            config=config.model_dump(mode="json"),
            metrics=metrics,
            item_count=len(maps.items),
            customer_count=len(maps.customers),
            timings_seconds={key: round(value, 3) for key, value in timings.items()},
            blend=blend,
            sequence=SequenceSection.model_validate(sequence_summary) if sequence_summary else None,
            look=look_summary or None,
            profiles=ProfilesSection.model_validate(profile_summary) if profile_summary else None,
        )
    except BaseException:
        writer.abort()
        raise
    pruned = prune_bundles(out, config.keep_bundles)
    if pruned:
        logger.info("pruned %d old bundle(s): %s", len(pruned), ", ".join(pruned))
    return TrainResult(bundle_path=path, version=version, metrics=metrics, timings=timings)
