"""A clock a test moves by hand, injected where the code takes ``clock: Clock``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass
class MovingClock:
    now: datetime

    def __call__(self) -> datetime:
        return self.now
