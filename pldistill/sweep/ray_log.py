"""Under ``--quiet``, what Ray logs while a sweep runs (Tune's tables and status, each failed trial's
traceback) goes to the sweep's own log file, ``<results>/<sweep>/ray.log``, instead of the terminal;
a one-line error that ends the sweep names that file."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["RAY_LOG", "ray_logs_to"]

RAY_LOG = "ray.log"


@contextmanager
def ray_logs_to(path: Path) -> Iterator[Path]:
    """Send the ``ray`` loggers (Tune's included: they propagate to it) to the file ``path`` for the
    block, and only there; the handlers Ray installed at import are put back after it."""
    import ray  # noqa: F401  (Ray configures its loggers on import: replace them after that, not before)

    from pldistill._fs import private_dirs

    private_dirs(path.parent)
    logger = logging.getLogger("ray")
    saved = (list(logger.handlers), logger.propagate)
    # delay: the file is opened at Ray's first line, so a launch refused before Ray starts leaves none
    handler = logging.FileHandler(path, encoding="utf-8", delay=True)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger.handlers, logger.propagate = [handler], False
    try:
        yield path
    finally:
        logger.handlers, logger.propagate = saved
        handler.close()
