"""Path helpers shared by the tabs: the one rule that an original photo is never written to."""

from __future__ import annotations

from engine.io.durable import same_file  # the engine's writers check the same rule

__all__ = ["same_file"]
