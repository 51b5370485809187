"""Load a benchmark script of ``bench/`` as a module, once per session, so tests can call its functions."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def load_bench(stem: str) -> ModuleType:
    """``bench/<stem>.py`` as the module ``pldistill_bench_<stem>`` (registered in ``sys.modules``
    before it runs: dataclasses look their module up while the file executes)."""
    name = f"pldistill_bench_{stem}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{stem}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
