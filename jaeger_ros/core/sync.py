"""Approximate-time synchronisation of stamped topics (RGB, depth, camera_info).

Why our own: message_filters is not installable from a registry here. Where it is importable
(a ROS distribution), `subscribe_synchronized` uses message_filters.ApproximateTimeSynchronizer;
otherwise `ApproximateTimeMatcher` reproduces the semantics of its Python implementation:

- every input keeps at most `queue_size` messages (keyed by stamp; the oldest is dropped);
- when a message arrives, a set is emitted if every other input holds a message with
  |stamp - new stamp| <= slop and the whole set spans at most `slop` seconds; candidates
  closest to the new stamp are tried first;
- the emitted messages are removed from their queues (older ones stay until pushed out).

Beyond message_filters, the queues are also bounded by TIME when the caller gives the clock
(`now`): a message older than `max_age_s` can never be paired with a fresh one and is expired,
so a burst of badly stamped messages cannot hold a queue (a count alone evicts the oldest, i.e.
the real messages). Messages stamped ahead of the clock are the caller's to refuse: the node
does so before they reach any synchroniser (see jaeger_node).
"""
from __future__ import annotations

import itertools
from typing import Any, Callable, Sequence

try:
    import message_filters as _message_filters
except ImportError:  # the usual case here: no ROS distribution
    _message_filters = None


class ApproximateTimeMatcher:
    """ROS-free approximate-time matcher over `n_inputs` streams (stamps in seconds)."""

    def __init__(self, n_inputs: int, queue_size: int, slop: float, max_age_s: float | None = None) -> None:
        if n_inputs < 1:
            raise ValueError(f"n_inputs must be >= 1, got {n_inputs}")
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        if slop < 0:
            raise ValueError(f"slop must be >= 0 seconds, got {slop}")
        if max_age_s is not None and max_age_s <= slop:
            raise ValueError(f"max_age_s must exceed slop ({slop} s), got {max_age_s}")
        self.queue_size, self.slop, self.max_age_s = int(queue_size), float(slop), max_age_s
        self.queues: list[dict[float, Any]] = [{} for _ in range(n_inputs)]
        self.dropped = [0] * n_inputs
        """Messages pushed out of each queue (by count or age) without being matched."""

    def expire(self, now: float) -> None:
        """Forget the messages stamped more than max_age_s before `now` (counted as dropped)."""
        if self.max_age_s is None:
            return
        for i, queue in enumerate(self.queues):
            for s in [s for s in queue if s < now - self.max_age_s]:
                del queue[s]
                self.dropped[i] += 1

    def add(self, index: int, stamp: float, msg: Any, now: float | None = None) -> tuple[Any, ...] | None:
        """Queue `msg` on input `index`; return the matched set (input order) or None. With
        `now` (the clock, s) the queues are first cleared of messages older than max_age_s."""
        if now is not None:
            self.expire(now)
        queue = self.queues[index]
        queue[stamp] = msg
        while len(queue) > self.queue_size:
            del queue[min(queue)]
            self.dropped[index] += 1
        candidates = []
        for i, other in enumerate(self.queues):
            if i == index:
                continue
            near = sorted((s for s in other if abs(s - stamp) <= self.slop), key=lambda s: abs(s - stamp))
            if not near:
                return None
            candidates.append(near)
        for combo in itertools.product(*candidates):
            stamps = list(combo)
            stamps.insert(index, stamp)
            if max(stamps) - min(stamps) <= self.slop:
                matched = tuple(q.pop(s) for q, s in zip(self.queues, stamps))
                return matched
        return None


def _stamp_seconds(msg: Any) -> float:
    stamp = msg.header.stamp
    return stamp.sec + stamp.nanosec * 1e-9


def subscribe_synchronized(node: Any, inputs: Sequence[tuple[type, str]], qos: Any, queue_size: int,
                           slop: float, callback: Callable[..., None], clock: Callable[[], float] | None = None,
                           max_age_s: float | None = None) -> list[Any]:
    """Subscribe `node` to (msg_type, topic) inputs and call `callback(*msgs)` for each
    approximately synchronised set. Returns the subscription objects (keep them alive); without
    message_filters the last one is the ApproximateTimeMatcher, whose queues are bounded by
    `max_age_s` against `clock()` (seconds) when both are given."""
    if _message_filters is not None:  # pragma: no cover - needs a ROS distribution
        subs = [_message_filters.Subscriber(node, t, topic, qos_profile=qos) for t, topic in inputs]
        sync = _message_filters.ApproximateTimeSynchronizer(subs, queue_size, slop)
        sync.registerCallback(callback)
        return [*subs, sync]
    matcher = ApproximateTimeMatcher(len(inputs), queue_size, slop, max_age_s if clock is not None else None)

    def make_cb(i: int) -> Callable[[Any], None]:
        def cb(msg: Any) -> None:
            matched = matcher.add(i, _stamp_seconds(msg), msg, clock() if clock is not None else None)
            if matched is not None:
                callback(*matched)
        return cb

    subs = [node.create_subscription(t, topic, make_cb(i), qos) for i, (t, topic) in enumerate(inputs)]
    return [*subs, matcher]
