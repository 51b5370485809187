"""A full disk: the write that meets it says so as DiskFullError naming the file, earlier files stay
whole, a trial that failed for it stops the sweep before Tune retries it, and the launcher ends in one
line naming the filesystem and how much more the sweep needs. On a real small filesystem (a tmpfs,
when this test may mount one) and with an injected ``OSError(ENOSPC)``."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from pldistill._fs import mount_point
from pldistill.errors import DiskFullError, PldistillError
from pldistill.results import ResultsStore, TrialRecord, read_trials
from pldistill.sweep.diskfull import disk_full_cause, disk_full_line
from pldistill.sweep.load import load_sweep
from pldistill.sweep.recorder import DiskFullGuard

SMOKE = Path(__file__).resolve().parents[3] / "sweeps" / "smoke.yaml"


@pytest.fixture
def small_fs(tmp_path) -> Path:
    """A 2 MiB tmpfs at ``tmp_path/fs`` (skipped where this process may not mount one)."""
    target = tmp_path / "fs"
    target.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command here")
    run = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(target)],
                         capture_output=True, text=True, check=False)
    if run.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {run.stderr.strip()}")
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], check=False)


def _fill(folder: Path) -> None:
    """Write until the filesystem holding ``folder`` is full."""
    with open(folder / "ballast", "wb") as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            assert exc.errno == errno.ENOSPC


def _sweep(results: Path):
    return load_sweep(SMOKE).model_copy(update={"results": str(results)})


def test_a_full_filesystem_stops_a_write_whole_and_names_itself(small_fs) -> None:
    store = ResultsStore(small_fs / "results", "smoke")
    store.write_trial(TrialRecord(trial_id="t0", status="completed", val_ua=0.5))
    _fill(small_fs)
    with pytest.raises(DiskFullError) as info:
        store.write_trial(TrialRecord(trial_id="t1", status="completed", val_ua=0.6))
    assert info.value.path == str(store.trial_path("t1"))
    assert read_trials(store.root).column("trial_id").to_pylist() == ["t0"]  # readable, nothing half-written
    assert [p.name for p in (store.sweep_dir / "trials").iterdir()] == ["t0.parquet"]
    line = disk_full_line(info.value.path, store, _sweep(small_fs / "results"))
    assert "\n" not in line
    assert line.startswith(f"{store.trial_path('t1')}: no space left on device (filesystem {small_fs}: ")
    assert "after 1 of 6 trials: about " in line and "'pldistill-sweep resume smoke --results " in line


def test_an_injected_enospc_is_a_disk_full_error(tmp_path, monkeypatch) -> None:
    def full(path, content, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr("pldistill.results.store.atomic_write", full)
    store = ResultsStore(tmp_path, "smoke")
    with pytest.raises(DiskFullError, match="t1.parquet: no space left on device"):
        store.write_trial(TrialRecord(trial_id="t1", status="completed"))
    line = disk_full_line(str(store.trial_path("t1")), store, _sweep(tmp_path))
    assert f"(filesystem {mount_point(tmp_path)}: " in line and "before any trial finished" in line


def _failed_trial(tmp_path: Path, text: str):
    error = tmp_path / "error.txt"
    error.write_text(text)
    return SimpleNamespace(trial_id="t1", error_file=str(error), get_error=lambda: None)


@pytest.mark.parametrize("text", [
    "Traceback ...\nOSError: [Errno 28] No space left on device: '/data/results/smoke/epochs/t1.parquet'",
    "ray.exceptions.RayTaskError(DiskFullError): /data/results/smoke/epochs/t1.parquet: no space left on device",
])
def test_a_trial_that_failed_for_a_full_disk_stops_the_sweep_before_a_retry(tmp_path, text) -> None:
    guard = DiskFullGuard(tmp_path)
    for hook in (guard.on_trial_recover, guard.on_trial_error):  # retries left, or none
        with pytest.raises(DiskFullError) as info:
            hook(0, [], _failed_trial(tmp_path, text))
        assert info.value.path == "/data/results/smoke/epochs/t1.parquet"


def test_other_trial_failures_are_left_to_tune(tmp_path) -> None:
    guard = DiskFullGuard(tmp_path)
    guard.on_trial_recover(0, [], _failed_trial(tmp_path, "RuntimeError: CUDA out of memory"))
    guard.on_trial_error(0, [], _failed_trial(tmp_path, "OSError: [Errno 5] Input/output error"))


def test_the_cause_is_found_under_tunes_own_error() -> None:
    class TuneError(Exception):
        pass

    try:
        try:
            raise DiskFullError("/r/x.parquet")
        except DiskFullError as exc:
            raise TuneError("The Ray Tune run failed.") from exc
    except TuneError as wrapped:
        assert disk_full_cause(wrapped).path == "/r/x.parquet"
    assert disk_full_cause(OSError(errno.ENOSPC, "full", "/r/y")).path == "/r/y"
    assert disk_full_cause(OSError(errno.EIO, "io", "/r/y")) is None


def test_the_launcher_ends_in_one_line(tmp_path, monkeypatch) -> None:
    from pldistill.sweep.launch import LaunchOptions, run_sweep

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "cache" / "teachers" / "k"))

    monkeypatch.setattr("pldistill.sweep.launch.prepare_sweep", full)
    with pytest.raises(PldistillError) as info:
        run_sweep(_sweep(tmp_path / "results"), SMOKE, LaunchOptions(num_cpus=2, dashboard=False))
    assert type(info.value) is PldistillError and "\n" not in str(info.value)
    assert str(info.value).startswith(f"{tmp_path / 'cache' / 'teachers' / 'k'}: no space left on device "
                                      f"(filesystem {mount_point(tmp_path)}: ")
