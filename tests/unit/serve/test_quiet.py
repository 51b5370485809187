"""``quiet_hf``: export and predict print their own lines only; the libraries' switches are put back after."""

from __future__ import annotations

import warnings

import pytest


def test_quiet_hf_silences_bars_logs_and_future_warnings_then_restores(recwarn: pytest.WarningsRecorder) -> None:
    import huggingface_hub.utils as hub_utils
    from transformers.utils import logging as hf_logging

    from pldistill.serve._quiet import quiet_hf

    hf_logging.enable_progress_bar()
    hub_utils.enable_progress_bars()
    verbosity = hf_logging.get_verbosity()
    with quiet_hf():
        assert not hf_logging.is_progress_bar_enabled() and hub_utils.are_progress_bars_disabled()
        assert hf_logging.get_verbosity() == hf_logging.ERROR
        warnings.warn_explicit("`x` is deprecated", FutureWarning, "modeling_x.py", 1, module="transformers.models.x")
        warnings.warn_explicit("ours", FutureWarning, "space.py", 1, module="pldistill.sweep.space")
    assert hf_logging.is_progress_bar_enabled() and not hub_utils.are_progress_bars_disabled()
    assert hf_logging.get_verbosity() == verbosity
    assert [str(w.message) for w in recwarn if w.category is FutureWarning] == ["ours"]  # ours still speak
