"""The deployment files agree with the app: the metrics the Grafana dashboard and the Prometheus
alerts read are ones the app exports; the Kubernetes manifests and the Dockerfile use the app's
port, probe paths, settings and ``lookbook`` commands; the manifests reference each other
consistently. (Their schemas, hadolint and promtool run in ``make check``:
scripts/check_deploy.py, whose helpers these tests use.)"""

from __future__ import annotations

import copy
import importlib.util
import re
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from app.settings import Settings
from training.cli import cli

REPO = Path(__file__).resolve().parents[1]

# Names the deployment files use that other engineers' work (issue 12, the fleet: PostgreSQL event
# store, API keys, bundle metadata, trainer options) adds in parallel. A name here may be missing
# from the app; one the app has gained fails test_fleet_expectations_are_not_stale, so that it is
# deleted from here. LEAD: delete the entries (or the whole set) when merging those branches.
# Labels Prometheus adds to every scraped series (not the app's own)
TARGET_LABELS = {"instance", "job"}


def _load_check_deploy() -> Any:
    spec = importlib.util.spec_from_file_location(
        "check_deploy", REPO / "scripts" / "check_deploy.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["check_deploy"] = module
    spec.loader.exec_module(module)
    return module


deploy = _load_check_deploy()


# ---------------------------------------------------------------------------------------------
# The app's metrics


@pytest.fixture
def registry(client: TestClient) -> CollectorRegistry:
    """The Prometheus registry of the app built from the shared ``settings`` (lifespan run)."""
    app: Any = client.app
    registry: CollectorRegistry = app.state.metrics.registry
    return registry


_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
    "gaugehistogram": ("_bucket", "_gcount", "_gsum"),
}


def exported_series(registry: CollectorRegistry) -> dict[str, str]:
    """Every series name the registry exports (labelled metrics with no child yet included),
    mapped to its family's name."""
    names = {}
    for family in registry.collect():
        for suffix in _SUFFIXES.get(family.type, ("",)):
            names[family.name + suffix] = family.name
    return names


def family_labels(registry: CollectorRegistry) -> dict[str, set[str]]:
    """Label names per family name (from the collectors the registry holds)."""
    labels: dict[str, set[str]] = {}
    for collector in list(registry._collector_to_names):
        names = getattr(collector, "_labelnames", None)
        name = getattr(collector, "_name", None)
        if name is not None and names is not None:
            labels[name] = set(names)
    return labels


def test_the_app_exports_the_metrics_it_is_known_for(registry: CollectorRegistry) -> None:
    series = exported_series(registry)
    for name in (
        "lookbook_request_latency_seconds_bucket",
        "lookbook_request_latency_seconds_count",
        "lookbook_cache_requests_total",
        "lookbook_bundle_rejected_total",
        "lookbook_model_loaded",
    ):
        assert name in series
    assert "lookbook_request_latency_seconds" not in series  # a histogram has no bare series
    assert family_labels(registry)["lookbook_request_latency_seconds"] == {
        "route",
        "method",
        "status",
    }


def test_every_metric_of_the_dashboard_and_the_alerts_is_exported(
    registry: CollectorRegistry,
) -> None:
    series = exported_series(registry)
    used = deploy.deployment_promql()
    assert len(used) > 20
    missing = sorted(
        f"{where}: {name}"
        for where, expr in used
        for name in deploy.metric_names(expr)
        if name not in series
    )
    assert not missing, "metrics the app does not export:\n" + "\n".join(missing)


def test_every_label_the_dashboard_and_the_alerts_match_on_exists(
    registry: CollectorRegistry,
) -> None:
    series = exported_series(registry)
    labels = family_labels(registry)
    wrong = []
    for where, expr in deploy.deployment_promql():
        for metric, label in deploy.selector_labels(expr):
            family = series.get(metric)
            if family is None or family not in labels:
                continue  # an expected metric, reported by the test above
            allowed = labels[family] | TARGET_LABELS
            if metric.endswith("_bucket"):
                allowed.add("le")
            if label not in allowed:
                wrong.append(f"{where}: {metric} has no label {label}")
    assert not wrong, "\n".join(wrong)


def test_the_dashboard_covers_what_operators_watch() -> None:
    used = " ".join(expr for _, expr in deploy.dashboard_queries(deploy.dashboard()))
    for needle in (
        "histogram_quantile(0.5,",  # p50 per route
        "histogram_quantile(0.99,",  # p99 per route
        'status="5xx"',
        'lookbook_cache_requests_total{instance=~"$instance", result="hit"}',
        "lookbook_events_total",
        "time() - max by (instance) (lookbook_bundle_trained_timestamp_seconds",
        "lookbook_bandit_weight",
        'type="click", variant!="none"',
    ):
        assert needle in used
    alerts = {rule["alert"] for rule in deploy.alert_rules()}
    assert {
        "LookbookHigh5xxRate",
        "LookbookP99OverBudget",
        "LookbookBundleTooOld",
        "LookbookRedisUnreachable",
        "LookbookPostgresUnreachable",
    } <= alerts


def test_the_dashboard_check_finds_broken_dashboards() -> None:
    board = deploy.dashboard()
    broken = copy.deepcopy(board)
    panels = [p for p in broken["panels"] if p["type"] != "row"]
    panels[1]["gridPos"] = dict(panels[0]["gridPos"])  # on top of another
    panels[2]["targets"][0]["expr"] += " $nope"
    panels[3]["id"] = panels[4]["id"]
    problems = "\n".join(deploy.check_dashboard(broken))
    assert "overlaps" in problems
    assert "undefined variable $nope" in problems
    assert "ids missing or repeated" in problems
    if shutil.which("promtool"):
        assert deploy.check_dashboard(board) == []
        broken = copy.deepcopy(board)
        broken["panels"][1]["targets"][0]["expr"] = "sum by (route (rate(x[5m]))"
        assert "could not parse" in "\n".join(deploy.check_dashboard(broken))


# ---------------------------------------------------------------------------------------------
# The manifests and the Dockerfile


def all_resources() -> list[dict[str, Any]]:
    return [doc for _, doc in deploy.resources()]


def overlay_resources(overlay: str) -> list[dict[str, Any]]:
    """The base's and the overlay's resources (their files; no kustomize needed)."""
    found = []
    for folder in (REPO / "k8s" / "base", REPO / "k8s" / "overlays" / overlay):
        (kustomization,) = deploy.load_yaml_documents(folder / "kustomization.yaml")
        for entry in kustomization["resources"]:
            if (folder / entry).is_file():
                found += deploy.load_yaml_documents(folder / entry)
    return found


OVERLAYS = sorted(p.name for p in (REPO / "k8s" / "overlays").iterdir() if p.is_dir())


def pod_specs(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    specs = []
    for doc in docs:
        spec = doc.get("spec", {})
        if doc["kind"] == "CronJob":
            spec = spec["jobTemplate"]["spec"]
        if "template" in spec:
            specs.append((f"{doc['kind']} {doc['metadata']['name']}", spec["template"]["spec"]))
    return specs


def lookbook_containers(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(owner, container) of every container running the Lookbook image."""
    return [
        (f"{owner}/{container['name']}", container)
        for owner, spec in pod_specs(docs)
        for container in spec.get("initContainers", []) + spec["containers"]
        if container["image"].split(":")[0].rsplit("/", 1)[-1] == "lookbook"
    ]


def one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def dockerfile_json(instruction: str) -> list[str]:
    import json

    (rest,) = [rest for word, rest in dockerfile_instructions() if word == instruction]
    if instruction == "HEALTHCHECK":
        rest = rest[rest.index("CMD") + 3 :].strip()
    value: list[str] = json.loads(rest)
    return value


def flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def test_one_port_everywhere(client: TestClient) -> None:
    docs = all_resources()
    deployment = one(docs, "Deployment", "lookbook")
    pod = deployment["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    (port,) = container["ports"]
    assert port["name"] == "http"
    number = port["containerPort"]
    assert int(flag(container["args"], "--port")) == number
    assert int(pod["metadata"]["annotations"]["prometheus.io/port"]) == number
    service = one(docs, "Service", "lookbook")
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["port"] == "http"
    exposed = [rest for word, rest in dockerfile_instructions() if word == "EXPOSE"]
    assert exposed == [str(number)]
    assert int(flag(dockerfile_json("CMD"), "--port")) == number
    healthcheck = " ".join(dockerfile_json("HEALTHCHECK"))
    assert f"127.0.0.1:{number}/healthz" in healthcheck


def test_probes_and_scrape_path_are_routes_of_the_app(client: TestClient) -> None:
    container = one(all_resources(), "Deployment", "lookbook")["spec"]["template"]["spec"][
        "containers"
    ][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    used = {container[p]["httpGet"]["path"] for p in ("startupProbe", "readinessProbe")}
    annotations = one(all_resources(), "Deployment", "lookbook")["spec"]["template"]["metadata"][
        "annotations"
    ]
    used.add(annotations["prometheus.io/path"])
    healthcheck = " ".join(dockerfile_json("HEALTHCHECK"))
    used.update(re.findall(r"http://[^/]+(/[a-z]+)", healthcheck))
    assert used == {"/healthz", "/readyz", "/metrics"}
    # each answers (with the shared bundle loaded, /readyz is ready)
    for path in sorted(used):
        assert client.get(path).status_code == 200, path
    assert client.get("/readyzz").status_code == 404


def env_names() -> dict[str, str]:
    """Every environment variable the manifests and the Dockerfile set: name → where."""
    names = {}
    for doc in all_resources():
        if doc["kind"] == "ConfigMap":
            for key in doc["data"]:
                names[key] = f"ConfigMap {doc['metadata']['name']}"
    for owner, container in lookbook_containers(all_resources()):
        for var in container.get("env", []):
            names[var["name"]] = owner
    for word, rest in dockerfile_instructions():
        if word == "ENV":
            for assignment in shlex.split(rest):
                names[assignment.split("=", 1)[0]] = "Dockerfile"
    return names


def setting_of(variable: str) -> str | None:
    """The Settings field an environment variable sets (None: not a Lookbook setting)."""
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        if alias is not None and variable in getattr(alias, "choices", [alias]):
            return name
    if variable.startswith("LOOKBOOK_"):
        return variable.removeprefix("LOOKBOOK_").lower().split("__")[0]
    return None


def test_every_lookbook_variable_is_a_setting() -> None:
    names = env_names()
    assert "LOOKBOOK_ENV" in names
    assert "REDIS_URL" in names
    unknown = sorted(
        f"{where}: {variable}"
        for variable, where in names.items()
        if (field := setting_of(variable)) is not None and field not in Settings.model_fields
    )
    assert not unknown, "variables that set no Settings field (ignored):\n" + "\n".join(unknown)
    assert setting_of("LOOKBOOK_NO_SUCH_SETTING") not in Settings.model_fields


def test_the_configmap_makes_valid_production_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = one(all_resources(), "ConfigMap", "lookbook-config")["data"]
    for variable, value in config.items():
        monkeypatch.setenv(variable, value)
    # what the Secret gives the pods: the URLs, and the keys file (mounted; here a stand-in)
    monkeypatch.setenv("REDIS_URL", "redis://redis.invalid:6379/0")
    monkeypatch.setenv("LOOKBOOK_DATABASE_URL", "postgresql://lookbook@postgres.invalid/lookbook")
    keys = tmp_path / "keys.yaml"
    keys.write_text(f'- name: test\n  sha256: "{"0" * 64}"\n  scopes: [read]\n')
    monkeypatch.setenv("LOOKBOOK_API_KEYS_FILE", str(keys))
    settings = Settings()
    assert settings.env == "production"
    assert str(settings.bundle_dir) == config["LOOKBOOK_BUNDLE_DIR"]
    assert settings.bundle_poll_seconds == float(config["LOOKBOOK_BUNDLE_POLL_SECONDS"])
    monkeypatch.delenv("REDIS_URL")
    with pytest.raises(ValueError, match="REDIS_URL"):
        Settings()


def command_line(args: list[str]) -> list[str]:
    """What in a ``lookbook`` command line (its arguments) the CLI lacks: unknown (sub)commands
    and options."""
    command: Any = typer.main.get_command(cli)  # typer's own (vendored) click command
    words = ["lookbook"]
    problems = []
    rest = list(args)
    while rest and hasattr(command, "commands") and not rest[0].startswith("-"):
        word = rest.pop(0)
        words.append(word)
        sub = command.commands.get(word)
        if sub is None:
            problems.append(f"no command {' '.join(words)}")
            return problems
        command = sub
    options = {opt for param in command.params for opt in param.opts}
    for word in rest:
        if word.startswith("--"):
            name = f"{' '.join(words)} {word.split('=')[0]}"
            if word.split("=")[0] not in options:
                problems.append(f"no option {name}")
    return problems


def test_every_lookbook_command_line_exists() -> None:
    lines = [(owner, c["args"]) for owner, c in lookbook_containers(all_resources())]
    lines.append(("Dockerfile CMD", dockerfile_json("CMD")))
    assert dockerfile_json("ENTRYPOINT") == ["lookbook"]
    subcommands = {args[0] for _, args in lines}
    assert {"serve", "train", "db"} <= subcommands
    problems = [f"{owner}: {p}" for owner, args in lines for p in command_line(args)]
    assert not problems, "\n".join(problems)
    # the check itself: an unknown command or option is reported
    assert command_line(["trian"]) == ["no command lookbook trian"]
    assert command_line(["serve", "--prot", "1"]) == ["no option lookbook serve --prot"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_references_between_resources_resolve(overlay: str) -> None:
    docs = overlay_resources(overlay)
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    secrets = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Secret"}
    claims = {d["metadata"]["name"] for d in docs if d["kind"] == "PersistentVolumeClaim"}
    for owner, spec in pod_specs(docs):
        for container in spec.get("initContainers", []) + spec["containers"]:
            for source in container.get("envFrom", []):
                assert ("ConfigMap", source["configMapRef"]["name"]) in names, owner
            for var in container.get("env", []):
                ref = var.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["key"] in secrets[ref["name"]]["stringData"], (owner, ref)
            mounted = {m["name"] for m in container.get("volumeMounts", [])}
            assert mounted <= {v["name"] for v in spec.get("volumes", [])} | {
                t["metadata"]["name"]
                for d in docs
                for t in d.get("spec", {}).get("volumeClaimTemplates", [])
            }, owner
        for volume in spec.get("volumes", []):
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims, owner
            if "secret" in volume:
                secret = secrets[volume["secret"]["secretName"]]
                for item in volume["secret"].get("items", []):
                    assert item["key"] in secret["stringData"], owner
    # the API keys file the settings name is where the Secret is mounted
    config = one(docs, "ConfigMap", "lookbook-config")["data"]
    server = one(docs, "Deployment", "lookbook")["spec"]["template"]["spec"]
    mounts = {m["name"]: m["mountPath"] for m in server["containers"][0]["volumeMounts"]}
    keys_volume = next(v for v in server["volumes"] if "secret" in v)
    (item,) = keys_volume["secret"]["items"]
    assert config["LOOKBOOK_API_KEYS_FILE"] == f"{mounts[keys_volume['name']]}/{item['path']}"
    assert config["LOOKBOOK_BUNDLE_DIR"] == mounts["bundles"]
    assert config["LOOKBOOK_EVENT_LOG_DIR"] == mounts["events"]


def test_selectors_and_targets_match_the_deployment() -> None:
    docs = all_resources()
    deployment = one(docs, "Deployment", "lookbook")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod_labels.items()
    assert one(docs, "Service", "lookbook")["spec"]["selector"] == selector
    assert one(docs, "PodDisruptionBudget", "lookbook")["spec"]["selector"]["matchLabels"] == (
        selector
    )
    hpa = one(docs, "HorizontalPodAutoscaler", "lookbook")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "lookbook",
    }
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    assert "replicas" not in deployment["spec"]  # the autoscaler owns it


def test_the_trainer_publishes_where_the_replicas_read() -> None:
    docs = all_resources()
    cron = one(docs, "CronJob", "lookbook-train")
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    job_pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (trainer,) = job_pod["containers"]
    assert trainer["args"][0] == "train"
    assert flag(trainer["args"], "--keep") == "5"
    server_pod = one(docs, "Deployment", "lookbook")["spec"]["template"]["spec"]

    def bundles(pod: dict[str, Any], container: dict[str, Any]) -> tuple[str, str, bool]:
        volumes = {v["name"]: v for v in pod["volumes"]}
        for mount in container["volumeMounts"]:
            claim = volumes[mount["name"]].get("persistentVolumeClaim", {}).get("claimName")
            if claim == "lookbook-bundles":
                return claim, mount["mountPath"], bool(mount.get("readOnly"))
        raise AssertionError("no bundles volume")

    claim, path, read_only = bundles(job_pod, trainer)
    assert not read_only and flag(trainer["args"], "--out") == path
    # the replicas write one file there: the shared pin (POST /v1/admin/models/{version}/activate)
    assert bundles(server_pod, server_pod["containers"][0]) == (claim, path, False)
    volume = one(docs, "PersistentVolumeClaim", "lookbook-bundles")
    assert volume["spec"]["accessModes"] == ["ReadWriteMany"]
    migration = one(docs, "Job", "lookbook-db-upgrade")
    assert migration["spec"]["template"]["spec"]["containers"][0]["args"] == ["db", "upgrade"]


def test_pods_run_as_non_root_on_a_read_only_root() -> None:
    for owner, spec in pod_specs(all_resources()):
        assert spec["securityContext"]["runAsNonRoot"] is True, owner
    for owner, container in lookbook_containers(all_resources()):
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True, owner
        assert context["allowPrivilegeEscalation"] is False, owner
        assert "/tmp" in {m["mountPath"] for m in container["volumeMounts"]}, owner
    user = [rest for word, rest in dockerfile_instructions() if word == "USER"]
    assert user and user[-1].split(":")[0] not in ("0", "root")
    pod_user = one(all_resources(), "Deployment", "lookbook")["spec"]["template"]["spec"][
        "securityContext"
    ]["runAsUser"]
    assert user[-1].split(":")[0] == str(pod_user)


def test_the_image_declares_the_bundle_and_event_volumes() -> None:
    env = dict(
        assignment.split("=", 1)
        for word, rest in dockerfile_instructions()
        if word == "ENV"
        for assignment in shlex.split(rest)
    )
    volumes = set(dockerfile_json("VOLUME"))
    assert {env["LOOKBOOK_BUNDLE_DIR"], env["LOOKBOOK_EVENT_LOG_DIR"]} <= volumes


def test_the_image_and_ci_install_with_the_same_script() -> None:
    makefile = (REPO / "Makefile").read_text()
    stamp_rule = makefile[makefile.index("$(STAMP):") :].split("\n\n")[0]
    assert "scripts/install.sh" in stamp_rule
    runs = [rest for word, rest in dockerfile_instructions() if word == "RUN"]
    assert sum("scripts/install.sh" in run for run in runs) == 2
    assert all(
        "--torch-index-url" in run and "TORCH_INDEX_URL" in run
        for run in runs
        if "install.sh" in run
    )
    assert "https://download.pytorch.org/whl/cpu" in (REPO / "Dockerfile").read_text()
    assert "scripts/check_deploy.py" in makefile[makefile.index("\ncheck:") :]


def test_the_schema_check_rejects_a_broken_manifest() -> None:
    deployment = copy.deepcopy(one(all_resources(), "Deployment", "lookbook"))
    assert deploy.validate_resource(deployment, "deployment") is None
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGett"] = {}
    problem = deploy.validate_resource(deployment, "deployment")
    assert problem is not None and "httpGett" in problem
    del deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGett"]
    deployment["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "http"
    assert deploy.validate_resource(deployment, "deployment") is not None
