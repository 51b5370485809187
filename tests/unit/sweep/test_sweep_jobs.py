"""Ray Job helpers: address and token resolution (as Ray's own clients do), the submitted job, errors."""

from __future__ import annotations

import shlex
import socket
from pathlib import Path

import pytest

from pldistill.cli import run_app
from pldistill.errors import InputError, PldistillError
from pldistill.sweep.jobs import (
    DEFAULT_ADDRESS,
    RUNTIME_ENV_EXCLUDES,
    auth_headers,
    build_submission,
    find_auth_token,
    is_job_address,
    relative_path_keys,
    resolve_address,
)

REPO = Path(__file__).resolve().parents[3]


def test_job_addresses_are_http():
    assert is_job_address("http://head:8265") and is_job_address("HTTPS://head")
    assert not any(is_job_address(a) for a in (None, "", "auto", "ray://head:10001", "10.0.0.1:6379"))


@pytest.mark.parametrize(("address", "env", "expected"), [
    ("http://a:8265/", {"RAY_ADDRESS": "http://b:8265"}, "http://a:8265"),
    (None, {"RAY_API_SERVER_ADDRESS": "http://api:8265", "RAY_ADDRESS": "http://b:8265"}, "http://api:8265"),
    (None, {"RAY_ADDRESS": "https://b:443"}, "https://b:443"),
    (None, {"RAY_ADDRESS": "10.0.0.5:8265"}, "http://10.0.0.5:8265"),
    (None, {"RAY_ADDRESS": ""}, DEFAULT_ADDRESS),
    (None, {}, "http://127.0.0.1:8265"),
])
def test_resolve_address_order(address, env, expected):
    assert resolve_address(address, env) == expected


@pytest.mark.parametrize("address", ["auto", "ray://head:10001"])
def test_resolve_address_refuses_non_dashboard_addresses(address):
    with pytest.raises(InputError, match="dashboard's address"):
        resolve_address(address, {})


def test_token_precedence_env_then_path_then_home(tmp_path):
    home = tmp_path / "home"
    (home / ".ray").mkdir(parents=True)
    (home / ".ray" / "auth_token").write_text("from-home\n")
    token_file = tmp_path / "tok"
    token_file.write_text("  from-path \n")
    assert find_auth_token({"RAY_AUTH_TOKEN": "from-env", "RAY_AUTH_TOKEN_PATH": str(token_file)}, home) == "from-env"
    assert find_auth_token({"RAY_AUTH_TOKEN_PATH": str(token_file)}, home) == "from-path"
    assert find_auth_token({"RAY_AUTH_TOKEN": "  "}, home) == "from-home"
    assert find_auth_token({}, tmp_path / "nobody") is None


def test_token_path_that_cannot_be_used_is_an_error(tmp_path):
    with pytest.raises(InputError, match="cannot read the token file"):
        find_auth_token({"RAY_AUTH_TOKEN_PATH": str(tmp_path / "missing")}, tmp_path)
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(InputError, match="empty"):
        find_auth_token({"RAY_AUTH_TOKEN_PATH": str(tmp_path / "empty")}, tmp_path)


def test_auth_headers_follow_ray_auth_mode(tmp_path):
    assert auth_headers({"RAY_AUTH_TOKEN": "abc"}, tmp_path) == {"Authorization": "Bearer abc"}
    assert auth_headers({"RAY_AUTH_TOKEN": "abc", "RAY_AUTH_MODE": "token"}, tmp_path) == {
        "Authorization": "Bearer abc"}
    assert auth_headers({"RAY_AUTH_TOKEN": "abc", "RAY_AUTH_MODE": "disabled"}, tmp_path) == {}
    assert auth_headers({}, tmp_path) == {}  # an unauthenticated cluster may not need one
    with pytest.raises(PldistillError, match=r"RAY_AUTH_MODE=token but no Ray auth token.*get-auth-token"):
        auth_headers({"RAY_AUTH_MODE": "token"}, tmp_path)


def test_submission_uploads_project_and_runs_launch_on_the_cluster(tmp_path):
    (tmp_path / "sweeps").mkdir()
    sweep = tmp_path / "sweeps" / "my sweep.yaml"
    sweep.write_text("name: s\n")
    job = build_submission(sweep, "s", tmp_path, ("--quiet",))
    assert shlex.split(job.entrypoint) == ["pldistill-sweep", "launch", "sweeps/my sweep.yaml", "--address", "auto",
                                           "--quiet"]
    assert job.runtime_env["working_dir"] == str(tmp_path.resolve())
    for excluded in (".venv", "results", ".pldistill-cache", ".git"):
        assert excluded in job.runtime_env["excludes"]
    assert job.runtime_env["excludes"] == RUNTIME_ENV_EXCLUDES
    assert job.metadata == {"pldistill_sweep": "s", "pldistill_sweep_file": "sweeps/my sweep.yaml"}
    assert job.submission_id.startswith("pldistill-s-")
    assert build_submission(sweep, "s", tmp_path).submission_id != job.submission_id


def test_submission_needs_the_sweep_inside_the_working_dir(tmp_path):
    (tmp_path / "proj").mkdir()
    sweep = tmp_path / "elsewhere.yaml"
    sweep.write_text("name: s\n")
    with pytest.raises(InputError, match="must lie inside the working dir"):
        build_submission(sweep, "s", tmp_path / "proj")
    with pytest.raises(InputError, match="not a directory"):
        build_submission(sweep, "s", tmp_path / "nope")


def test_relative_paths_are_flagged(tmp_path):
    sweep = tmp_path / "s.yaml"
    sweep.write_text("name: s\nbase:\n  cache_dir: /abs/cache\n  data: {manifests: data/emobox}\n")
    assert relative_path_keys(sweep) == ["results", "base.data.manifests"]
    sweep.write_text("name: s\nresults: /abs/results\nbase: {cache_dir: /abs/cache}\n")
    assert relative_path_keys(sweep) == []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _one_line_error(capsys, args: list[str]) -> str:
    capsys.readouterr()
    assert run_app(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


@pytest.mark.parametrize("command", [["jobs"], ["logs", "x"], ["logs", "x", "--follow"], ["stop", "x"]])
def test_unreachable_dashboard_is_one_line(capsys, monkeypatch, command):
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    url = f"http://127.0.0.1:{_free_port()}"
    assert f"cannot reach the Ray dashboard at {url}" in _one_line_error(capsys, [*command, "--address", url])


def test_launch_as_job_checks_before_connecting(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sweep = REPO / "sweeps" / "smoke.yaml"  # valid, but outside the working dir (the cwd)
    line = _one_line_error(capsys, ["launch", str(sweep), "--address", f"http://127.0.0.1:{_free_port()}"])
    assert "must lie inside the working dir" in line
    assert "dashboard's address" in _one_line_error(capsys, ["jobs", "--address", "auto"])
