"""Under ``--quiet`` Ray's messages (a failed trial's traceback, Tune's status) go to the sweep's log
file only, and the terminal's handlers come back afterwards."""

from __future__ import annotations

import logging

from pldistill.sweep.ray_log import ray_logs_to


def test_ray_messages_go_to_the_file_only(tmp_path, capfd) -> None:
    import ray  # noqa: F401  (installs its terminal handler)

    ray_logger = logging.getLogger("ray")
    before = (list(ray_logger.handlers), ray_logger.propagate)
    tune = logging.getLogger("ray.tune.execution.tune_controller")
    log = tmp_path / "results" / "sw" / "ray.log"
    with ray_logs_to(log):
        try:
            raise OSError(28, "No space left on device")
        except OSError:
            tune.error("Trial task failed for trial t1", exc_info=True)
        logging.getLogger("ray.tune").warning("== Status ==")
    text = log.read_text()
    assert "Trial task failed for trial t1" in text and "Traceback" in text and "== Status ==" in text
    out, err = capfd.readouterr()
    assert "Trial task failed" not in out + err and "Traceback" not in out + err
    assert (list(ray_logger.handlers), ray_logger.propagate) == before
