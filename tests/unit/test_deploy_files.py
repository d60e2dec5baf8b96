"""The deployment files (deploy/prometheus, deploy/grafana, deploy/k8s) parse and agree
with the code: metric names the services export, settings, ports, commands, probes.

promtool's own checks of the rules and the real Prometheus server are in
tests/integration/test_prometheus.py.
"""

from __future__ import annotations

import importlib
import inspect
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml  # PyYAML: installed with uvicorn[standard]
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from shared.config import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
PROM = DEPLOY / "prometheus"
GRAFANA = DEPLOY / "grafana"
K8S = DEPLOY / "k8s"

METRICS_MODULES = (
    "services.ingest.metrics",
    "services.scoring.metrics",
    "services.alerts.metrics",
    "shared.worker",  # ConsumerMetrics: consumer lag
    "shared.web",  # HttpMetrics: every service's HTTP answers but ingest's
)

# Used by alerts.yml or the dashboard before a service exports them (the rules and panels
# stay silent until then). Empty: every name is exported.
NOT_EXPORTED_YET: set[str] = set()

SERVICES = {"ingest": 8000, "scoring": 8001, "alerts": 8002, "web": 8003}


def yaml_files() -> list[Path]:
    return sorted(
        p for d in (PROM, GRAFANA, K8S) for p in d.rglob("*") if p.suffix in (".yml", ".yaml")
    )


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def load_all(path: Path) -> list[Any]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def exported_series() -> set[str]:
    """Every series name the services' metric classes can export."""
    registry = CollectorRegistry()
    for name in METRICS_MODULES:
        module = importlib.import_module(name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == name and cls.__name__.endswith("Metrics"):
                cls(registry)
    suffixes = {
        "counter": ("_total",),
        "gauge": ("",),
        "histogram": ("_bucket", "_sum", "_count"),
        "summary": ("", "_sum", "_count"),
    }
    return {f.name + s for f in registry.collect() for s in suffixes.get(f.type, ("",))}


def metric_names(promql: str) -> set[str]:
    return set(re.findall(r"\bhealthwatch_[a-z0-9_]+", promql))


def rules() -> list[dict[str, Any]]:
    return [r for g in load(PROM / "alerts.yml")["groups"] for r in g["rules"]]


def dashboard() -> dict[str, Any]:
    return json.loads((GRAFANA / "healthwatch.json").read_text())  # type: ignore[no-any-return]


def dashboard_exprs() -> list[str]:
    return [t["expr"] for p in dashboard()["panels"] for t in p.get("targets", [])]


def k8s_objects() -> list[dict[str, Any]]:
    kustomization = load(K8S / "kustomization.yaml")
    return [doc for name in kustomization["resources"] for doc in load_all(K8S / name)]


def find(kind: str, name: str) -> dict[str, Any]:
    matches = [o for o in k8s_objects() if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} found"
    return matches[0]


# --- every file parses --------------------------------------------------------------


def test_every_yaml_file_parses() -> None:
    files = yaml_files()
    assert {str(p.relative_to(DEPLOY)) for p in files} >= {
        "prometheus/prometheus.yml",
        "prometheus/prometheus-kubernetes.yml",
        "prometheus/alerts.yml",
        "prometheus/alerts_test.yml",
        "grafana/provisioning/datasources/prometheus.yml",
        "grafana/provisioning/dashboards/healthwatch.yml",
        "k8s/kustomization.yaml",
        "k8s/namespace.yaml",
        "k8s/config.yaml",
        "k8s/migrate-job.yaml",
        "k8s/ingest.yaml",
        "k8s/scoring.yaml",
        "k8s/alerts.yaml",
        "k8s/extras/podmonitor.yaml",
    }
    for path in files:
        docs = load_all(path)
        assert docs, f"{path} is empty"
        assert all(isinstance(d, dict) for d in docs), path


def test_dashboard_json_parses_and_uses_the_datasource_variable() -> None:
    dash = dashboard()
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    panels = dash["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    for panel in panels:
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"] and all(t["expr"] for t in panel["targets"]), panel["title"]
        assert {t["datasource"]["uid"] for t in panel["targets"]} == {"${datasource}"}
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]


def test_dashboard_has_the_panels_ops_need() -> None:
    exprs = " ".join(dashboard_exprs())
    for series in (
        "healthwatch_ingest_requests_total",
        "healthwatch_ingest_events_total",
        "healthwatch_ingest_produce_seconds_bucket",
        "healthwatch_scoring_events_total",
        "healthwatch_scoring_late_events_total",
        "healthwatch_scoring_dead_letters_total",
        "healthwatch_scoring_batch_seconds_bucket",
        "healthwatch_scoring_alerts_total",
        "healthwatch_alerts_received_total",
        "healthwatch_alert_deliveries_total",
        "healthwatch_alerts_escalated_total",
        "healthwatch_alert_delivery_latency_seconds_bucket",
        "healthwatch_alert_outbox_depth",
        "healthwatch_consumer_lag_records",
        "healthwatch_accounts",
    ):
        assert series in exprs, series


# --- metric names agree with the code -------------------------------------------------


def test_rules_and_dashboard_use_only_metrics_the_services_export() -> None:
    exported = exported_series()
    assert "healthwatch_ingest_requests_total" in exported  # the discovery works
    used = set().union(*(metric_names(r["expr"]) for r in rules()))
    used |= set().union(*(metric_names(e) for e in dashboard_exprs()))
    unknown = used - exported - NOT_EXPORTED_YET
    assert unknown == set(), f"not exported by services/*/metrics.py: {sorted(unknown)}"


# --- Prometheus -------------------------------------------------------------------------


def test_alert_rules_are_complete_and_each_has_a_promtool_test() -> None:
    names = [r["alert"] for r in rules()]
    assert len(names) == len(set(names))
    tested = {
        t["alertname"]
        for t in load(PROM / "alerts_test.yml")["tests"]
        for t in t["alert_rule_test"]
    }
    for rule in rules():
        assert rule["alert"].startswith("Healthwatch"), rule["alert"]
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), rule["alert"]
        assert {"summary", "description"} <= set(rule["annotations"]), rule["alert"]
        assert rule["alert"] in tested, f"{rule['alert']} has no test in alerts_test.yml"
    for wanted in (
        "HealthwatchConsumerLagGrowing",
        "HealthwatchScoringStalled",
        "HealthwatchDeadLetters",
        "HealthwatchDeadLetterRateHigh",
        "HealthwatchAlertDeliveryFailing",
        "HealthwatchAlertDeliveriesDead",
        "HealthwatchOutboxGrowing",
        "HealthwatchIngestUnavailable",
        "HealthwatchIngestServerErrors",
    ):
        assert wanted in names


def test_scrape_configs_send_the_metrics_key_and_load_the_rules() -> None:
    compose = load(PROM / "prometheus.yml")
    assert compose["rule_files"] == ["alerts.yml"]
    jobs = {j["job_name"]: j for j in compose["scrape_configs"]}
    for service in SERVICES:
        auth = jobs[service]["authorization"]
        assert auth["type"] == "Bearer" and auth["credentials_file"] == "healthwatch.key"
    assert jobs["scoring"]["dns_sd_configs"][0]["port"] == SERVICES["scoring"]
    assert jobs["alerts"]["static_configs"][0]["targets"] == [f"alerts:{SERVICES['alerts']}"]
    assert jobs["ingest"]["static_configs"][0]["targets"] == [f"ingest:{SERVICES['ingest']}"]
    assert jobs["web"]["static_configs"][0]["targets"] == [f"web:{SERVICES['web']}"]

    kube = load(PROM / "prometheus-kubernetes.yml")
    assert kube["rule_files"] == ["alerts.yml"]
    (job,) = kube["scrape_configs"]
    assert job["authorization"]["type"] == "Bearer"
    relabels = {tuple(r["source_labels"]): r for r in job["relabel_configs"]}
    component = relabels[("__meta_kubernetes_pod_label_app_kubernetes_io_component",)]
    assert component["target_label"] == "job"  # job = ingest | scoring | alerts
    # The key is a secret: never committed.
    assert "healthwatch.key" in (PROM / ".gitignore").read_text().split()


def test_target_down_rule_watches_the_scrape_jobs() -> None:
    (rule,) = [r for r in rules() if r["alert"] == "HealthwatchTargetDown"]
    assert 'job=~"ingest|scoring|alerts|web"' in rule["expr"]


# --- Grafana provisioning ---------------------------------------------------------------


def test_grafana_provisioning() -> None:
    (ds,) = load(GRAFANA / "provisioning" / "datasources" / "prometheus.yml")["datasources"]
    assert ds["type"] == "prometheus" and ds["url"] == "http://prometheus:9090"
    (provider,) = load(GRAFANA / "provisioning" / "dashboards" / "healthwatch.yml")["providers"]
    assert provider["type"] == "file"
    # README's compose snippet mounts deploy/grafana at the provider's path.
    readme = (GRAFANA / "README.md").read_text()
    assert f"./deploy/grafana:{provider['options']['path']}:ro" in readme


# --- Kubernetes -------------------------------------------------------------------------


def test_kustomization_resources_exist_and_set_the_namespace() -> None:
    kustomization = load(K8S / "kustomization.yaml")
    assert kustomization["namespace"] == "healthwatch"
    for name in kustomization["resources"]:
        assert (K8S / name).is_file(), name
    assert find("Namespace", "healthwatch")
    (generator,) = kustomization["secretGenerator"]
    assert generator["name"] == "healthwatch-secrets" and generator["envs"] == ["secrets.env"]
    assert "secrets.env" in (K8S / ".gitignore").read_text().split()


def test_k8s_settings_are_real_settings() -> None:
    config = find("ConfigMap", "healthwatch-config")["data"]
    secret_lines = (K8S / "secrets.env.example").read_text().splitlines()
    secrets = [ln.split("=", 1)[0] for ln in secret_lines if ln and not ln.startswith("#")]
    assert "HEALTHWATCH_DATABASE_URL" in secrets
    for key in [*config, *secrets]:
        field = key.removeprefix("HEALTHWATCH_").lower()
        assert key.startswith("HEALTHWATCH_") and field in Settings.model_fields, key
    assert config["HEALTHWATCH_HOST"] == "0.0.0.0"
    # Every value is a string (Kubernetes rejects numbers in a ConfigMap) and parses.
    assert all(isinstance(v, str) for v in config.values())
    Settings(
        _env_file=None, **{k.removeprefix("HEALTHWATCH_").lower(): v for k, v in config.items()}
    )  # type: ignore[arg-type]


# Settings that are credentials besides the SecretStr ones: a webhook URL is its token.
CREDENTIAL_URLS = {"database_url", "slack_webhook_url", "webhook_url"}


def credentials() -> set[str]:
    return CREDENTIAL_URLS | {
        name for name, f in Settings.model_fields.items() if f.annotation is SecretStr
    }


def test_every_credential_is_in_the_secret_never_in_the_config_map() -> None:
    config = find("ConfigMap", "healthwatch-config")["data"]
    secret_lines = (K8S / "secrets.env.example").read_text().splitlines()
    secrets = {ln.split("=", 1)[0] for ln in secret_lines if ln and not ln.startswith("#")}
    wanted = {f"HEALTHWATCH_{name.upper()}" for name in credentials()}
    assert "HEALTHWATCH_SMTP_PASSWORD" in wanted  # the discovery works
    assert wanted - secrets == set(), "credentials missing from secrets.env.example"
    assert wanted & set(config) == set(), "credentials in the ConfigMap"


def test_compose_has_no_default_passwords() -> None:
    compose = (ROOT / "docker-compose.yml").read_text()
    # ${VAR:-default} / ${VAR-default} of anything secret must default to nothing, and
    # the two passwords Compose itself needs are required (${VAR:?message}); the docs'
    # copies of the compose file too (Grafana's showed an "admin" default).
    for text in (compose, (GRAFANA / "README.md").read_text()):
        for name, default in re.findall(r"\$\{(\w+):?-([^}]*)\}", text):
            if re.search(r"PASSWORD|SECRET|TOKEN", name):
                assert default == "", f"{name} defaults to {default!r}"
    for name in ("POSTGRES_PASSWORD", "GRAFANA_ADMIN_PASSWORD"):
        uses = re.findall(rf"\$\{{{name}(:?[?-])", compose)
        assert uses and set(uses) == {":?"}, (name, uses)
    env = load(ROOT / "docker-compose.yml")["x-healthwatch-env"]
    # Every credential reaches the containers from .env: the connectors' secrets were
    # missing, and a Zendesk webhook could not be switched on without editing the file.
    wanted = {f"HEALTHWATCH_{name.upper()}" for name in credentials()}
    assert wanted - set(env) == set(), "credentials compose does not pass on"
    assert env["HEALTHWATCH_SMTP_STARTTLS"] == "${HEALTHWATCH_SMTP_STARTTLS:-true}"
    assert Settings.model_fields["smtp_starttls"].default is True


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container  # type: ignore[no-any-return]


@pytest.mark.parametrize("service", SERVICES)
def test_k8s_deployment(service: str) -> None:
    port = SERVICES[service]
    assert getattr(Settings.model_fields[f"{service}_port"], "default", None) == port
    deployment = find("Deployment", service)
    template = deployment["spec"]["template"]
    labels = template["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert labels["app.kubernetes.io/component"] == service  # = the Prometheus job
    container = _container(deployment)
    assert container["command"] == ["healthwatch", service]
    assert container["image"].split(":")[0] == "healthwatch"  # kustomization `images:`
    (container_port,) = container["ports"]
    assert container_port["containerPort"] == port
    refs = [next(iter(e.values()))["name"] for e in container["envFrom"]]
    assert refs == ["healthwatch-config", "healthwatch-secrets"]
    # Probes need no key; /metrics does (scraped with a Bearer key, see the annotations).
    # Ingest stays ready while Kafka is down: it answers 503 with Retry-After, where a
    # probe of Kafka took every replica out of the Service (refused connections).
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    ready = "/healthz" if service == "ingest" else "/readyz"
    assert container["readinessProbe"]["httpGet"]["path"] == ready
    # The release's schema before the service starts (concurrent migrations wait on a
    # lock: tests/integration/test_migrate_concurrently.py).
    (init,) = template["spec"]["initContainers"]
    assert init["command"] == ["healthwatch", "migrate"]
    assert init["image"] == container["image"] and init["envFrom"] == container["envFrom"]
    assert init["securityContext"] == container["securityContext"]
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["port"] == container_port["name"]
    if service in ("ingest", "web"):  # people and senders call them through a Service
        wait = container["lifecycle"]["preStop"]["exec"]["command"]
        assert (
            wait[0] == "sleep" and int(wait[1]) < template["spec"]["terminationGracePeriodSeconds"]
        )
    annotations = template["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(port)
    assert annotations["prometheus.io/path"] == "/metrics"
    # The image runs as uid 10001; the namespace enforces the restricted profile.
    assert template["spec"]["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False


@pytest.mark.parametrize("service", SERVICES)
def test_k8s_service_selects_its_deployment(service: str) -> None:
    svc = find("Service", service)
    deployment = find("Deployment", service)
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= labels.items()
    (port,) = svc["spec"]["ports"]
    assert port["port"] == SERVICES[service] and port["targetPort"] == "http"


def test_scoring_scales_by_replicas_in_one_consumer_group() -> None:
    deployment = find("Deployment", "scoring")
    config = find("ConfigMap", "healthwatch-config")["data"]
    replicas = deployment["spec"]["replicas"]
    partitions = int(config["HEALTHWATCH_KAFKA_PARTITIONS"])
    assert replicas == 3 and replicas <= partitions
    assert partitions == Settings.model_fields["kafka_partitions"].default
    # One group for every replica: the group comes from the shared ConfigMap, not per pod.
    assert config["HEALTHWATCH_CONSUMER_GROUP_SCORING"]
    assert "env" not in _container(deployment)


def test_migration_job() -> None:
    job = find("Job", "healthwatch-migrate")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["healthwatch", "migrate"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] in ("OnFailure", "Never")


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kustomize_renders(tmp_path: Path) -> None:
    work = tmp_path / "k8s"
    shutil.copytree(K8S, work)
    shutil.copy(work / "secrets.env.example", work / "secrets.env")
    out = subprocess.run(
        ["kubectl", "kustomize", str(work)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    docs = [d for d in yaml.safe_load_all(out.stdout) if d]
    kinds = sorted(d["kind"] for d in docs)
    assert kinds.count("Deployment") == len(SERVICES) and "Secret" in kinds and "Job" in kinds
    assert all(
        d["metadata"].get("namespace") == "healthwatch" for d in docs if d["kind"] != "Namespace"
    )


def test_every_service_is_scraped_and_watched_everywhere() -> None:
    """The web service was added to the compose scrape and the target-down rule, but not
    to the Operator's PodMonitor nor the dashboard's "up" panel (found in review)."""
    (monitor,) = load_all(K8S / "extras" / "podmonitor.yaml")
    selected = next(
        e["values"]
        for e in monitor["spec"]["selector"]["matchExpressions"]
        if e["key"] == "app.kubernetes.io/component"
    )
    assert sorted(selected) == sorted(SERVICES)
    panels = json.loads((GRAFANA / "healthwatch.json").read_text())["panels"]
    ups = [t["expr"] for p in panels for t in p.get("targets", []) if t["expr"].startswith("up{")]
    assert ups and all(f'job=~"{"|".join(SERVICES)}"' in expr for expr in ups)
