"""Classical baseline in a reverberant room (image-source RIRs), input checks and the onset pool.

Plane waves, two-talker separation, matching and depth candidates on renders are tested in
test_classical_doa.py, test_classical_matching.py and test_candidates.py."""
import numpy as np
import pytest

from jaeger_ros.core import foa
from jaeger_ros.classical.candidates import boxes_from_depth
from jaeger_ros.classical.doa import estimate_doa
from jaeger_ros.core.geometry import Intrinsics, azel_from_direction, direction_from_azel, great_circle_deg, rotation_x, rotation_y
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


def test_onset_pool_holds_the_talker_through_windows_without_onsets_and_resets_on_a_scene_change():
    from jaeger_ros.classical.tracking import OnsetPool

    rng = np.random.default_rng(5)
    a, [truth_a] = _room_foa(rng, [([1.5, 0.5, 1.8], 120.0)])
    b, [truth_b] = _room_foa(rng, [([4.2, 0.4, 1.5], 210.0)])
    rate, window, hop = foa.SAMPLE_RATE, 2400, 1600  # 150 ms windows every 100 ms: some hold no onset
    pool = OnsetPool(memory_s=3.0)

    def errors(x, t0, truth):
        out = []
        for end in range(window, 2 * rate, hop):  # while the 2 s of syllables last
            est = pool.update(t0 + end / rate, x[:, end - window:end], rate)
            out.append(great_circle_deg(est.azimuth_deg, est.elevation_deg, *truth))
        return out

    err_a = errors(a, 0.0, truth_a)
    assert max(err_a[3:]) < 5.0, [round(e, 1) for e in err_a]  # after the first syllables, every frame points at A
    held = pool.update(1.95, None, rate)  # silence: the pooled direction is kept
    assert great_circle_deg(held.azimuth_deg, held.elevation_deg, *truth_a) < 5.0
    pool.reset(2.0)  # the depth image changed: a new scene
    err_b = errors(b, 2.0, truth_b)
    assert max(err_b[3:]) < 5.0, [round(e, 1) for e in err_b]  # A's votes are gone at once (not after memory_s)
    pool.reset(10.0)
    assert pool.update(10.1, None, rate) is None


def test_a_window_that_starts_mid_sound_does_not_vote_with_its_first_frames():
    """The window opens on the loud, decaying tail of a sound from A; a quieter sound from B
    starts halfway. Only B's start is an onset: the first frames must not count as onsets just
    because nothing precedes them inside the window (live windows start anywhere)."""
    rng = np.random.default_rng(1)
    t = np.arange(foa.SAMPLE_RATE // 2) / foa.SAMPLE_RATE
    tail = rng.standard_normal(t.size) * 0.03 * np.exp(-t / 0.04)
    burst = np.where(t >= 0.25, rng.standard_normal(t.size) * 0.005, 0.0)
    x = (foa.encode_gains(direction_from_azel(40.0, 0.0))[:, None] * tail[None]
         + foa.encode_gains(direction_from_azel(-30.0, 10.0))[:, None] * burst[None]).astype(np.float32)
    est = estimate_doa(x)
    assert great_circle_deg(est.azimuth_deg, est.elevation_deg, -30.0, 10.0) < 3.0


def test_the_node_estimator_keeps_its_candidates_through_sensor_noise_and_renews_them_on_a_new_scene():
    """Candidates are recomputed (and the DoA pool reset) only when the depth really changes:
    centimetre noise and flickering holes of a real sensor keep the scene."""
    from jaeger_ros.pipeline.frame import ClassicalEstimator
    from sim_bridge.live import LiveConfig, LiveWorld

    world = LiveWorld(LiveConfig(seed=0))
    first, second = world._build(0), world._build(2)
    est = ClassicalEstimator(candidates="depth")  # every blob: the count is the scene's
    rng = np.random.default_rng(0)
    rgb = np.zeros(first.depth.shape + (3,), np.uint8)
    boxes = est(rgb, first.depth, world.intrinsics, None, foa.SAMPLE_RATE, "", 0.0).boxes
    assert len(boxes) == len(first.boxes)
    noisy = first.depth + rng.normal(0.0, 0.01, first.depth.shape).astype(np.float32)
    noisy[rng.random(noisy.shape) < 0.05] = np.nan  # holes
    again = est(rgb, noisy, world.intrinsics, None, foa.SAMPLE_RATE, "", 0.1).boxes
    assert again is boxes  # the same list: not recomputed
    renewed = est(rgb, second.depth, world.intrinsics, None, foa.SAMPLE_RATE, "", 0.2).boxes
    assert renewed is not boxes and len(renewed) == len(second.boxes)


def test_classified_candidates_are_the_rendered_loudspeakers():
    """A procedural scene rendered in RGB-D: with the crop classifier every true loudspeaker
    (the scene's boxes, not the estimator's) is found as a "loudspeaker" box with its score,
    and nothing the classifier dropped is published; the unclassified blobs say "unknown"."""
    from jaeger_ros.core.geometry import box_iou_3d
    from jaeger_ros.detectors.loudspeaker import CHECKPOINT, THRESHOLD
    from jaeger_ros.pipeline.frame import ClassicalEstimator
    from sim_bridge.live import LiveConfig, LiveWorld

    assert CHECKPOINT.is_file()
    world = LiveWorld(LiveConfig(seed=0))
    for k in (0, 2):
        scene = world._build(k)
        est = ClassicalEstimator(candidates="classified")
        assert est.candidates == "classified"
        out = est(scene.rgb, scene.depth, world.intrinsics, None, foa.SAMPLE_RATE, "", 0.0)
        assert out.categories == ["loudspeaker"] * len(out.boxes)
        assert all(THRESHOLD <= s <= 1.0 for s in out.scores)
        for truth in scene.boxes:
            assert max(box_iou_3d(truth, b) for b in out.boxes) > 0.25
        blobs = ClassicalEstimator(candidates="depth")(scene.rgb, scene.depth, world.intrinsics, None,
                                                       foa.SAMPLE_RATE, "", 0.0)
        assert set(blobs.categories) == {"unknown"} and len(blobs.boxes) >= len(out.boxes)


def test_candidates_choice_is_checked():
    from jaeger_ros.pipeline.frame import ClassicalEstimator

    with pytest.raises(ValueError, match="candidates must be one of"):
        ClassicalEstimator(candidates="blobs")


def test_without_the_classifier_checkpoint_the_candidates_are_depth_blobs_with_one_warning(tmp_path, monkeypatch, caplog):
    """A checkout without the checkpoint (the file really missing: the default path points
    elsewhere) still gives candidates: the unclassified blobs, said once in the log."""
    import logging

    from jaeger_ros.detectors import loudspeaker
    from jaeger_ros.pipeline.frame import ClassicalEstimator

    monkeypatch.setattr(loudspeaker.LoudspeakerClassifier.__init__, "__defaults__", (tmp_path / "missing.pt",))
    with caplog.at_level(logging.WARNING, logger="jaeger_ros.pipeline.frame"):
        est = ClassicalEstimator(candidates="classified")
    assert est.candidates == "depth"
    assert len(caplog.records) == 1 and "missing.pt" in caplog.records[0].getMessage()


def test_detectors_candidates_find_the_person_in_a_photo():
    """candidates "detectors": the astronaut photo (scikit-image) over a hand-made depth image
    (her at 1.5 m, a wall at 4 m, no floor: no blobs) gives one "person" box at her depth."""
    from skimage import data

    from jaeger_ros.pipeline.frame import ClassicalEstimator

    intr = Intrinsics.from_hfov(512, 512, 60.0)
    depth = np.full((512, 512), 4.0, np.float32)
    depth[10:, 30:360] = 1.5
    out = ClassicalEstimator(candidates="detectors")(data.astronaut(), depth, intr, None, foa.SAMPLE_RATE, "", 0.0)
    assert out.categories == ["person"] and 0.0 < out.scores[0] <= 1.0
    assert out.boxes[0].max[2] == pytest.approx(-1.5, abs=0.02)
