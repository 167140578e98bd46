"""The noise-aware DoA (classical/doa_robust.py) and its stream pool (tracking.RobustPool) on real
acoustics: espeak-ng speech through image-source rooms, spatially diffuse noise from
sim_bridge.conditions, the expected direction from the room geometry."""
import numpy as np
import pytest

from jaeger_ros.classical import doa_robust, tracking
from jaeger_ros.core import foa
from jaeger_ros.core.geometry import azel_from_direction, great_circle_deg, rotation_x, rotation_y
from sim_bridge import conditions as sensing
from sim_bridge.acoustics import convolve_foa, foa_rir
from sim_bridge.room import Room
from sim_bridge.speech import SpeechBank

FS = foa.SAMPLE_RATE


def _diffuse(rng: np.random.Generator, n: int, count: int = 300) -> np.ndarray:
    """Independent white noises from directions spread over the sphere (an ideal diffuse field)."""
    dirs = rng.standard_normal((count, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    return foa.encode_gains(dirs).T @ rng.standard_normal((count, n)) / np.sqrt(count)


def _room_speech_in_noise(seed: int, position: list[float], snr_db: float) -> tuple[np.ndarray, tuple[float, float]]:
    """espeak-ng speech from `position` in a reverberant room (RT60 ~0.5 s), received by a
    camera-frame microphone, plus diffuse pink noise at `snr_db` (speech-active W power over noise
    W power, the dataset's definition); and the direction expected from the geometry."""
    rng = np.random.default_rng(seed)
    room = Room((6.0, 2.8, 5.0), (0.2, 0.2, 0.2, 0.35, 0.2, 0.2))
    receiver = np.array([3.0, 1.4, 4.2])
    rot = rotation_y(15.0) @ rotation_x(-5.0)
    bank = SpeechBank("test", seed)
    dry = np.concatenate([bank.utterance("male", rng), np.zeros(FS // 4), bank.utterance("male", rng)])
    wet = convolve_foa(dry, foa_rir(room, np.asarray(position), receiver, rot, rng=rng))
    noise = sensing.diffuse_noise("pink", wet.shape[1], rng)
    gain = np.sqrt(sensing.active_power(wet[0]) / np.mean(noise[0] ** 2) * 10.0 ** (-snr_db / 10.0))
    return wet + gain * noise, azel_from_direction(rot.T @ (np.asarray(position) - receiver))


@pytest.mark.parametrize("position", [[1.6, 1.1, 1.6], [4.6, 0.9, 1.9]])
def test_streamed_in_tenth_second_steps_the_pool_finds_a_talker_in_reverb_and_10_db_diffuse_noise(position):
    """The node's DoA path: 0.5 s windows ending every 0.1 s, each fed to the pool as it arrives.
    From 2 s of stream until the talk ends (the last window that still holds speech) every answer
    is within 5 degrees of the geometry's direction and their median within 3.5 (the floor
    reflection, 1-2 ms after the direct sound inside every 8 ms frame, pulls 1-3 degrees down),
    and at the end of the talk within 3 degrees. The measured limit behind the 3.5: over 24 other
    streams of this room (seeds 1-12) the median answer is 2.8 degrees without noise (elevation
    -2.2 on average: that reflection) and 4.6 at 10 dB, so 3 degrees at 10 dB holds for this
    seed's streams, not in general."""
    x, (az, el) = _room_speech_in_noise(11, position, 10.0)
    pool = tracking.RobustPool()
    window, step = FS // 2, FS // 10
    errors = []
    for end in range(window, x.shape[1] - window + 1, step):
        est = pool.update(end / FS, x[:, end - window:end], FS)
        if end >= 2 * FS and est is not None:
            errors.append(great_circle_deg(est.azimuth_deg, est.elevation_deg, az, el))
    assert len(errors) >= 10
    assert max(errors) < 5.0 and np.median(errors) < 3.5 and errors[-1] < 3.0, np.round(errors, 1)


def test_diffuse_field_bins_get_low_weight():
    """Directness (1 - diffuseness) is ~1 for a plane wave and low for a diffuse field of the same
    level; and a window of diffuse noise alone, with its noise floor tracked, casts (next to) no
    vote weight, while a plane wave at 10 dB over the same noise casts plenty."""
    rng = np.random.default_rng(3)
    n = FS
    source = foa.encode_gains(np.array([0.5, 0.2, -1.0]))[:, None] * rng.standard_normal(n)[None]
    diffuse = _diffuse(rng, n)
    plane = doa_robust.directness(doa_robust.spectra(source, FS), np.zeros(doa_robust.spectra(source, FS).energy.shape[0]))
    sp = doa_robust.spectra(diffuse, FS)
    spread = doa_robust.directness(sp, np.zeros(sp.energy.shape[0]))
    assert np.median(plane) > 0.95
    assert np.median(spread) < 0.5 and np.median(spread ** doa_robust.COHERENCE_POWER) < 0.01

    tracker = doa_robust.NoiseTracker()
    floor = tracker.update(0.0, doa_robust.spectra(diffuse, FS).energy)
    later = _diffuse(rng, n)  # fresh noise of the same field
    try:
        noise_weight = doa_robust.spectra_votes(doa_robust.spectra(later, FS), floor, min_votes=0).weights.sum()
    except ValueError:
        noise_weight = 0.0  # no bin passed at all
    bursts = np.repeat(rng.random(n // 800) < 0.5, 800) * rng.standard_normal(n)  # 50 ms on/off
    speech_like = foa.encode_gains(np.array([0.5, 0.2, -1.0]))[:, None] * bursts[None]
    speech_like *= np.sqrt(10.0 * np.mean(later[0] ** 2) / sensing.active_power(speech_like[0]))
    signal_weight = doa_robust.spectra_votes(doa_robust.spectra(speech_like + later, FS), floor,
                                             min_votes=0).weights.sum()
    assert noise_weight < 0.01 * signal_weight, (noise_weight, signal_weight)


def test_the_pool_follows_a_new_talker_within_two_seconds_and_keeps_the_old_one_until_then():
    """Smoothing that resets when the talker changes: a second talker 60 degrees away takes over
    the published direction within 2 s of starting (the 5 s pool alone would still hold the first
    one's votes then) and the first talker's answers were not disturbed before the change."""
    a, (az_a, el_a) = _room_speech_in_noise(21, [1.6, 1.1, 1.6], 20.0)
    b, (az_b, el_b) = _room_speech_in_noise(22, [4.6, 0.9, 1.9], 20.0)
    x = np.concatenate([a, b], axis=1)
    pool = tracking.RobustPool()
    window, step = FS // 2, FS // 10
    switch = a.shape[1] / FS
    before, after = [], []
    for end in range(window, x.shape[1] + 1, step):
        est = pool.update(end / FS, x[:, end - window:end], FS)
        t = end / FS
        if est is None:
            continue
        if switch - 1.0 < t < switch:
            before.append(great_circle_deg(est.azimuth_deg, est.elevation_deg, az_a, el_a))
        elif t > switch + 2.0:
            after.append(great_circle_deg(est.azimuth_deg, est.elevation_deg, az_b, el_b))
    assert great_circle_deg(az_a, el_a, az_b, el_b) > 50.0
    assert max(before) < 5.0 and max(after) < 10.0, (np.round(before, 1), np.round(after, 1))

    held = tracking.RobustPool(change_deg=180.0)  # the same pool without the talker-change reset
    for end in range(window, int((switch + 2.5) * FS), step):
        est = held.update(end / FS, x[:, end - window:end], FS)
    assert great_circle_deg(est.azimuth_deg, est.elevation_deg, az_b, el_b) > 10.0


def test_a_short_burst_from_elsewhere_then_silence_does_not_replace_the_talker():
    """The talker-change test counts only updates that bring new votes: a 0.3 s burst of another
    voice 60 degrees away (three updates of its own votes), then 2 s without speech, leaves the
    answer on the talker. Counting every update, the silent ones repeated the burst's verdict
    until the change was confirmed and the talker's votes were dropped (this stream: 63 degrees
    off; live mesh world: a reflection burst at the end of an utterance held the answer 100
    degrees off through the pause). A real new talker keeps bringing votes (the test above)."""
    a, (az_a, el_a) = _room_speech_in_noise(21, [1.6, 1.1, 1.6], 20.0)
    rng = np.random.default_rng(5)
    room = Room((6.0, 2.8, 5.0), (0.2, 0.2, 0.2, 0.35, 0.2, 0.2))
    receiver, rot = np.array([3.0, 1.4, 4.2]), rotation_y(15.0) @ rotation_x(-5.0)
    dry = SpeechBank("test", 22).utterance("female", rng)
    start = int(np.argmax(np.abs(dry) > 0.05 * np.abs(dry).max()))
    b = convolve_foa(dry[:start + int(0.3 * FS)], foa_rir(room, np.array([4.6, 0.9, 1.9]), receiver, rot, rng=rng))
    x = np.concatenate([a, b, np.zeros((4, 2 * FS))], axis=1)
    noise = sensing.diffuse_noise("pink", x.shape[1], rng)
    x = x + noise * np.sqrt(sensing.active_power(a[0]) / np.mean(noise[0] ** 2) * 1e-3)
    pool = tracking.RobustPool()
    for end in range(FS // 2, x.shape[1] + 1, FS // 10):
        est = pool.update(end / FS, x[:, end - FS // 2:end], FS)
    assert great_circle_deg(est.azimuth_deg, est.elevation_deg, az_a, el_a) < 5.0


def test_bad_audio_is_rejected():
    with pytest.raises(ValueError):
        doa_robust.estimate_doa(np.zeros((3, FS)))
    with pytest.raises(ValueError):
        doa_robust.estimate_doa(np.full((4, FS), np.nan))
    with pytest.raises(ValueError):
        doa_robust.estimate_by_gender(np.zeros((4, FS)), "child")


def test_a_level_step_is_not_a_speech_onset_for_the_robust_pool():
    """A +24 dB gain step mid-utterance (AGC, a driver's volume) lifts every bin at once; the
    robust pool's noise floor still holds the old level for seconds, so without doa's level-step
    test the step's frames (the reverberant field) would vote as direct sound. Real speech in a
    reverberant room, 30 dB diffuse-level noise, streamed as the node does."""
    from sim_bridge.speech import synthesize

    rng = np.random.default_rng(0)
    room = Room((6.0, 2.8, 5.0), (0.35, 0.35, 0.4, 0.5, 0.35, 0.35))
    receiver, source = np.array([3.0, 1.6, 4.2]), np.array([1.5, 0.5, 1.8])
    rot = rotation_y(20.0) @ rotation_x(-8.0)
    dry = np.concatenate([np.zeros(FS // 2, np.float32),
                          synthesize("seven robots listen to the people talking in the kitchen", "female")])
    x = convolve_foa(dry, foa_rir(room, source, receiver, rot, rng=rng))[:, :dry.size]
    noise = rng.standard_normal(x.shape) * np.sqrt(np.mean(x[0] ** 2) / 1e3)
    x = x + noise / np.array([[1.0], [3 ** 0.5], [3 ** 0.5], [3 ** 0.5]])
    truth = azel_from_direction(rot.T @ (source - receiver))
    for step_s in (1.05, 1.65, 2.05, 2.65):
        y, step_at = x.copy(), int(step_s * FS)
        y[:, step_at:] *= 16.0
        pool, errors = tracking.RobustPool(), []
        for end in range(FS // 2, y.shape[1], FS // 10):
            est = pool.update(end / FS, y[:, end - FS // 2:end], FS)
            if end > step_at and est is not None:
                errors.append(great_circle_deg(est.azimuth_deg, est.elevation_deg, *truth))
        assert np.median(errors) < 10.0, (step_s, np.round(errors, 1))


def test_flattened_weights_let_many_onsets_outvote_one_loud_reflection() -> None:
    """RobustPool's estimates weigh votes by weight ** WEIGHT_POWER: 100 quiet onset votes
    scattered 2 deg around the talker outvote one reflection bin 10x louder than all of them."""
    from jaeger_ros.classical import doa
    from jaeger_ros.classical.tracking import RobustPool

    rng = np.random.default_rng(4)
    talker = np.array([0.0, 0.0, 1.0])
    onsets = talker + rng.normal(0.0, np.radians(2.0), (100, 3))
    onsets /= np.linalg.norm(onsets, axis=1, keepdims=True)
    reflection = np.array([[0.0, np.sin(np.radians(60.0)), np.cos(np.radians(60.0))]])  # 60 deg off
    votes = doa.Votes(np.vstack([onsets, reflection]), np.r_[np.full(100, 1e-3), 1.0], np.zeros(101))
    raw = doa.estimate_from_votes(votes)
    flat = doa.estimate_from_votes(doa.flattened(votes, RobustPool.WEIGHT_POWER))
    assert np.degrees(np.arccos(np.clip(raw.direction @ reflection[0], -1, 1))) < 1.0
    assert np.degrees(np.arccos(np.clip(flat.direction @ talker, -1, 1))) < 1.5
    # the confidence stays on the raw weights' scale: the talker's votes carry 0.1 of 1.1
    assert doa.confidence_at(votes, flat.direction) == pytest.approx(0.1 / 1.1, abs=0.01)


@pytest.mark.parametrize("freq_hz", [500.0, 2000.0])
def test_tilt_weighs_each_vote_by_its_frequency_and_keeps_the_same_votes(freq_hz):
    """RobustPool's tilt: the same bins vote, each weighing (f / 1 kHz)^tilt times more. A tone
    burst at f (on an STFT bin) from one direction votes in f's bin and its leakage neighbours,
    symmetric around f, so its total weight grows by about f / 1 kHz at tilt 1 and (f / 1 kHz)^2
    at tilt 2 (within 10 %: the leakage is not quite symmetric in f^2)."""
    rng = np.random.default_rng(5)
    t = np.arange(FS // 2) / FS
    ramp = np.clip((t - 0.2) / 0.004, 0.0, 1.0)  # a 4 ms fade-in: an abrupt start would click in every bin
    burst = np.sin(0.5 * np.pi * ramp) ** 2 * np.sin(2 * np.pi * freq_hz * t)
    x = foa.encode_gains(np.array([0.6, 0.1, -0.8]))[:, None] * burst[None] + 1e-4 * rng.standard_normal((4, t.size))
    sp = doa_robust.spectra(x, FS)
    flat = doa_robust.spectra_votes(sp, min_votes=0)
    for tilt in (1.0, 2.0):
        tilted = doa_robust.spectra_votes(sp, min_votes=0, tilt=tilt)
        np.testing.assert_array_equal(tilted.directions, flat.directions)
        assert tilted.weights.sum() / flat.weights.sum() == pytest.approx((freq_hz / 1000.0) ** tilt, rel=0.1)
