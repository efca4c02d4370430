"""When to check a render's status next.

A render takes about 140 s (the seed pages), so checking every 2 s as Segmind's own SDK example
does spends ~70 requests of a 5-50 requests-per-minute key per job. This policy waits through the
part of the render that almost never completes, checks densely where completion is likely, backs
off beyond it, and never waits past the deadline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

PRIOR_RENDER_SECONDS = 140.0


@dataclass(frozen=True)
class PollPolicy:
    expected_render_seconds: float = PRIOR_RENDER_SECONDS
    first_check_fraction: float = 0.75
    dense_interval_seconds: float = 8.0
    dense_until_fraction: float = 1.6
    backoff_factor: float = 1.5
    max_interval_seconds: float = 60.0

    def first_wait(self) -> int:
        return max(1, round(self.expected_render_seconds * self.first_check_fraction))

    def next_wait(self, submitted_at: datetime, now: datetime, deadline_at: datetime, previous_wait: int) -> int:
        elapsed = (now - submitted_at).total_seconds()
        if elapsed < self.expected_render_seconds * self.first_check_fraction:
            wait = self.expected_render_seconds * self.first_check_fraction - elapsed
        elif elapsed < self.expected_render_seconds * self.dense_until_fraction:
            wait = self.dense_interval_seconds
        else:
            wait = min(
                self.max_interval_seconds,
                max(self.dense_interval_seconds, previous_wait * self.backoff_factor),
            )
        remaining = (deadline_at - now).total_seconds()
        # One last check right at the deadline, never beyond it (whole seconds, rounded down).
        return max(1, math.floor(min(wait, max(remaining, 1))))
