"""A real Prometheus server (Debian's `prometheus` package) against the running services,
and promtool's checks of the shipped configuration, rules and the /metrics output.

scripts/setup-test-services.sh installs prometheus and promtool; without them these
tests are skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml  # PyYAML: installed with uvicorn[standard]

from devservices import free_port
from shared.auth import Scope, create_key
from shared.config import Settings
from tests.support.harness import processed, running_apart, usage, wait_for

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        shutil.which("prometheus") is None or shutil.which("promtool") is None,
        reason="prometheus/promtool not installed (scripts/setup-test-services.sh installs "
        "them: apt-get install prometheus)",
    ),
]

ROOT = Path(__file__).resolve().parents[2]
PROM = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "healthwatch.json"


async def promtool(*args: str, stdin: bytes | None = None, cwd: Path | None = None) -> str:
    """Run promtool; fail with its output unless it exits 0. Returns stdout + stderr."""
    proc = await asyncio.create_subprocess_exec(
        "promtool",
        *args,
        stdin=asyncio.subprocess.PIPE if stdin is not None else None,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=cwd,
    )
    out, _ = await asyncio.wait_for(proc.communicate(stdin), timeout=60)
    text = out.decode()
    assert proc.returncode == 0, f"promtool {' '.join(args)} exited {proc.returncode}:\n{text}"
    return text


async def test_promtool_checks_rules_and_runs_their_unit_tests() -> None:
    out = await promtool("check", "rules", str(PROM / "alerts.yml"))
    assert "SUCCESS" in out
    out = await promtool("test", "rules", "alerts_test.yml", cwd=PROM)
    assert "SUCCESS" in out


async def test_promtool_checks_the_scrape_configs(tmp_path: Path) -> None:
    # The configs name the key file, which promtool insists exists (it is never committed).
    shutil.copy(PROM / "alerts.yml", tmp_path / "alerts.yml")
    (tmp_path / "healthwatch.key").write_text("hwk_placeholder\n")
    shutil.copy(PROM / "prometheus.yml", tmp_path / "prometheus.yml")
    kube = yaml.safe_load((PROM / "prometheus-kubernetes.yml").read_text())
    (job,) = kube["scrape_configs"]
    assert job["authorization"]["credentials_file"] == "/etc/prometheus/secrets/healthwatch/key"
    job["authorization"]["credentials_file"] = "healthwatch.key"
    # Debian's build of Prometheus leaves Kubernetes discovery out ("field
    # kubernetes_sd_configs not found"): check everything else with a static target.
    assert job.pop("kubernetes_sd_configs")[0]["role"] == "pod"
    job["static_configs"] = [{"targets": ["10.0.0.1:8001"]}]
    (tmp_path / "kube.yml").write_text(yaml.safe_dump(kube))
    for name in ("prometheus.yml", "kube.yml"):
        out = await promtool("check", "config", str(tmp_path / name))
        assert "SUCCESS" in out


@contextlib.asynccontextmanager
async def prometheus_server(config: Path, workdir: Path) -> AsyncIterator[str]:
    """Run the real Prometheus binary until the block ends; yields its base URL."""
    port = free_port()
    log = (workdir / "prometheus.log").open("wb")
    proc = await asyncio.create_subprocess_exec(
        "prometheus",
        f"--config.file={config}",
        f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
        stdout=log,
        stderr=asyncio.subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:

        async def ready() -> bool:
            if proc.returncode is not None:
                raise AssertionError(
                    f"prometheus exited {proc.returncode}:\n{(workdir / 'prometheus.log').read_text()}"
                )
            try:
                async with httpx.AsyncClient() as c:
                    return (await c.get(url + "/-/ready")).status_code == 200
            except httpx.TransportError:
                return False

        await wait_for(ready, timeout=60, what="prometheus to be ready", interval=0.2)
        yield url
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), timeout=15)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        log.close()


async def query(prom: httpx.AsyncClient, promql: str) -> list[dict[str, Any]]:
    r = await prom.get("/api/v1/query", params={"query": promql})
    body = r.json()
    assert r.status_code == 200 and body["status"] == "success", f"{promql}: {body}"
    return body["data"]["result"]  # type: ignore[no-any-return]


async def test_real_prometheus_scrapes_the_services(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    async with running_apart(kafka_settings) as (hw, ports):
        metrics_key = await create_key(hw.rt.engine, "prom", [Scope.metrics])
        targets = {
            "ingest": ports.ingest_port,
            "scoring": ports.scoring_port,
            "alerts": ports.alerts_port,
            "web": ports.web_port,
        }

        # Probes need no key; /metrics needs one with the `metrics` scope.
        async with httpx.AsyncClient(base_url=hw.url, timeout=30) as anonymous:
            assert (await anonymous.get("/healthz")).status_code == 200
            assert (await anonymous.get("/readyz")).status_code == 200
            assert (await anonymous.get("/metrics")).status_code == 401
        async with hw.client() as client:  # ingest + read + respond scopes
            assert (await client.get("/metrics")).status_code == 403
            r = await client.post("/v1/events", json={"events": [usage("prom-acme", "u1")]})
            assert r.status_code == 202, r.text
        await wait_for(lambda: processed(hw), timeout=60, what="the event scored")

        # Each service's exposition passes promtool's lint.
        for job, port in targets.items():
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{port}",
                headers={"Authorization": f"Bearer {metrics_key}"},
                timeout=30,
            ) as scraper:
                exposition = await scraper.get("/metrics")
            assert exposition.status_code == 200, job
            lint = await promtool("check", "metrics", stdin=exposition.content)
            assert lint.strip() == "", (job, lint)

        # The shipped configuration (its jobs, key file and rules), pointed at this test's
        # ports and scraping every second; DNS discovery of scoring replicas becomes a
        # static target (no DNS here).
        shutil.copy(PROM / "alerts.yml", tmp_path / "alerts.yml")
        (tmp_path / "healthwatch.key").write_text(metrics_key + "\n")
        config = yaml.safe_load((PROM / "prometheus.yml").read_text())
        config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
        jobs = [j for j in config["scrape_configs"] if j["job_name"] in targets]
        assert sorted(j["job_name"] for j in jobs) == sorted(targets)
        for job in jobs:
            job.pop("dns_sd_configs", None)
            job["static_configs"] = [{"targets": [f"127.0.0.1:{targets[job['job_name']]}"]}]
        config["scrape_configs"] = jobs
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))

        async with (
            prometheus_server(tmp_path / "prometheus.yml", tmp_path) as url,
            httpx.AsyncClient(base_url=url, timeout=30) as prom,
        ):

            async def all_up() -> list[dict[str, Any]] | None:
                r = await prom.get("/api/v1/targets")
                active = r.json()["data"]["activeTargets"]
                up = [t for t in active if t["health"] == "up"]
                return up if len(up) == len(targets) else None

            up = await wait_for(all_up, timeout=60, what="every target up")
            assert sorted(t["labels"]["job"] for t in up) == sorted(targets)

            async def series(promql: str) -> list[dict[str, Any]]:
                return await query(prom, promql)

            for job in targets:
                assert [s["value"][1] for s in await series(f'up{{job="{job}"}}')] == ["1"]
            # Each service's key series, from its own target, and how far they must have
            # counted (None: just present).
            for promql, least in (
                (
                    'healthwatch_ingest_requests_total{job="ingest", route="/v1/events", status="202"}',
                    1,
                ),
                (
                    'healthwatch_ingest_events_total{job="ingest", kind="usage", outcome="accepted"}',
                    1,
                ),
                ('healthwatch_ingest_produce_seconds_count{job="ingest"}', 1),
                (
                    'healthwatch_scoring_events_total{job="scoring", kind="usage", outcome="scored"}',
                    1,
                ),
                ('healthwatch_scoring_batch_seconds_count{job="scoring"}', 1),
                ('healthwatch_consumer_lag_records{job="scoring"}', None),
                ('healthwatch_consumer_lag_records{job="alerts"}', None),
                ('healthwatch_alert_outbox_depth{job="alerts"}', None),
                # At 0 before any: the dead-letter alert's increase() needs the series.
                ('healthwatch_consumer_dead_letters_total{job="alerts"}', None),
            ):
                result = await wait_for(
                    lambda q=promql: series(q), timeout=60, what=f"series {promql}"
                )
                if least is not None:
                    assert float(result[0]["value"][1]) >= least, (promql, result)

            # Every dashboard query parses and runs on the real server.
            panels = json.loads(DASHBOARD.read_text())["panels"]
            for expr in {t["expr"] for p in panels for t in p.get("targets", [])}:
                await series(expr.replace("$__rate_interval", "1m").replace("$__range", "5m"))

            # The shipped rules load and evaluate without errors against real series.
            async def evaluated() -> list[dict[str, Any]] | None:
                groups = (await prom.get("/api/v1/rules")).json()["data"]["groups"]
                found = [r for g in groups for r in g["rules"]]
                return found if found and all(r["health"] != "unknown" for r in found) else None

            loaded = await wait_for(evaluated, timeout=60, what="the rules evaluated")
            shipped = yaml.safe_load((PROM / "alerts.yml").read_text())["groups"]
            assert len(loaded) == sum(len(g["rules"]) for g in shipped)
            assert [(r["name"], r.get("lastError")) for r in loaded if r["health"] != "ok"] == []
            # A healthy pipeline: nothing critical fires.
            critical = [
                r["name"]
                for r in loaded
                if r["state"] == "firing" and r["labels"]["severity"] == "critical"
            ]
            assert critical == []
