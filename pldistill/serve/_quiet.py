"""Silence the Hugging Face libraries while ``export`` and ``predict`` run: their output is ours.

transformers and huggingface_hub draw progress bars while they read or write weights, and
transformers, peft and torch raise ``FutureWarning``s about their own coming changes; between
``predict``'s lines and after ``export``'s one line they are noise a user cannot act on. Silenced
at the source (the libraries' own switches, warnings filtered by category and module) and only
inside the block, then put back.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

__all__ = ["quiet_hf"]

#: Modules whose FutureWarnings and DeprecationWarnings are theirs to fix, not the user's.
_CHATTY = r"(transformers|peft|huggingface_hub|torch|torchaudio)(\.|$)"


@contextlib.contextmanager
def quiet_hf() -> Iterator[None]:
    """No progress bars, no info/warning logs from transformers, no future/deprecation warnings from
    the libraries it runs on, inside the block."""
    import huggingface_hub.utils as hub_utils
    from transformers.utils import logging as hf_logging

    bars, hub_bars = hf_logging.is_progress_bar_enabled(), not hub_utils.are_progress_bars_disabled()
    verbosity = hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hub_utils.disable_progress_bars()
    hf_logging.set_verbosity_error()
    try:
        with warnings.catch_warnings():
            for category in (FutureWarning, DeprecationWarning):
                warnings.filterwarnings("ignore", category=category, module=_CHATTY)
            yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
        if hub_bars:
            hub_utils.enable_progress_bars()
