"""The one module for file-system safety: atomic files and folders, locks, private folders."""

from __future__ import annotations

import multiprocessing as mp
import os
import stat

import pytest

from pldistill._fs import (
    artifact_lock,
    artifacts_read_only,
    atomic_dir,
    atomic_write,
    build_once,
    file_lock,
    noting_builds,
    private_dirs,
    remove_stale_temps,
)
from pldistill.errors import MissingArtifactError


def _hold_lock(path: str, ready, release) -> None:
    with file_lock(path, holder="pid child"):
        ready.set()
        release.wait(10)


def test_atomic_write_replaces_whole_or_not_at_all(tmp_path) -> None:
    target = tmp_path / "deep" / "f.txt"
    atomic_write(target, "one")
    atomic_write(target, b"two")
    assert target.read_text() == "two"

    def fail(fh) -> None:
        fh.write(b"half")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        atomic_write(target, fail)
    assert target.read_text() == "two"
    assert sorted(os.listdir(target.parent)) == ["f.txt"]  # no temp file left
    assert stat.S_IMODE(os.stat(tmp_path / "deep").st_mode) == 0o700


def test_atomic_dir_replaces_keeps_or_refuses(tmp_path) -> None:
    final = tmp_path / "d"
    with atomic_dir(final) as tmp:
        (tmp / "a").write_text("1")
    with atomic_dir(final) as tmp:
        (tmp / "b").write_text("2")
    assert sorted(os.listdir(final)) == ["b"]
    with pytest.raises(ValueError), atomic_dir(final) as tmp:
        (tmp / "c").write_text("3")
        raise ValueError("failed while building")
    assert sorted(os.listdir(final)) == ["b"]
    with pytest.raises(FileExistsError), atomic_dir(final, replace=False) as tmp:
        (tmp / "c").write_text("3")
    assert sorted(os.listdir(final)) == ["b"]
    assert sorted(os.listdir(tmp_path)) == ["d"]  # nothing half-written beside it


def test_remove_stale_temps_clears_what_a_killed_writer_left(tmp_path) -> None:
    (tmp_path / ".ckpt.tmp-abc").mkdir()
    (tmp_path / ".ckpt.old-def").mkdir()
    (tmp_path / ".ckpt.tmp-x").write_text("")
    (tmp_path / ".other.tmp-abc").mkdir()
    (tmp_path / "ckpt").mkdir()
    assert remove_stale_temps(tmp_path, "ckpt") == 3
    assert sorted(os.listdir(tmp_path)) == [".other.tmp-abc", "ckpt"]


def test_remove_stale_temps_of_every_name(tmp_path) -> None:
    (tmp_path / ".a.parquet.tmp-1").write_text("")
    (tmp_path / ".b.old-2").mkdir()
    (tmp_path / ".launch.lock").write_text("")
    (tmp_path / "c.parquet").write_text("")
    assert remove_stale_temps(tmp_path) == 2
    assert sorted(os.listdir(tmp_path)) == [".launch.lock", "c.parquet"]


def test_artifact_lock_clears_what_a_killed_writer_of_it_left(tmp_path) -> None:
    final = tmp_path / "teachers" / "k1"
    with pytest.raises(RuntimeError), atomic_dir(final) as tmp:  # a kill leaves tmp; so does this, by hand
        (tmp / "weights").write_text("half")
        kept = tmp
        os.rename(tmp, tmp.with_name(tmp.name + "x"))  # out of atomic_dir's own cleanup's reach
        raise RuntimeError
    left = kept.with_name(kept.name + "x")
    other = tmp_path / "teachers" / ".k2.tmp-abc"  # another artifact's: maybe being written now
    other.mkdir()
    assert left.is_dir()
    with artifact_lock(final):
        assert not left.exists() and other.is_dir()
    assert (tmp_path / "teachers" / ".k1.lock").is_file()


def test_file_lock_excludes_another_process(tmp_path) -> None:
    path = tmp_path / "locks" / ".x.lock"
    ctx = mp.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    child = ctx.Process(target=_hold_lock, args=(str(path), ready, release))
    child.start()
    try:
        assert ready.wait(30)
        with pytest.raises(BlockingIOError), file_lock(path, blocking=False):
            pass
        assert path.read_text() == "pid child"
    finally:
        release.set()
        child.join(30)
    with file_lock(path, blocking=False):
        pass


def test_private_dirs_refuses_a_file_in_the_way(tmp_path) -> None:
    (tmp_path / "f").write_text("")
    with pytest.raises(NotADirectoryError):
        private_dirs(tmp_path / "f" / "sub")


def test_a_second_launcher_is_refused_and_told_who_holds_the_sweep(tmp_path) -> None:
    from pldistill.sweep.resume import SweepBusyError, SweepLock

    with SweepLock(tmp_path / "sw"), pytest.raises(SweepBusyError, match=f"pid {os.getpid()}"), \
            SweepLock(tmp_path / "sw"):
        pass
    with SweepLock(tmp_path / "sw"):  # released on exit
        pass


def test_build_once_builds_once_clears_stale_temps_and_notes_it(tmp_path) -> None:
    final = tmp_path / "teachers" / "k1"
    stale = tmp_path / "teachers" / ".k1.tmp-dead"
    stale.mkdir(parents=True)
    calls = []

    def build(tmp):
        calls.append(tmp)
        (tmp / "weights").write_text("w")
        (tmp / "metrics.json").write_text("{}")

    with noting_builds() as journal:
        assert build_once(final, "metrics.json", build, what="teacher") is True
        assert build_once(final, "metrics.json", build, what="teacher") is False
    assert len(calls) == 1 and (final / "weights").read_text() == "w"
    assert journal == [final.resolve()]
    assert not stale.exists(), "the lock holder clears what a killed builder left"


def test_build_once_refuses_a_build_without_its_marker(tmp_path) -> None:
    with pytest.raises(RuntimeError, match="wrote no metrics.json"):
        build_once(tmp_path / "e", "metrics.json", lambda tmp: (tmp / "weights").write_text("w"), what="teacher")
    assert not (tmp_path / "e").exists() and not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_read_only_reads_what_is_built_and_refuses_to_build(tmp_path) -> None:
    built = tmp_path / "built"
    build_once(built, "m", lambda tmp: (tmp / "m").write_text(""), what="x")
    with artifacts_read_only("run prepare"):
        assert build_once(built, "m", lambda tmp: None, what="x") is False
        with pytest.raises(MissingArtifactError, match=r"missing: the teacher is not built; run prepare"):
            build_once(tmp_path / "missing", "m", lambda tmp: (tmp / "m").write_text(""), what="the teacher")
    assert not (tmp_path / "missing").exists()
    assert build_once(tmp_path / "missing", "m", lambda tmp: (tmp / "m").write_text(""), what="x") is True
