"""``cluster.yaml`` checked offline: Ray's own launcher validation, then against the shipped sweeps.

Ray validates a cluster launcher config in ``ray up`` with ``prepare_config`` (merge with the
provider's ``defaults.yaml``, fill per-type min/max workers) and ``validate_config`` (the JSON
schema plus cross-field checks). For AWS, ``prepare_config`` only reads ``defaults.yaml`` from the
installed Ray; everything that talks to AWS (AMI, subnets, security groups, key pairs) happens
later, in ``bootstrap_config``, which this test never calls. A socket guard makes sure nothing
reaches the network anyway.
"""

from __future__ import annotations

import copy
import json
import math
import re
import shlex
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CLUSTER_YAML = ROOT / "cluster.yaml"
SHARED = Path("/mnt/shared")

# prepare_config / validate_config live in ray.autoscaler._private: a private API that may change
# shape between releases. This test was written against Ray 2.60.0, the version pyproject.toml pins
# (the cluster runs it too); on any other Ray, fail loudly rather than validate against a
# different schema or silently pass.
RAY_VERSION = "2.60.0"


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    return yaml.safe_load(CLUSTER_YAML.read_text())


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to resolve a name or open a connection fails the test."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"network access attempted during offline validation: {args!r}")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)


@pytest.fixture
def prepared(raw: dict[str, Any], no_network: None) -> dict[str, Any]:
    """The config as ``ray up`` sees it before talking to AWS: defaults merged, then validated."""
    import ray
    from ray.autoscaler._private.util import prepare_config, validate_config

    assert ray.__version__ == RAY_VERSION, (
        f"this test uses Ray's private autoscaler API as of Ray {RAY_VERSION}; found {ray.__version__}. "
        "Re-check prepare_config/validate_config and the AWS defaults, then update RAY_VERSION.")
    config = prepare_config(copy.deepcopy(raw))
    validate_config(config)
    return config


def _real_sweeps() -> Iterator[Any]:
    """The shipped sweeps that run real models (their paths live on the cluster's shared storage)."""
    from pldistill.sweep import load_sweep

    for path in sorted((ROOT / "sweeps").glob("*.yaml")):
        sweep = load_sweep(path, cwd=ROOT)
        if sweep.base.model.teacher != "tiny" or sweep.base.data.source == "emobox":
            yield sweep


REAL_SWEEPS = list(_real_sweeps())


def _commands(config: dict[str, Any], *keys: str) -> list[str]:
    return [cmd for key in keys for cmd in config.get(key, [])]


def _worker_types(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in config["available_node_types"].items() if k != config["head_node_type"]}


def _bundles_per_node(node_resources: dict[str, float], bundle: dict[str, float]) -> int:
    """How many copies of ``bundle`` one node with ``node_resources`` holds."""
    return min(math.floor(node_resources.get(unit, 0) / amount) for unit, amount in bundle.items() if amount > 0)


def test_real_sweep_is_found() -> None:
    assert "iemocap_tpe" in [s.name for s in REAL_SWEEPS]


def test_validates_with_rays_own_schema_offline(prepared: dict[str, Any], raw: dict[str, Any]) -> None:
    assert prepared["provider"]["type"] == "aws"
    assert prepared["head_node_type"] in prepared["available_node_types"]
    # Everything that matters was set here, not inherited from Ray's AWS defaults.yaml (whose
    # head_start_ray_commands bind the dashboard to 0.0.0.0).
    for key in ("setup_commands", "head_setup_commands", "head_start_ray_commands", "worker_start_ray_commands",
                "initialization_commands", "file_mounts", "max_workers"):
        assert key in raw, f"cluster.yaml should set {key} itself"


def test_every_command_is_one_intact_shell_command(prepared: dict[str, Any]) -> None:
    """A ' #' inside a plain YAML scalar starts a comment and silently cuts a command short;
    unbalanced quotes are the symptom."""
    keys = ("initialization_commands", "setup_commands", "head_setup_commands", "worker_setup_commands",
            "head_start_ray_commands", "worker_start_ray_commands")
    for cmd in _commands(prepared, *keys):
        shlex.split(cmd)  # raises on unbalanced quotes


def test_gpu_worker_types_scale_from_zero(prepared: dict[str, Any]) -> None:
    workers = _worker_types(prepared)
    gpu_types = {k: v for k, v in workers.items() if v["resources"].get("GPU", 0) > 0}
    assert len(gpu_types) >= 2, "want a large multi-GPU type (teacher, caches) and a small one (cached trials)"
    for name, node in gpu_types.items():
        assert node["min_workers"] == 0, f"{name}: GPU nodes should start on demand"
        assert node["max_workers"] >= 1, name
    assert max(v["resources"]["GPU"] for v in gpu_types.values()) >= 8
    assert min(v["resources"]["GPU"] for v in gpu_types.values()) == 1
    assert prepared["available_node_types"][prepared["head_node_type"]]["resources"].get("GPU", 0) == 0


@pytest.mark.parametrize("sweep", REAL_SWEEPS, ids=lambda s: s.name)
def test_sweep_resources_fit_a_worker_type(prepared: dict[str, Any], sweep: Any) -> None:
    r, n = sweep.resources, sweep.search.max_concurrent_trials
    bundle = {"CPU": r.cpus_per_worker, "GPU": r.gpus_per_worker}
    fits: dict[str, int] = {}  # node type -> how many workers of this sweep it holds at full scale-out
    for name, node in _worker_types(prepared).items():
        per_node = _bundles_per_node(node["resources"], bundle)
        if per_node >= 1:
            fits[name] = per_node * min(node["max_workers"], prepared["max_workers"])
    assert fits, f"no worker node type holds one worker of {sweep.name} ({bundle})"
    assert max(fits.values()) >= r.workers_per_trial, f"no node type holds one whole trial of {sweep.name}"
    assert sum(fits.values()) >= r.workers_per_trial * n, (
        f"{sweep.name}: {n} concurrent trials x {r.workers_per_trial} workers, room for {fits}")
    best = max(fits, key=fits.get)
    assert fits[best] >= r.workers_per_trial * n, f"{sweep.name}: no single node type holds every concurrent trial"


@pytest.mark.parametrize("sweep", REAL_SWEEPS, ids=lambda s: s.name)
def test_pldistill_accepts_the_fully_scaled_cluster(prepared: dict[str, Any], sweep: Any) -> None:
    """pldistill's own pre-launch check, on the cluster's totals at full scale-out."""
    from pldistill.sweep import check_resources
    from pldistill.sweep.driver import DRIVER_RESOURCE

    totals: dict[str, float] = {}
    for name, node in prepared["available_node_types"].items():
        count = 1 if name == prepared["head_node_type"] else node["max_workers"]
        for unit, amount in node["resources"].items():
            totals[unit] = totals.get(unit, 0) + count * amount
    assert check_resources(sweep, totals, driver_resource=DRIVER_RESOURCE) == []


def _start_flag_resources(cmds: list[str]) -> dict[str, float]:
    found: dict[str, float] = {}
    for cmd in cmds:
        for arg in shlex.split(cmd):
            if arg.startswith("--resources="):
                found.update(json.loads(arg.split("=", 1)[1]))
    return found


def test_head_offers_driver_slots(prepared: dict[str, Any]) -> None:
    from pldistill.sweep.driver import DRIVER_RESOURCE

    head = prepared["available_node_types"][prepared["head_node_type"]]
    slots = head["resources"].get(DRIVER_RESOURCE, 0)
    for sweep in REAL_SWEEPS:
        assert slots >= sweep.search.max_concurrent_trials, sweep.name
    for name, node in _worker_types(prepared).items():
        assert DRIVER_RESOURCE not in node["resources"], f"{name}: trial drivers belong on the head"
    # The autoscaler starts Ray with the node type's resources; a --resources flag, if given, must agree.
    flag = _start_flag_resources(prepared["head_start_ray_commands"])
    for unit, amount in flag.items():
        assert head["resources"].get(unit) == amount, f"--resources {unit}={amount} vs resources: {head['resources']}"


def test_dashboard_stays_on_loopback(prepared: dict[str, Any]) -> None:
    starts = _commands(prepared, "head_start_ray_commands", "worker_start_ray_commands")
    for cmd in starts:
        assert "0.0.0.0" not in cmd, cmd
    head_start = [c for c in prepared["head_start_ray_commands"] if "ray start" in c]
    assert len(head_start) == 1
    args = shlex.split(head_start[0])
    assert "--head" in args
    assert "--dashboard-host=127.0.0.1" in args
    assert re.search(r"ray stop", " ".join(prepared["head_start_ray_commands"]))


def test_workers_join_the_head(prepared: dict[str, Any]) -> None:
    cmds = prepared["worker_start_ray_commands"]
    assert any("ray stop" in c for c in cmds)
    assert any("ray start" in c and "--address=$RAY_HEAD_IP:6379" in c for c in cmds)


def test_token_auth_everywhere(prepared: dict[str, Any]) -> None:
    for cmd in _commands(prepared, "head_start_ray_commands", "worker_start_ray_commands"):
        if "ray start" in cmd:
            assert "RAY_AUTH_MODE=token" in cmd, cmd
    mounts = {k: v for k, v in prepared["file_mounts"].items()}
    assert mounts.get("~/.ray/auth_token") == "~/.ray/auth_token", "every node needs the cluster's token"
    assert any("RAY_AUTH_MODE=token" in c and ".bashrc" in c for c in prepared["setup_commands"]), (
        "interactive shells (ray exec/attach) need RAY_AUTH_MODE=token to reach the cluster")


def _pins(dependencies: list[str]) -> dict[str, str]:
    """``{"torch": "torch==2.13.0", "ray": "ray[...]==2.60.0"}`` from pyproject's dependency list."""
    out = {}
    for dep in dependencies:
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)(\[[^\]]*\])?==([^;\s]+)", dep.strip())
        if m:
            out[m.group(1).lower()] = dep.strip()
    return out


def test_setup_installs_the_pinned_stack(prepared: dict[str, Any]) -> None:
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    pins = _pins(pyproject["project"]["dependencies"])
    assert {"torch", "ray"} <= pins.keys(), "pyproject.toml should pin torch and ray exactly"
    installs = [shlex.split(c) for c in prepared["setup_commands"] if "pip install" in c]
    requirements = {arg for args in installs for arg in args}
    for name in ("torch", "ray"):
        assert pins[name] in requirements, f"setup_commands should install {pins[name]!r} (pyproject.toml)"
    torch_at = next(i for i, args in enumerate(installs) if pins["torch"] in args)
    project_at = next(i for i, args in enumerate(installs) if "~/pldistill" in args)
    assert torch_at < project_at, "install the pinned torch before pldistill pulls its dependencies"
    assert "-e" in installs[project_at]
    assert prepared["file_mounts"].get("~/pldistill") == ".", "the nodes install pldistill from a synced copy"
    # The AWS autoscaler on the head needs boto3.
    assert any("boto3" in c for c in prepared["head_setup_commands"])


def test_shared_storage_is_mounted(prepared: dict[str, Any]) -> None:
    mounts = [c for c in prepared["initialization_commands"] if "mount " in c and f" {SHARED}" in c]
    assert mounts, f"initialization_commands should mount the shared file system at {SHARED}"
    assert all("mountpoint -q" in c for c in mounts), "mounting must be idempotent (ray up reruns it)"


@pytest.mark.parametrize("sweep", REAL_SWEEPS, ids=lambda s: s.name)
def test_real_sweep_paths_are_on_shared_storage(prepared: dict[str, Any], sweep: Any) -> None:
    base = sweep.base
    paths = {"results": sweep.results, "base.cache_dir": base.cache_dir,
             "base.data.manifests": base.data.manifests, "base.data.audio_root": base.data.audio_root,
             "base.model.teacher": base.model.teacher, "base.model.student_llm": base.model.student_llm}
    for key, value in paths.items():
        if value is None or value == "tiny":
            continue
        assert Path(value).is_relative_to(SHARED), f"{sweep.name}: {key} = {value} is not under {SHARED}"
    # The folders Tune/Train and pldistill write to exist and belong to the ssh user on every node.
    owned = " ".join(c for c in prepared["initialization_commands"] if "install -d" in c)
    for p in (sweep.results, base.cache_dir):
        assert str(p) in owned, f"{p} should be created on the shared mount"
