"""Approximate-time matching (queue/slop as message_filters) and the FOA ring buffer."""
import numpy as np
import pytest

from jaeger_ros.core.audio_buffer import FoaRingBuffer
from jaeger_ros.core.sync import ApproximateTimeMatcher


def test_matches_within_slop_only():
    m = ApproximateTimeMatcher(3, queue_size=5, slop=0.02)
    assert m.add(0, 1.000, "rgb") is None
    assert m.add(1, 1.015, "depth") is None
    assert m.add(2, 1.030, "info") is None  # 1.030 - 1.000 > slop: no set
    assert m.add(0, 1.025, "rgb2") == ("rgb2", "depth", "info")
    # matched messages leave their queues; the unmatched rgb stays
    assert list(m.queues[0]) == [1.000] and m.queues[1] == {} and m.queues[2] == {}


def test_prefers_the_closest_candidates():
    m = ApproximateTimeMatcher(2, queue_size=10, slop=0.05)
    for t in (0.96, 0.98, 1.01, 1.04):
        m.add(1, t, f"d{t}")
    assert m.add(0, 1.0, "rgb") == ("rgb", "d1.01")


def test_queue_size_drops_the_oldest():
    m = ApproximateTimeMatcher(2, queue_size=2, slop=0.001)
    for t in (1.0, 2.0, 3.0):
        assert m.add(0, t, t) is None
    assert sorted(m.queues[0]) == [2.0, 3.0] and m.dropped[0] == 1
    assert m.add(1, 1.0, "late") is None  # its partner was pushed out
    assert m.add(1, 2.0, "ok") == (2.0, "ok")


def test_slop_zero_needs_identical_stamps_and_bad_settings_raise():
    m = ApproximateTimeMatcher(2, queue_size=3, slop=0.0)
    m.add(0, 1.0, "a")
    assert m.add(1, 1.0 + 1e-6, "b") is None
    assert m.add(1, 1.0, "c") == ("a", "c")
    with pytest.raises(ValueError):
        ApproximateTimeMatcher(2, queue_size=0, slop=0.1)
    with pytest.raises(ValueError):
        ApproximateTimeMatcher(2, queue_size=1, slop=-1)


def ramp(start, n):
    return np.tile(np.arange(start, start + n, dtype=np.float32), (4, 1))


def test_ring_buffer_window_ends_at_the_requested_time():
    buf = FoaRingBuffer(sample_rate=1000, capacity_s=1.0)
    t0 = 100.0
    for k in range(5):  # 5 chunks of 100 samples, stamped at their first sample
        buf.push(t0 + k * 0.1, ramp(k * 100, 100))
    assert buf.end_time == pytest.approx(100.5)
    w = buf.window(100.35, 0.2)
    np.testing.assert_array_equal(w[0], np.arange(150, 350))
    assert buf.window(100.51, 0.2) is None  # not arrived yet
    assert buf.window(100.1, 0.2) is None  # starts before the stream


def test_ring_buffer_wraps_and_forgets_old_audio():
    buf = FoaRingBuffer(sample_rate=1000, capacity_s=0.25)
    for k in range(10):
        buf.push(k * 0.1, ramp(k * 100, 100))
    np.testing.assert_array_equal(buf.window(1.0, 0.25)[2], np.arange(750, 1000))
    assert buf.window(0.7, 0.2) is None  # overwritten
    assert buf.start_time == pytest.approx(0.75)


def test_ring_buffer_absorbs_jitter_and_counts_gaps_and_overlaps():
    buf = FoaRingBuffer(sample_rate=1000, capacity_s=2.0, tolerance_s=0.002)
    buf.push(0.0, ramp(0, 100))
    buf.push(0.1015, ramp(100, 100))  # 1.5 samples late: jitter, contiguous
    assert buf.stats.gaps == 0 and buf.end_time == pytest.approx(0.2)
    buf.push(0.25, ramp(250, 100))  # 50 samples missing -> zero-filled gap
    assert buf.stats.gaps == 1 and buf.stats.gap_samples == 50
    w = buf.window(0.35, 0.15)[0]
    np.testing.assert_array_equal(w[:50], 0)
    np.testing.assert_array_equal(w[50:], np.arange(250, 350))
    buf.push(0.3, ramp(300, 100))  # half of it already buffered
    assert buf.stats.overlaps == 1 and buf.stats.overlap_samples == 50
    np.testing.assert_array_equal(buf.window(0.4, 0.1)[0], np.arange(300, 400))
    buf.push(10.0, ramp(0, 100))  # far beyond capacity: the stream restarts
    assert buf.end_time == pytest.approx(10.1) and buf.window(0.4, 0.1) is None


def test_ring_buffer_rejects_bad_chunks():
    buf = FoaRingBuffer(sample_rate=1000, capacity_s=1.0)
    with pytest.raises(ValueError, match="shape"):
        buf.push(0.0, np.zeros((3, 10)))
    bad = np.zeros((4, 10))
    bad[1, 3] = np.inf
    with pytest.raises(ValueError, match="NaN"):
        buf.push(0.0, bad)
    assert buf.end_time is None
