"""Safety: plain YAML only, no pickle anywhere, SQL that can touch no file, a loopback dashboard and
user-only cache and results folders."""

from __future__ import annotations

import ast
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from pldistill.cli import run_app

PACKAGE = Path(__file__).resolve().parents[2] / "pldistill"


# --- YAML -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["validate", "launch"])
def test_python_tags_in_yaml_are_refused_with_one_line(tmp_path, capsys, command):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.yaml"
    path.write_text(f"name: evil\nresults: {tmp_path / 'results'}\n"
                    f"description: !!python/object/apply:os.system ['touch {marker}']\n"
                    "search: {algorithm: random, num_samples: 1, space: {alpha: {type: uniform, low: 0, high: 1}}}\n")
    args = [command, str(path)] + (["--no-dashboard", "--quiet"] if command == "launch" else [])
    assert run_app(args) == 2
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert "Traceback" not in err and not marker.exists() and not (tmp_path / "results").exists()
    problem = [ln for ln in lines if "python/object" in ln]
    assert len(problem) == 1 and f"{path}: line 3, column 14: malformed YAML" in problem[0], lines
    assert lines[-1].startswith("error: ")
    if command == "launch":
        assert len(lines) == 1


# --- no pickle ------------------------------------------------------------------------------------


#: (module alias, function) pairs that unpickle or run code whatever their arguments.
_ALWAYS_UNSAFE = {("pickle", "load"), ("pickle", "loads"), ("cloudpickle", "load"), ("cloudpickle", "loads"),
                  ("dill", "load"), ("dill", "loads"), ("joblib", "load"), ("yaml", "load"), ("yaml", "load_all"),
                  ("yaml", "unsafe_load"), ("yaml", "unsafe_load_all"), ("yaml", "full_load"),
                  (None, "eval"), (None, "exec")}


def _is_true(call: ast.Call, key: str) -> bool:
    return any(k.arg == key and isinstance(k.value, ast.Constant) and k.value.value is True for k in call.keywords)


def _unsafe_calls(source: str) -> Iterator[str]:
    """Calls that can unpickle or run code while loading: ``torch.load`` without ``weights_only=True``,
    pickle-family loads, ``yaml.load``/``unsafe_load``/``full_load``, ``np.load(allow_pickle=True)``,
    ``eval``/``exec``."""
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        owner = func.value.id if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) else None
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
        unsafe = ((owner, name) in _ALWAYS_UNSAFE
                  or (owner, name) == ("torch", "load") and not _is_true(node, "weights_only")
                  or owner in ("np", "numpy") and name == "load" and _is_true(node, "allow_pickle"))
        if unsafe:
            yield f"line {node.lineno}: {owner + '.' if owner else ''}{name}"


def test_the_scanner_finds_unsafe_loads():
    bad = ("torch.load(p)\ntorch.load(p, weights_only=False)\npickle.loads(b)\nyaml.load(t, Loader=L)\n"
           "yaml.unsafe_load(t)\nnp.load(p, allow_pickle=True)\neval(s)\n")
    assert len(list(_unsafe_calls(bad))) == 7
    good = "torch.load(p, weights_only=True)\nyaml.safe_load(t)\nnp.load(p, allow_pickle=False)\njson.loads(s)\n"
    assert list(_unsafe_calls(good)) == []


def test_package_never_unpickles_or_loads_yaml_unsafely():
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 30
    found = [f"{f.relative_to(PACKAGE.parent)}: {hit}" for f in files for hit in _unsafe_calls(f.read_text())]
    assert found == []


# --- SQL ------------------------------------------------------------------------------------------


ESCAPES = [  # beyond tests/unit/results/test_results_query.py::ESCAPES
    "SELECT * FROM '/etc/passwd'",
    "SELECT * FROM read_json_auto('/etc/passwd')",
    "SELECT * FROM read_blob('/etc/passwd')",
    "SELECT * FROM sniff_csv('/etc/passwd')",
    "FROM parquet_metadata('{results}/ablation/trials/t0.parquet')",
    "IMPORT DATABASE '{out}'",
    "LOAD '{out}/x.duckdb_extension'",
    "CREATE SECRET s (TYPE s3, KEY_ID 'k', SECRET 's')",
    "PRAGMA database_list",
    "CALL pragma_version()",
    "SET home_directory = '{out}'",
    "DETACH memory",
    "CHECKPOINT",
    "COPY trials TO '/dev/stdout'",
]


@pytest.mark.parametrize("sql", ESCAPES)
def test_query_cannot_reach_outside_the_results(results_root, tmp_path, capsys, monkeypatch, sql):
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.chdir(out)
    before = sorted(p for p in tmp_path.rglob("*"))
    code = run_app(["query", sql.format(out=out, results=results_root), "--results", str(results_root),
                    "--format", "csv"])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == "" and "root:" not in captured.err
    assert captured.err.startswith("error: query: ") and captured.err.count("\n") == 1, captured.err
    assert sorted(p for p in tmp_path.rglob("*")) == before


@pytest.fixture
def results_root(tmp_path_factory) -> Path:
    from pldistill.results import ResultsStore, TrialRecord

    root = tmp_path_factory.mktemp("results")
    ResultsStore(root, "ablation").write_trial(TrialRecord(trial_id="t0", status="completed"))
    return root


# --- dashboard ------------------------------------------------------------------------------------


def test_local_ray_dashboard_listens_on_loopback_only(tmp_path, monkeypatch):
    import ray

    from pldistill.sweep import load_sweep
    from pldistill.sweep.launch import LaunchOptions, _start_ray

    seen: dict[str, object] = {}

    class Context:
        dashboard_url = "127.0.0.1:8265"

    def fake_init(**kwargs):
        seen.update(kwargs)
        return Context()

    monkeypatch.setattr(ray, "init", fake_init)
    path = tmp_path / "s.yaml"
    path.write_text("name: s\nsearch: {algorithm: random, num_samples: 1, "
                    "space: {alpha: {type: uniform, low: 0, high: 1}}}\n")
    url = _start_ray(load_sweep(path), LaunchOptions(num_cpus=2, dashboard=True))
    assert seen["address"] == "local" and seen["include_dashboard"] is True
    assert seen["dashboard_host"] == "127.0.0.1"
    assert url == "http://127.0.0.1:8265"


# --- user-only folders ----------------------------------------------------------------------------


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)  # the usual default: what a plain mkdir would give is 0o755
    try:
        yield
    finally:
        os.umask(old)


def _modes(top: Path) -> dict[str, int]:
    return {str(p.relative_to(top)): stat.S_IMODE(p.stat().st_mode) for p in [top, *top.rglob("*")] if p.is_dir()}


def test_results_folders_are_user_only(tmp_path, umask_022):
    from pldistill.results import ResultsStore, TrialRecord

    store = ResultsStore(tmp_path / "new" / "results", "sw")
    store.check_writable()
    assert not (tmp_path / "new").exists()  # checking writes nothing
    store.write_trial(TrialRecord(trial_id="t0", status="running"))
    assert set(_modes(tmp_path / "new").values()) == {0o700}


def test_cache_folders_are_user_only(tmp_path, umask_022):
    import numpy as np

    from pldistill._fs import atomic_dir, file_lock
    from pldistill.data.features import Features

    cache = tmp_path / "new" / "cache"
    with file_lock(cache / "teachers" / ".k.lock"):
        pass
    with atomic_dir(cache / "students" / "k") as tmp:
        (tmp / "config.json").write_text("{}")
    feats = Features.from_dense(["a"], 0.02, np.zeros((1, 128, 2), np.float32), np.array([2]))
    feats.save(cache / "features" / "deep" / "features-x.npz")
    modes = _modes(tmp_path / "new")
    assert set(modes) >= {".", "cache", "cache/teachers", "cache/students", "cache/students/k",
                          "cache/features", "cache/features/deep"}
    assert set(modes.values()) == {0o700}, modes
