"""pldistill: PL-Distill for speech emotion recognition, and the sweeper that tunes it on Ray.

Importing the package is cheap: torch, transformers and ray load only in the modules that need them.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
