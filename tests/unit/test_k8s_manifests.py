"""conf/k8s/ (issue 16), checked offline: the manifests parse, the ConfigMap holds the shipped
configuration verbatim and pyginx loads it, and probes, ports, the mounted file, the preStop hook
and the grace period agree with that configuration."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from pyginx.config.loader import load
from pyginx.config.model import MainConfig
from pyginx.modules.rewrite import returns_of

K8S = Path(__file__).resolve().parents[2] / "conf" / "k8s"


def _docs() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "pyginx.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            assert doc["apiVersion"] and doc["metadata"]["name"], path
            found[doc["kind"]] = doc
    return found


@pytest.fixture(name="docs", scope="module")
def docs_fixture() -> dict[str, dict[str, Any]]:
    return _docs()


@pytest.fixture(name="config")
def config_fixture(docs: dict[str, dict[str, Any]], tmp_path: Path) -> MainConfig:
    text = docs["ConfigMap"]["data"]["pyginx.yaml"]
    path = tmp_path / "pyginx.yaml"
    path.write_text(text)
    return load(str(path), str(tmp_path))  # no DNS needed: the upstream resolves at run time


def _container(docs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    containers = docs["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    c: dict[str, Any] = containers[0]
    return c


def _flag(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def test_every_kind_is_there(docs: dict[str, dict[str, Any]]) -> None:
    assert set(docs) == {"ConfigMap", "Deployment", "Service"}


def test_configmap_is_the_shipped_file(docs: dict[str, dict[str, Any]]) -> None:
    assert docs["ConfigMap"]["data"]["pyginx.yaml"] == (K8S / "pyginx.yaml").read_text()


def test_ports_agree(docs: dict[str, dict[str, Any]], config: MainConfig) -> None:
    assert config.http is not None
    listen_ports = {a.port for s in config.http.servers for a in s.listen}
    c = _container(docs)
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert set(ports.values()) == listen_ports
    svc = docs["Service"]["spec"]
    assert svc["selector"] == docs["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert docs["Deployment"]["spec"]["selector"]["matchLabels"] == svc["selector"]
    for port in svc["ports"]:
        target = port["targetPort"]
        assert (ports[target] if isinstance(target, str) else target) in listen_ports


def _location(config: MainConfig, path: str) -> Any:
    assert config.http is not None
    server = config.http.servers[0]
    for loc in server.locations:
        if loc.modifier == "=" and loc.match == path:
            return loc
    raise AssertionError(f"no `= {path}` location in the configuration")


def test_probes_hit_the_right_locations(docs: dict[str, dict[str, Any]], config: MainConfig) -> None:
    c = _container(docs)
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    ready = c["readinessProbe"]["httpGet"]
    live = c["livenessProbe"]["httpGet"]
    for probe in (ready, live):
        assert ports.get(probe["port"], probe["port"]) in {a.port for a in config.http.servers[0].listen}  # type: ignore[union-attr]
    readiness = _location(config, ready["path"])
    assert readiness.settings.conf("readiness").on  # 503 as soon as a graceful quit starts
    liveness = _location(config, live["path"])
    assert [r.code for r in returns_of(liveness.settings)] == [200]
    assert not liveness.settings.conf("readiness").on  # liveness must not fail while draining (no restart mid-quit)


def test_mounted_config_and_prestop(docs: dict[str, dict[str, Any]], config: MainConfig) -> None:
    c = _container(docs)
    spec = docs["Deployment"]["spec"]["template"]["spec"]
    conf_path = _flag(c["command"], "-c")
    mount = next(m for m in c["volumeMounts"] if conf_path.startswith(m["mountPath"] + "/"))
    volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
    assert volume["configMap"]["name"] == docs["ConfigMap"]["metadata"]["name"]
    assert conf_path[len(mount["mountPath"]) + 1 :] in docs["ConfigMap"]["data"]
    # preStop: a graceful quit of this very configuration (its pid file), then wait for PID 1
    hook = c["lifecycle"]["preStop"]["exec"]["command"]
    script = hook[-1]
    quit_cmd = shlex.split(script.split(";")[0])
    assert quit_cmd[:3] == ["python", "-m", "pyginx"] and _flag(quit_cmd, "-s") == "quit"
    assert _flag(quit_cmd, "-c") == conf_path and _flag(quit_cmd, "-p") == _flag(c["command"], "-p")
    assert "kill -0 1" in script
    assert config.daemon is False  # PID 1 stays in the foreground
    # the kubelet's TERM must not cut the graceful quit short
    assert config.worker_shutdown_timeout is not None
    assert config.shutdown_delay < config.worker_shutdown_timeout < spec["terminationGracePeriodSeconds"]
    # the readiness probe notices the quit within the shutdown delay
    probe = c["readinessProbe"]
    assert probe["periodSeconds"] * probe.get("failureThreshold", 3) < config.shutdown_delay


def test_upstream_is_resolved_at_run_time(config: MainConfig) -> None:
    assert config.http is not None
    app = config.http.upstreams["app"]
    assert app.zone and app.resolver is not None and app.resolvable
    assert app.resolvable[0].host.endswith(".svc.cluster.local")
