"""A ring buffer of streamed FOA audio addressed by capture time.

Why: images and audio arrive on separate topics at different rates; the estimator needs the
audio window that ENDS at an image's stamp. Chunks are stamped at their first sample, so the
buffer keeps an absolute sample index (anchored at the first chunk) and places each chunk by
its stamp. Stamp jitter within `tolerance_s` (a driver's clock is good to a millisecond or
two, not to a sample) is absorbed: the chunk is taken as contiguous. A larger jump forward is
a gap: zero-filled so the ring stays aligned, but MARKED invalid, so estimators can leave the
gap and its edges out (a zero stretch followed by speech looks like an onset). A jump backward
is an overlap (the already-buffered part of the chunk is discarded). A jump of more than
`restart_s` backward, or beyond the capacity forward, is a new stream (sensor restart, clock
jump, replayed bag): the buffer restarts at the new stamp. Everything is counted in `stats`.
ROS-free.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class BufferStats:
    chunks: int = 0
    gaps: int = 0
    gap_samples: int = 0
    overlaps: int = 0
    overlap_samples: int = 0
    restarts: int = 0
    """Streams begun again after a jump (not counted as gaps or overlaps)."""
    last_jump_s: float = 0.0
    """The stamp jump of the most recent gap, overlap or restart (s, + forward)."""


class FoaRingBuffer:
    """(channels, capacity) float32 ring of the most recent `capacity_s` seconds of audio, with a
    validity flag per sample (False where a gap was filled)."""

    def __init__(self, sample_rate: int, capacity_s: float, channels: int = 4, tolerance_s: float = 0.002,
                 restart_s: float = 1.0) -> None:
        if sample_rate <= 0 or capacity_s <= 0 or channels <= 0 or tolerance_s < 0 or restart_s <= tolerance_s:
            raise ValueError(f"invalid ring buffer settings: rate {sample_rate}, capacity {capacity_s} s, "
                             f"channels {channels}, tolerance {tolerance_s} s, restart {restart_s} s")
        self.sample_rate, self.channels = int(sample_rate), int(channels)
        self.capacity = int(np.ceil(capacity_s * sample_rate))
        self.tolerance = int(round(tolerance_s * sample_rate))
        """Stamp jitter absorbed, in samples."""
        self.restart = int(round(restart_s * sample_rate))
        self._ring = np.zeros((channels, self.capacity), dtype=np.float32)
        self._valid = np.zeros(self.capacity, dtype=bool)
        self._t0: float | None = None  # capture time of absolute sample 0
        self._end = 0  # absolute index one past the newest sample
        self.stats = BufferStats()

    @property
    def start_time(self) -> float | None:
        """Capture time of the oldest sample still held (None before the first chunk)."""
        if self._t0 is None:
            return None
        return self._t0 + max(0, self._end - self.capacity) / self.sample_rate

    @property
    def end_time(self) -> float | None:
        """Capture time just after the newest sample (None before the first chunk)."""
        return None if self._t0 is None else self._t0 + self._end / self.sample_rate

    @property
    def gap_ms(self) -> float:
        """Total duration of the gaps so far, in milliseconds."""
        return 1000.0 * self.stats.gap_samples / self.sample_rate

    def _start_stream(self, start_time: float) -> None:
        self._t0, self._end = float(start_time), 0
        self._ring[:] = 0.0
        self._valid[:] = False

    def _write(self, start: int, samples: np.ndarray, valid: bool) -> None:
        n = samples.shape[1]
        if n >= self.capacity:
            samples, start, n = samples[:, -self.capacity:], start + n - self.capacity, self.capacity
        idx = (start + np.arange(n)) % self.capacity
        self._ring[:, idx] = samples
        self._valid[idx] = valid

    def push(self, start_time: float, samples: np.ndarray) -> None:
        """Add a (channels, N) chunk whose first sample was captured at `start_time` seconds."""
        a = np.asarray(samples, dtype=np.float32)
        if a.ndim != 2 or a.shape[0] != self.channels or a.shape[1] == 0:
            raise ValueError(f"chunk must have shape ({self.channels}, N>0), got {a.shape}")
        if not np.all(np.isfinite(a)):
            raise ValueError("chunk contains NaN or infinite samples")
        if self._t0 is None:
            self._start_stream(start_time)
        start = int(round((start_time - self._t0) * self.sample_rate))
        jump = start - self._end
        if abs(jump) <= self.tolerance:
            start = self._end
        elif jump >= self.capacity or jump < -self.restart:  # nothing worth keeping: a new stream
            self.stats.restarts += 1
            self.stats.last_jump_s = jump / self.sample_rate
            self._start_stream(start_time)
            start = 0
        elif jump > 0:
            self.stats.gaps += 1
            self.stats.gap_samples += jump
            self.stats.last_jump_s = jump / self.sample_rate
            self._write(self._end, np.zeros((self.channels, jump), dtype=np.float32), valid=False)
            self._end = start
        else:
            self.stats.overlaps += 1
            self.stats.last_jump_s = jump / self.sample_rate
            skip = min(-jump, a.shape[1])
            self.stats.overlap_samples += skip
            a, start = a[:, skip:], start + skip
            if a.shape[1] == 0:
                self.stats.chunks += 1
                return
        self._write(start, a, valid=True)
        self._end = start + a.shape[1]
        self.stats.chunks += 1

    def _span(self, end_time: float, duration_s: float) -> np.ndarray | None:
        """Ring indices of the window, or None when it is not (or no longer) all held."""
        if self._t0 is None:
            return None
        n = int(round(duration_s * self.sample_rate))
        if n <= 0 or n > self.capacity:
            raise ValueError(f"window of {duration_s} s must be positive and fit the buffer "
                             f"({self.capacity / self.sample_rate} s)")
        end = int(round((end_time - self._t0) * self.sample_rate))
        start = end - n
        if end > self._end or start < max(0, self._end - self.capacity):
            return None
        return (start + np.arange(n)) % self.capacity

    def window(self, end_time: float, duration_s: float) -> np.ndarray | None:
        """The (channels, round(duration_s * rate)) samples ending at `end_time` (exclusive), or
        None when they have not all arrived yet or have already been overwritten."""
        idx = self._span(end_time, duration_s)
        return None if idx is None else self._ring[:, idx]

    def window_with_mask(self, end_time: float, duration_s: float) -> tuple[np.ndarray, np.ndarray] | None:
        """`window` plus its per-sample validity (False inside filled gaps)."""
        idx = self._span(end_time, duration_s)
        return None if idx is None else (self._ring[:, idx], self._valid[idx])
