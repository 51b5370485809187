"""``--help`` of every command reads cleanly: flags carry no type label (Typer's rich panels printed
``<bool>`` beside every flag, ``--help`` included)."""

from __future__ import annotations

import pytest

from pldistill.cli import app, run_app


def _commands() -> list[list[str]]:
    import typer.main

    group = typer.main.get_command(app)
    out = [[]]
    for name, cmd in group.commands.items():  # type: ignore[attr-defined]
        out.append([name])
        out += [[name, sub] for sub in getattr(cmd, "commands", {})]
    return out


@pytest.mark.parametrize("argv", _commands(), ids=lambda a: " ".join(a) or "root")
def test_help_has_no_bool_label(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert run_app([*argv, "--help"]) == 0
    out = capsys.readouterr().out
    assert "--help" in out and "<bool>" not in out
