"""Holding a direction of arrival over time, so that one confident estimate outlives the
unreliable windows that follow it.

Indoors, a window that starts mid-utterance is dominated by reverberation and its DoA is
poor (and says so by a low confidence); the clean onset of an utterance gives a confident
DoA. The tracker keeps the last confident estimate for `hold_s` seconds, decaying its
confidence linearly, and replaces it whenever a new confident estimate arrives.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from jaeger_ros.classical.doa import DoaEstimate


@dataclass
class DoaTracker:
    min_confidence: float = 0.8
    hold_s: float = 2.0
    _held: DoaEstimate | None = None
    _held_at: float = float("-inf")

    def update(self, stamp: float, estimate: DoaEstimate | None) -> DoaEstimate | None:
        """The estimate to use at `stamp` (seconds), given this window's own (or None: silence)."""
        if estimate is not None and estimate.confidence >= self.min_confidence:
            self._held, self._held_at = estimate, stamp
            return estimate
        age = stamp - self._held_at
        if self._held is not None and 0.0 <= age <= self.hold_s:
            held = replace(self._held, confidence=self._held.confidence * (1.0 - age / self.hold_s))
            if estimate is None or held.confidence >= estimate.confidence:
                return held
        return estimate

    def reset(self) -> None:
        self._held, self._held_at = None, float("-inf")
