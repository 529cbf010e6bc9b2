"""The event loop's time each user's binary frames may take (issue 13, item 3).

A user's connections share one budget (:class:`FrameBudgets`, one per service process):
opening more connections, to one notebook or to several, does not give a flooding client
more of the loop. The budget is a token bucket of seconds: ``rate`` seconds a second,
after a burst of ``burst``; a frame that takes the user past it makes that connection
wait (before tornado reads its next frame) until the excess is paid back. See
``handlers/ws.py`` and docs/protocol.md, "Backpressure".
"""

from __future__ import annotations

import time

#: the event loop's time a user's binary frames may take: this many seconds a second...
FRAME_CPU_RATE = 0.25
#: ...after a burst of this many (a join of a large notebook fits in it). With a burst of
#: 1 s, a flood of 2 KB gap updates still gave the victim p99 62 ms; 14 ms with 0.25 s
FRAME_CPU_BURST = 0.25
#: users' budgets kept before those that are full again are forgotten
SWEEP_AT = 1024


class FrameBudgets:
    """Per user: (seconds of loop time their frames may still take, when that was
    counted). Only users whose budget is not full are kept, so the table holds the users
    sending frames now, not everyone who ever did."""

    def __init__(self, rate: float = FRAME_CPU_RATE, burst: float = FRAME_CPU_BURST) -> None:
        self.rate, self.burst = rate, burst
        self._left: dict[str, tuple[float, float]] = {}
        self._sweep_at = SWEEP_AT

    def __len__(self) -> int:
        return len(self._left)

    def _refilled(self, left: float, then: float, now: float) -> float:
        return min(self.burst, left + (now - then) * self.rate)

    def charge(self, user: str, spent: float) -> float:
        """Count ``spent`` seconds against ``user``'s budget; return how long the
        connection that spent them must wait before its next frame (0: none)."""
        now = time.monotonic()
        left, then = self._left.get(user, (self.burst, now))
        left = self._refilled(left, then, now) - spent
        if left >= self.burst:
            self._left.pop(user, None)
        else:
            self._left[user] = (left, now)
            if len(self._left) > self._sweep_at:
                self._sweep(now)
        return -left / self.rate if left < 0 else 0.0

    def _sweep(self, now: float) -> None:
        full = [u for u, (left, then) in self._left.items() if self._refilled(left, then, now) >= self.burst]
        for user in full:
            del self._left[user]
        self._sweep_at = max(SWEEP_AT, 2 * len(self._left))
