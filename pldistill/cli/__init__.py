"""``pldistill-sweep``: the command line. Each topic lives in its own module."""

from __future__ import annotations

import importlib
import sys

from pldistill.cli._app import app, run_app

__all__ = ["app", "main"]

# Topic modules register their commands on import; each keeps heavy imports inside commands.
_COMMAND_MODULES = ("data", "validate", "launch", "results", "cache", "jobs", "report", "resume", "export",
                    "verify")
for _name in _COMMAND_MODULES:
    importlib.import_module(f"pldistill.cli.{_name}")


def main() -> None:
    sys.exit(run_app())
