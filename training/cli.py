"""The ``lookbook`` command line: generate, train, serve, bundles, db upgrade."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Literal

import typer

from feature_store.errors import LookbookError

logger = logging.getLogger("lookbook.cli")

cli = typer.Typer(
    name="lookbook",
    help="Lookbook: recommendations for fashion retail.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

db = typer.Typer(help="The PostgreSQL event store's schema.", no_args_is_help=True)
cli.add_typer(db, name="db")

DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        envvar="LOOKBOOK_DATABASE_URL",
        help="PostgreSQL event store, postgresql://… (default: LOOKBOOK_DATABASE_URL)",
    ),
]

EMBEDDED_CUSTOMERS = 5_000
EMBEDDED_ITEMS = 2_000


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _fail(exc: LookbookError) -> None:
    typer.secho(f"error [{exc.code}]: {exc}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=2)


@cli.command()
def generate(
    out: Annotated[Path, typer.Option(help="folder to write the synthetic retailer into")] = Path(
        "var/data/synthetic"
    ),
    customers: Annotated[int, typer.Option(min=1)] = EMBEDDED_CUSTOMERS,
    items: Annotated[int, typer.Option(min=1)] = EMBEDDED_ITEMS,
    seed: Annotated[int, typer.Option()] = 42,
    stores: Annotated[int, typer.Option(min=1)] = 8,
    interactions_per_customer: Annotated[float, typer.Option(min=0.1)] = 10.0,
    verbose: bool = False,
) -> None:
    """Generate a deterministic synthetic fashion retailer (own Parquet format)."""
    from feature_store.synthetic import generate as run_generate

    _setup_logging(verbose)
    report = run_generate(
        out,
        customers=customers,
        items=items,
        seed=seed,
        stores=stores,
        interactions_per_customer=interactions_per_customer,
        show_progress=True,
    )
    typer.echo(json.dumps(report, indent=2, default=str))


@cli.command()
def train(
    data: Annotated[Path, typer.Option(help="data folder: own format, H&M, or synthetic")],
    out: Annotated[Path, typer.Option(help="bundles folder; a new version is added")] = Path(
        "var/bundles"
    ),
    config: Annotated[Path | None, typer.Option(help="JSON file of training settings")] = None,
    events: Annotated[
        Path | None, typer.Option(help="event log folder to append to the data")
    ] = None,
    database_url: DatabaseUrl = None,
    keep: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="bundles to keep after publishing, older ones pruned (never the pinned one); "
            "default: the config's keep_bundles, 5",
        ),
    ] = None,
    verbose: bool = False,
) -> None:
    """Train all models, evaluate them against baselines, and publish a versioned bundle."""
    from training.train import TrainConfig
    from training.train import train as run_train

    _setup_logging(verbose)
    try:
        train_config = TrainConfig.from_file(config)
        if keep is not None:
            train_config = train_config.model_copy(update={"keep_bundles": keep})
        result = run_train(
            data, out, config=train_config, events_dir=events, database_url=database_url
        )
    except LookbookError as exc:
        _fail(exc)
        return
    typer.echo(f"bundle {result.version} written to {result.bundle_path}")
    typer.echo(_metrics_table(result.metrics))


@db.command("upgrade")
def db_upgrade(database_url: DatabaseUrl = None, verbose: bool = False) -> None:
    """Create or upgrade the event store's tables (the pending numbered migrations, each in one
    transaction; safe to run from several replicas at once)."""
    from feature_store.event_store import describe_location
    from feature_store.schema_migrations import current_version, expected_version, upgrade

    _setup_logging(verbose)
    if not database_url:
        typer.secho(
            "error: give --database-url or set LOOKBOOK_DATABASE_URL", fg=typer.colors.RED, err=True
        )
        raise typer.Exit(code=2)
    try:
        applied = upgrade(database_url)
        version = current_version(database_url)
    except LookbookError as exc:
        _fail(exc)
        return
    where = describe_location(database_url)
    for migration in applied:
        typer.echo(f"applied {migration.version:04d}_{migration.name}")
    state = "up to date" if not applied else f"{len(applied)} migration(s) applied"
    typer.echo(f"{where}: schema version {version} (this release: {expected_version()}), {state}")


def _metrics_table(metrics: dict[str, dict[str, float]]) -> str:
    names = list(metrics)
    keys = sorted({key for values in metrics.values() for key in values})
    header = f"{'metric':<14}" + "".join(f"{name:>14}" for name in names)
    rows = [header, "-" * len(header)]
    for key in keys:
        cells = "".join(f"{metrics[name].get(key, float('nan')):>14.4f}" for name in names)
        rows.append(f"{key:<14}{cells}")
    return "\n".join(rows)


@cli.command()
def evaluate(
    data: Annotated[
        Path, typer.Option(help="dataset folder: H&M, Rent the Runway parquet, own format")
    ],
    out: Annotated[Path, typer.Option(help="folder for report.md, results.json, map_at_k.png")],
    protocol: Annotated[
        str | None,
        typer.Option(
            help="last_day (per-customer last purchase day) or time_split; "
            "default: time_split for Rent the Runway, last_day otherwise"
        ),
    ] = None,
    folds: Annotated[int, typer.Option(min=1, help="cutoff folds of the last_day protocol")] = 6,
    test_days: Annotated[int, typer.Option(min=1, help="held-out days of time_split")] = 28,
    methods: Annotated[str, typer.Option(help="comma-separated subset of the methods")] = "",
    n_boot: Annotated[int, typer.Option(min=10, help="bootstrap resamples")] = 1000,
    seed: int = 42,
    verbose: bool = False,
) -> None:
    """Measure every method (baselines, peer, LSTM, blend) on real data with bootstrap CIs."""
    from training.evaluate import (
        load_for_evaluation,
        preset_config,
        run_evaluation,
        write_report,
    )

    _setup_logging(verbose)
    if protocol not in (None, "last_day", "time_split"):
        typer.secho("error [validation_error]: --protocol is last_day or time_split", err=True)
        raise typer.Exit(code=2)
    try:
        dataset, default_protocol = load_for_evaluation(data)
        protocol = protocol or default_protocol
        overrides: dict[str, object] = {"n_boot": n_boot}
        if methods:
            overrides["methods"] = tuple(m.strip() for m in methods.split(",") if m.strip())
        if protocol == "last_day":
            overrides["folds"] = folds
        else:
            overrides["test_days"] = test_days
        config = preset_config(
            protocol, n_interactions=dataset.n_interactions, seed=seed, **overrides
        )
        result = run_evaluation(dataset, config, name=data.name, progress=True)
    except LookbookError as exc:
        _fail(exc)
        return
    except (TypeError, ValueError) as exc:
        typer.secho(f"error [validation_error]: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=2) from exc
    typer.echo(result.table())
    for label, path in write_report([result], out, command="lookbook evaluate").items():
        typer.echo(f"{label}: {path}")


bundles_cli = typer.Typer(
    help="The published bundle versions: list them (no command), prune old ones.",
    no_args_is_help=False,
)
cli.add_typer(bundles_cli, name="bundles")


@bundles_cli.callback(invoke_without_command=True)
def bundles(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option(help="bundles folder")] = Path("var/bundles"),
) -> None:
    """List the published bundle versions, newest last (the pinned one marked)."""
    from models.bundle import list_bundles, read_pin

    if ctx.invoked_subcommand is not None:
        return
    try:
        pin = read_pin(out)
    except LookbookError as exc:
        _fail(exc)
        return
    for info in list_bundles(out):
        metrics = info.manifest.get("metrics", {})
        mark = "  [pinned]" if pin is not None and pin.version == info.version else ""
        typer.echo(
            f"{info.version}  items={info.manifest.get('item_count')}  metrics={metrics}{mark}"
        )


@bundles_cli.command("prune")
def prune(
    out: Annotated[Path, typer.Option(help="bundles folder")] = Path("var/bundles"),
    keep: Annotated[int, typer.Option(min=1, help="newest bundles to keep")] = 5,
    dry_run: Annotated[bool, typer.Option(help="only say what would be removed")] = False,
    verbose: bool = False,
) -> None:
    """Remove all but the newest ``keep`` bundles; never the pinned one, never the newest."""
    from models.bundle import bundles_to_prune, prune_bundles

    _setup_logging(verbose)
    removed = bundles_to_prune(out, keep) if dry_run else prune_bundles(out, keep)
    verb = "would remove" if dry_run else "removed"
    typer.echo(f"{verb} {len(removed)} bundle(s)" + "".join(f"\n  {v}" for v in removed))


@cli.command()
def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    embedded: Annotated[
        bool,
        typer.Option(
            help="embedded default: generate a synthetic retailer and train a bundle when none exists"
        ),
    ] = False,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="worker processes; more than 1 needs REDIS_URL (the workers share the online "
            "store, response cache, consent, erasures and bandit state through Redis; each writes "
            "its own slot of the event log)",
        ),
    ] = 1,
    log_format: Annotated[
        str, typer.Option(help="json (one object per line, with request ids) or text")
    ] = "json",
    verbose: bool = False,
) -> None:
    """Run the HTTP service (uvicorn). ``--workers N`` > 1 needs ``REDIS_URL``."""
    import logging.config

    import uvicorn

    from app.http_protocol import protocol_class
    from app.request_log import log_config
    from app.settings import Settings

    fmt: Literal["json", "text"]
    if log_format == "json":
        fmt = "json"
    elif log_format == "text":
        fmt = "text"
    else:
        typer.secho("error [validation_error]: --log-format is json or text", err=True)
        raise typer.Exit(code=2)
    level = "DEBUG" if verbose else "INFO"
    logging.config.dictConfig(log_config(level, fmt))
    settings = Settings()
    if workers > 1 and not settings.redis_url:
        typer.secho(
            f"error [validation_error]: --workers {workers} needs REDIS_URL: each worker is its "
            "own process, and without Redis they would not share online state (recent events, "
            "profiles, consent, erasures, cached lists, bandit state) — what one worker accepted "
            "the others would never see. Set REDIS_URL or run one worker.",
            fg=typer.colors.RED,
            err=True,
        )
        raise typer.Exit(code=2)
    if embedded:
        try:
            ensure_embedded_bundle(settings.bundle_dir, settings.data_dir)
        except LookbookError as exc:
            _fail(exc)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        http=protocol_class(),  # a request the HTTP parser refuses gets the JSON error body too
        log_config=log_config(level, fmt),  # again in each worker process
        access_log=False,  # app/request_log.py writes the access log (route templates, no ids)
    )


keys_cli = typer.Typer(help="API keys (app/auth.py).", no_args_is_help=True)
cli.add_typer(keys_cli, name="keys")


@keys_cli.command("new")
def keys_new(
    name: Annotated[str, typer.Option(help="who holds the key (in logs and metrics)")],
    scopes: Annotated[
        str, typer.Option(help="comma-separated: read, events, kiosk, customers, admin")
    ],
) -> None:
    """Print a fresh random key and the entry to add to LOOKBOOK_API_KEYS_FILE (or
    LOOKBOOK_API_KEYS); only the entry's hash is kept by the service."""
    from pydantic import ValidationError

    from app.auth import new_key

    try:
        key, entry = new_key(name, [s.strip() for s in scopes.split(",") if s.strip()])
    except (ValueError, ValidationError) as exc:
        typer.secho(f"error [validation_error]: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=2) from exc
    typer.echo(f"key (give it to {entry.name}; it is not stored anywhere):\n  {key}")
    typer.echo("entry for LOOKBOOK_API_KEYS_FILE (a list of these) or LOOKBOOK_API_KEYS:")
    typer.echo(f"  {entry.model_dump_json()}")


def ensure_embedded_bundle(bundle_dir: Path, data_dir: Path) -> None:
    """Generate the synthetic retailer and train on it when ``bundle_dir`` has no bundle yet."""
    from feature_store.synthetic import generate as run_generate
    from models.bundle import latest_bundle
    from training.train import train as run_train

    if latest_bundle(bundle_dir) is not None:
        return
    synthetic = data_dir / "synthetic"
    if not (synthetic / "interactions.parquet").exists():
        logger.info("no data yet: generating the synthetic retailer into %s", synthetic)
        run_generate(
            synthetic,
            customers=EMBEDDED_CUSTOMERS,
            items=EMBEDDED_ITEMS,
            seed=42,
            show_progress=True,
        )
    logger.info("no bundle yet: training on %s", synthetic)
    run_train(synthetic, bundle_dir)


def main() -> None:
    try:
        cli()
    except LookbookError as exc:  # pragma: no cover - commands handle their own
        typer.secho(f"error [{exc.code}]: {exc}", fg=typer.colors.RED, err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
