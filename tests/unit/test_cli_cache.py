"""``pldistill-sweep cache``: every entry with its key, size, age and users; ``--gc`` removes the unused."""

from __future__ import annotations

import io
import json
import sys

import pytest

from pldistill.cli import run_app


@pytest.fixture
def layout(tmp_path):
    """A cache with four entries of three artifacts (plus a lock and a temporary, which are not
    entries) and a results root whose one sweep recorded two of them."""
    cache, results = tmp_path / "cache", tmp_path / "results"
    for folder in ("teachers/t1", "teachers/t2", "students/s1"):
        (cache / folder).mkdir(parents=True)
        (cache / folder / "metrics.json").write_text("{}")
    (cache / "features").mkdir()
    (cache / "features" / "features-f1.npz").write_bytes(b"x" * 2048)
    (cache / "teachers" / ".t3.tmp-abc").mkdir()
    (cache / "teachers" / ".t1.lock").write_text("")
    (results / "grid").mkdir(parents=True)
    used = [{"artifact": "teacher", "fold": 1, "path": str(cache / "teachers" / "t1")},
            {"artifact": "features", "fold": 1, "path": str(cache / "features" / "features-f1.npz")}]
    (results / "grid" / "sweep.json").write_text(json.dumps({"name": "grid", "artifacts": used}))
    return cache, results


def _cache(capsys, *args: str) -> tuple[int, str, str]:
    code = run_app(["cache", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_lists_entries_with_their_users(layout, capsys) -> None:
    cache, results = layout
    code, out, _ = _cache(capsys, "--cache-dir", str(cache), "--results", str(results))
    assert code == 0
    cells = [[c.strip() for c in line.strip("│ ").split("│")] for line in out.splitlines() if "│" in line]
    rows = {c[1]: " ".join(c) for c in cells if c[0] in ("teacher", "student_prior", "features")}
    assert set(rows) == {"t1", "t2", "s1", "f1"}, out  # no lock, no temporary
    assert "grid" in rows["t1"] and "grid" in rows["f1"] and "grid" not in rows["t2"]
    assert "2.0 KB" in rows["f1"]


def test_gc_removes_only_the_unused_after_asking(layout, capsys, monkeypatch) -> None:
    cache, results = layout
    monkeypatch.setattr(sys, "stdin", io.StringIO("n\n"))
    code, _, _ = _cache(capsys, "--cache-dir", str(cache), "--results", str(results), "--gc")
    assert code == 1 and (cache / "teachers" / "t2").exists()  # declined: nothing removed
    code, out, _ = _cache(capsys, "--cache-dir", str(cache), "--results", str(results), "--gc", "--yes")
    assert code == 0 and "removed 2 entries" in out
    assert not (cache / "teachers" / "t2").exists() and not (cache / "students" / "s1").exists()
    assert (cache / "teachers" / "t1" / "metrics.json").exists() and (cache / "features" / "features-f1.npz").exists()


def test_gc_refuses_while_a_sweep_recorded_no_artifacts(layout, capsys) -> None:
    cache, results = layout
    (results / "old").mkdir()
    (results / "old" / "sweep.json").write_text(json.dumps({"name": "old"}))
    code, _, err = _cache(capsys, "--cache-dir", str(cache), "--results", str(results), "--gc", "--yes")
    assert code == 2 and "--gc: refused" in err and len(err.strip().splitlines()) == 1
    assert (cache / "teachers" / "t2").exists()
