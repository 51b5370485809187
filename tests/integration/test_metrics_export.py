"""Live metrics reach Ray's Prometheus export, with the sweep/trial tags and the published values.

A private local Ray with ``_metrics_export_port`` on a free port; Ray tasks publish epoch rows
through :class:`pldistill.sweep.metrics.TrialMetrics` as the worker loop's rank 0 does; the test
scrapes ``http://127.0.0.1:<port>/metrics`` (export is periodic: it polls). A real trial's series
are checked in ``test_jobs.py`` on a ``ray start`` head.
"""

from __future__ import annotations

import re
import socket
import time
import urllib.request
from collections.abc import Iterator

import pytest
from conftest import private_ray

pytestmark = pytest.mark.slow

_SAMPLE = re.compile(r"^(\w+)\{(.*)\} (\S+)$")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _series(text: str, sweep: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``{(name, sorted tags without Ray's own): value}`` for the pldistill series of ``sweep``."""
    ray_tags = {"Component", "NodeAddress", "SessionName", "Version", "WorkerId", "JobId"}
    out = {}
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if not m or "pldistill" not in m.group(1):
            continue
        tags = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2)))
        if tags.get("sweep") == sweep:
            mine = tuple(sorted((k, v) for k, v in tags.items() if k not in ray_tags and not k.startswith("otel_")))
            out[(m.group(1), mine)] = float(m.group(3))
    return out


def _scrape(port: int, sweep: str, until: int, timeout: float = 40.0) -> dict:
    """Poll the export until at least ``until`` series of ``sweep`` are there (or time runs out)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
                found = _series(r.read().decode(), sweep)
        except OSError:
            found = {}
        if len(found) >= until or time.monotonic() > deadline:
            return found
        time.sleep(2)


@pytest.fixture
def ray_with_metrics() -> Iterator[int]:
    """A private Ray (conftest's ``private_ray``) with the Prometheus export on a free port; yields the port."""
    port = _free_port()
    with private_ray(_metrics_export_port=port):
        yield port


def test_trial_metrics_in_prometheus_export(ray_with_metrics):
    import ray

    epoch1 = {"fold": 1, "epoch": 1, "train_loss_total": 2.5, "train_loss_cka": 0.75, "val_ua": 0.5,
              "val_f1": 0.4, "samples_per_s": 40.0, "lr": 1e-3, "wall_s": 2.0}
    epoch2 = {**epoch1, "epoch": 2, "train_loss_total": 1.25, "val_ua": 0.625, "test_ua": float("nan")}
    other = {"fold": 2, "epoch": 1, "train_loss_total": 9.0, "val_ua": 0.25}
    @ray.remote(num_cpus=1)
    def publish(sweep: str, trial: str, rows: list[dict]) -> None:  # as the worker loop's rank 0 does
        from pldistill.sweep.metrics import TrialMetrics

        live = TrialMetrics(sweep, trial)
        for row in rows:
            live.publish(row)

    ray.get([publish.remote("live", "t1", [epoch1, epoch2]), publish.remote("live", "t2", [other])])

    series = _scrape(ray_with_metrics, "live", until=14)
    t1 = {(name, tags): v for (name, tags), v in series.items() if ("trial", "t1") in tags}

    def value(name: str, **extra: str) -> float | None:
        want = tuple(sorted({"sweep": "live", "trial": "t1", **extra}.items()))
        return t1.get((f"ray_pldistill_{name}", want))

    assert value("train_loss", term="total") == pytest.approx(1.25)  # gauges hold the last epoch
    assert value("train_loss", term="cka") == pytest.approx(0.75)
    assert value("eval", split="val", metric="ua") == pytest.approx(0.625)
    assert value("eval", split="val", metric="f1") == pytest.approx(0.4)
    assert value("samples_per_second") == pytest.approx(40.0)
    assert value("learning_rate") == pytest.approx(1e-3)
    assert value("epoch") == 2.0 and value("fold") == 1.0
    assert value("epochs_total") == 2.0  # a counter: both epochs
    assert not any(dict(tags).get("split") == "test" for _, tags in t1)  # NaN is left out
    assert ("ray_pldistill_train_loss", (("sweep", "live"), ("term", "total"), ("trial", "t2"))) in series
    assert series[("ray_pldistill_train_loss", (("sweep", "live"), ("term", "total"), ("trial", "t2")))] == 9.0
