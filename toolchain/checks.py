"""One named check, as every report records it (parity, the plugin check)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass
class Check:
    """``passed``: True or False, or None when the check was skipped (``detail`` says why); ``value`` is
    what was measured and ``limit`` what it was held to, where a number says it."""

    name: str
    passed: bool | None
    value: float | None = None
    limit: float | None = None
    detail: str = ""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
