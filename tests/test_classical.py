"""Classical baseline in a reverberant room (image-source RIRs), input checks and the DoA tracker.

Plane waves, two-talker separation, matching and depth candidates on renders are tested in
test_classical_doa.py, test_classical_matching.py and test_candidates.py."""
import numpy as np
import pytest

from jaeger_ros import foa
from jaeger_ros.classical.candidates import boxes_from_depth
from jaeger_ros.classical.doa import estimate_doa
from jaeger_ros.geometry import Intrinsics, azel_from_direction, great_circle_deg, rotation_x, rotation_y
from sim_bridge.acoustics import convolve_foa, foa_rir, mix_sources
from sim_bridge.room import Room


def _speech_like(rng: np.random.Generator, seconds: float = 2.0, f0: float = 120.0,
                 syllable_hz: float = 3.0) -> np.ndarray:
    """Bursts of harmonic sound with silent gaps (syllables), so onsets exist as in speech."""
    t = np.arange(int(seconds * foa.SAMPLE_RATE)) / foa.SAMPLE_RATE
    tone = sum(np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6.28)) / k for k in range(1, 25))
    envelope = (np.sin(2 * np.pi * syllable_hz * t) > 0.2).astype(float)
    return (tone * envelope + 0.05 * rng.standard_normal(t.size) * envelope).astype(np.float32)


def _room_foa(rng, sources, yaw=20.0, pitch=-8.0):
    room = Room((6.0, 2.8, 5.0), (0.15, 0.15, 0.2, 0.3, 0.15, 0.15))  # RT60 ~0.6 s: DRR < 0 dB at 3 m
    receiver = np.array([3.0, 1.6, 4.2])
    rot = rotation_y(yaw) @ rotation_x(pitch)
    wet, truth = [], []
    for position, f0 in sources:
        rir = foa_rir(room, np.asarray(position), receiver, rot, rng=rng)
        wet.append(convolve_foa(_speech_like(rng, f0=f0), rir))
        truth.append(azel_from_direction(rot.T @ (np.asarray(position) - receiver)))
    return mix_sources(wet), truth


def test_reverberant_room_single_source_within_a_few_degrees():
    rng = np.random.default_rng(2)
    errors = []
    for position in ([1.5, 0.5, 1.8], [4.2, 0.4, 1.5], [3.0, 0.6, 1.2], [1.2, 1.0, 3.0]):
        x, [(az, el)] = _room_foa(rng, [(position, 120.0)])
        est = estimate_doa(x)
        errors.append(great_circle_deg(est.azimuth_deg, est.elevation_deg, az, el))
    assert max(errors) < 5.0, errors
    # the same signal without onset weighting is pulled off by reflections (why onsets are used)
    x, [(az, el)] = _room_foa(rng, [([1.5, 0.5, 1.8], 120.0)])
    naive = foa.direction_from_foa(x)
    assert great_circle_deg(*naive, az, el) > great_circle_deg(
        estimate_doa(x).azimuth_deg, estimate_doa(x).elevation_deg, az, el)


def test_bad_audio_is_rejected():
    with pytest.raises(ValueError):
        estimate_doa(np.zeros((3, 1000), np.float32))
    bad = np.ones((4, 4000), np.float32)
    bad[0, 5] = np.nan
    with pytest.raises(ValueError):
        estimate_doa(bad)
    with pytest.raises(ValueError):
        estimate_doa(np.zeros((4, 4000), np.float32))  # silence has no direction


def test_candidates_reject_bad_depth():
    intr = Intrinsics.from_hfov(64, 36)
    with pytest.raises(ValueError):
        boxes_from_depth(np.zeros((36, 64), np.float32), intr)
    with pytest.raises(ValueError):
        boxes_from_depth(np.zeros((0,), np.float32), intr)


def test_tracker_holds_a_confident_direction_through_poor_windows():
    from jaeger_ros.classical.doa import DoaEstimate
    from jaeger_ros.classical.tracking import DoaTracker

    good = DoaEstimate(10.0, -5.0, np.array([-0.17, -0.09, -0.98]), 0.95)
    poor = DoaEstimate(-70.0, 30.0, np.array([0.8, 0.5, -0.3]), 0.3)
    tracker = DoaTracker(min_confidence=0.8, hold_s=2.0)
    assert tracker.update(0.0, poor) is poor                  # nothing held yet
    assert tracker.update(1.0, good) is good
    held = tracker.update(2.0, poor)                          # a reverberant window after it
    assert held.azimuth_deg == 10.0 and held.confidence == pytest.approx(0.95 * 0.5)
    assert tracker.update(2.5, None).azimuth_deg == 10.0      # silence keeps the held direction
    assert tracker.update(3.5, poor) is poor                  # held too long: back to the window
    tracker.reset()
    assert tracker.update(3.6, None) is None
