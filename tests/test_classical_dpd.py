"""The pooled direct-path covariance DoA (classical/doa_dpd.py, "classical-audio-dpd"): on a
direct sound plus its floor reflection built from the geometry, on one loud burst and a diffuse
burst among many onsets (the flat seed), on pitch-labelled votes of two voices (the voice-contrast
seed), on real acoustics (image-source room, espeak-ng speech, diffuse noise), and its method
names. Expected directions come from the geometry, never from the estimators."""
import numpy as np
import pytest

from jaeger_ros.classical import doa, doa_dpd
from jaeger_ros.classical.method import ClassicalMethod
from jaeger_ros.core import foa
from jaeger_ros.core.geometry import azel_from_direction, direction_from_azel, great_circle_deg, rotation_x, rotation_y
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


def _direct_and_floor(el_direct: float, el_floor: float, gain: float, delay: int, snr_db: float,
                      seed: int = 5) -> np.ndarray:
    """50 ms noise bursts (speech-like on/off) from azimuth 30 deg at `el_direct`, plus the same
    signal `delay` samples later and `gain` weaker from `el_floor` at the same azimuth (a floor
    reflection: its image source lies straight below the source), plus diffuse noise."""
    rng = np.random.default_rng(seed)
    n = 4 * FS
    s = np.repeat(rng.random(n // 800) < 0.5, 800) * rng.standard_normal(n)
    x = (foa.encode_gains(direction_from_azel(30.0, el_direct))[:, None] * s[None]
         + gain * foa.encode_gains(direction_from_azel(30.0, el_floor))[:, None] * np.roll(s, delay)[None])
    noise = _diffuse(rng, n)
    return x + noise * np.sqrt(np.mean(x[0] ** 2) / np.mean(noise[0] ** 2) * 10.0 ** (-snr_db / 10.0))


@pytest.mark.parametrize("el_direct,el_floor", [(-10.0, -35.0), (-20.0, -45.0)])
def test_the_floor_reflection_pulls_intensity_down_and_the_two_wave_fit_removes_it(el_direct, el_floor):
    """A reflection 0.7 as strong, 1.5 ms late (inside every 8 ms frame), 25 degrees lower: the
    onset intensity votes land more than 2.5 degrees below the source, the pooled one-wave
    covariance less far, and the direct + floor two-wave fit within 1 degree (30 dB noise)."""
    x = _direct_and_floor(el_direct, el_floor, 0.7, 24, 30.0)
    onset = doa.estimate_doa(x)
    one = doa_dpd.estimate_doa(x)
    floor = doa_dpd.estimate_doa(x, model="floor")
    assert onset.elevation_deg < el_direct - 2.5
    assert el_direct - 2.5 < one.elevation_deg < el_direct + 0.5
    assert great_circle_deg(floor.azimuth_deg, floor.elevation_deg, 30.0, el_direct) < 1.0
    assert great_circle_deg(one.azimuth_deg, one.elevation_deg, 30.0, el_direct) < (
        great_circle_deg(onset.azimuth_deg, onset.elevation_deg, 30.0, el_direct))


@pytest.mark.parametrize("snr_db", [30.0, 10.0])
def test_the_leading_edge_cuts_the_floor_reflection_s_pull(snr_db):
    """The same direct sound and floor reflection (0.7 as strong, 1.5 ms late, 25 degrees lower):
    pooling the frame 1 ms before each detected onset, which holds less of the reflection, lands
    at most 0.6 times as far from the source as pooling the onset frames, and within 1.5 degrees."""
    x = _direct_and_floor(-10.0, -35.0, 0.7, 24, snr_db)
    onset = doa_dpd.estimate_doa(x, seeding="flat")
    edge = doa_dpd.estimate_doa(x, seeding="flat", lead="edge")
    err_onset = great_circle_deg(onset.azimuth_deg, onset.elevation_deg, 30.0, -10.0)
    err_edge = great_circle_deg(edge.azimuth_deg, edge.elevation_deg, 30.0, -10.0)
    assert err_onset > 1.2
    assert err_edge < min(0.6 * err_onset, 1.5)


def _scatter(rng: np.random.Generator, centre: np.ndarray, spread_deg: float, count: int) -> np.ndarray:
    """`count` unit vectors scattered about `centre` by ~spread_deg (Gaussian tangent offsets)."""
    v = centre + np.radians(spread_deg) * rng.standard_normal((count, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.mark.parametrize("tight", ["votes", "regions", "neither"])
def test_fusion_weighs_each_estimate_by_its_own_spread(tight):
    """Two estimates 6 degrees apart, the bin votes' mean and the pooled covariance's: the fused
    direction stays within 0.5 degree of the one whose 200 votes scatter 1 degree when the other's
    40 scatter 10 degrees, and lands between them (1.5-4.5 degrees from each) when both have 200
    votes scattering 3 degrees."""
    rng = np.random.default_rng(2)
    d_votes, d_pooled = direction_from_azel(0.0, 0.0), direction_from_azel(6.0, 0.0)
    spread = {"votes": (1.0, 10.0), "regions": (10.0, 1.0), "neither": (3.0, 3.0)}[tight]
    m, k = 40 if tight == "regions" else 200, 40 if tight == "votes" else 200
    votes = doa.Votes(_scatter(rng, d_votes, spread[0], m), np.ones(m), np.zeros(m))
    region_votes = doa.Votes(_scatter(rng, d_pooled, spread[1], k), np.ones(k), np.zeros(k))
    reg = doa_dpd.Regions(np.zeros((k, 4, 4)), np.ones(k), np.full(k, 4.0), region_votes)
    fused = doa_dpd._fused(votes, d_votes, doa_dpd.VOTE_RADIUS_DEG, reg, d_pooled, None)
    to_votes, to_pooled = (np.degrees(np.arccos(np.clip(fused @ d, -1.0, 1.0))) for d in (d_votes, d_pooled))
    if tight == "votes":
        assert to_votes < 0.5
    elif tight == "regions":
        assert to_pooled < 0.5
    else:
        assert 1.5 < to_votes < 4.5 and 1.5 < to_pooled < 4.5


def test_noise_is_averaged_before_the_direction_is_taken():
    """One plane wave in diffuse noise at 0 dB (speech-active power): the pooled covariance's
    direction is within 2 degrees of the source."""
    rng = np.random.default_rng(7)
    n = 4 * FS
    s = np.repeat(rng.random(n // 800) < 0.5, 800) * rng.standard_normal(n)
    x = foa.encode_gains(direction_from_azel(-50.0, 15.0))[:, None] * s[None]
    noise = _diffuse(rng, n)
    x = x + noise * np.sqrt(sensing.active_power(x[0]) / np.mean(noise[0] ** 2))
    est = doa_dpd.estimate_doa(x)
    assert great_circle_deg(est.azimuth_deg, est.elevation_deg, -50.0, 15.0) < 2.0


def _bursts_in_diffuse_noise(rng: np.random.Generator, snr_db: float = 10.0) -> np.ndarray:
    """4 s of 50 ms noise bursts (speech-like on/off) from azimuth 30, elevation -10 deg, in an
    ideal diffuse field `snr_db` under the bursts' active power."""
    n = 4 * FS
    s = np.repeat(rng.random(n // 800) < 0.5, 800) * rng.standard_normal(n)
    x = foa.encode_gains(direction_from_azel(30.0, -10.0))[:, None] * s[None]
    noise = _diffuse(rng, n)
    return x + noise * np.sqrt(sensing.active_power(x[0]) / np.mean(noise[0] ** 2) * 10.0 ** (-snr_db / 10.0))


@pytest.mark.parametrize("seed", [0, 1])
def test_one_loud_burst_does_not_outvote_many_onsets_in_the_flat_seed(seed):
    """~40 onsets from the source and ONE 50 ms burst 20 dB louder from elsewhere (a door, a
    reflection's flare): energy-weighted seeding (doa_robust's) follows the burst; the flat seed
    stays within 2 degrees of the source."""
    rng = np.random.default_rng(seed)
    x = _bursts_in_diffuse_noise(rng)
    burst = np.zeros(x.shape[1])
    burst[2 * FS + 123:2 * FS + 923] = 10.0 * rng.standard_normal(800)
    x = x + foa.encode_gains(direction_from_azel(-60.0, 5.0))[:, None] * burst[None]
    energy = doa_dpd.estimate_doa(x, seeding="robust")
    flat = doa_dpd.estimate_doa(x, seeding="flat")
    assert great_circle_deg(energy.azimuth_deg, energy.elevation_deg, -60.0, 5.0) < 2.0
    assert great_circle_deg(flat.azimuth_deg, flat.elevation_deg, 30.0, -10.0) < 2.0


def test_diffuse_field_bins_weigh_little_in_the_flat_seed():
    """A 200 ms diffuse burst 10 dB over the bursts' active power: its bins cast a few votes that
    carry under 1 % of the flat seed's weight, each below the source's median vote."""
    rng = np.random.default_rng(0)
    x = _bursts_in_diffuse_noise(rng)
    lo, hi = 2 * FS, 2 * FS + FS // 5
    burst = _diffuse(rng, x.shape[1]) * np.sqrt(10.0 * sensing.active_power(x[0]) / np.mean(_diffuse(rng, FS)[0] ** 2))
    burst[:, :lo] = 0.0
    burst[:, hi:] = 0.0
    votes = doa_dpd.flat_votes(x + burst)
    during = (votes.times >= lo / FS) & (votes.times <= hi / FS + 0.01)
    source = ~during & (votes.directions @ direction_from_azel(30.0, -10.0) >= np.cos(np.radians(10.0)))
    assert votes.weights[during].sum() < 0.01 * votes.weights.sum()
    assert np.all(votes.weights[during] < np.median(votes.weights[source]))
    est = doa_dpd.estimate_doa(x + burst, seeding="flat")
    assert great_circle_deg(est.azimuth_deg, est.elevation_deg, 30.0, -10.0) < 2.0


def test_the_voice_contrast_seed_cancels_a_male_voice_s_octave_errors(monkeypatch):
    """Votes labelled by pitch: 60 male and 30 mislabelled "female" votes (octave errors) at the
    male talker, 20 true female votes at the female talker 25 degrees away. The female votes'
    own density peaks at the male talker; the contrast seed answers the female talker."""
    rng = np.random.default_rng(3)
    male_dir, female_dir = direction_from_azel(-10.0, -15.0), direction_from_azel(15.0, -15.0)

    def around(d: np.ndarray, k: int) -> np.ndarray:
        v = d + 0.02 * rng.standard_normal((k, 3))
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    dirs = np.concatenate([around(male_dir, 60), around(male_dir, 30), around(female_dir, 20)])
    f0 = np.concatenate([np.full(60, 100.0), np.full(30, 200.0), np.full(20, 220.0)])
    times = np.arange(len(f0)) * 0.05
    pitch = (times, f0, np.ones_like(f0))             # one pitch window per vote, all voiced
    votes = doa.Votes(dirs, np.ones(len(f0)), times)
    seed = doa_dpd.contrast_seed(votes, pitch, male=False)
    assert great_circle_deg(seed.azimuth_deg, seed.elevation_deg, 15.0, -15.0) < 2.0
    monkeypatch.setattr(doa_dpd, "GENDER_CONTRAST", 0.0)      # the female votes' own density peak
    peak = doa_dpd.contrast_seed(votes, pitch, male=False)
    assert great_circle_deg(peak.azimuth_deg, peak.elevation_deg, -10.0, -15.0) < 2.0
    assert doa_dpd.contrast_seed(votes, (times, np.full(len(f0), 220.0), np.ones_like(f0)), male=True) is None


@pytest.mark.parametrize("seed", [12, 14])
def test_two_voices_by_pitch_the_flat_seed_finds_the_female_talker_too(seed):
    """espeak-ng male and female speech overlapping from azimuths -20 and 25 degrees (plane waves),
    diffuse pink noise at 10 dB: the flat seeding answers each requested voice within 3 degrees;
    doa_robust's seed answers the female request near the male talker (these two seeds)."""
    rng = np.random.default_rng(seed)
    bank = SpeechBank("test", seed)
    dirs = {"male": (-20.0, -10.0), "female": (25.0, -5.0)}
    parts = {g: np.concatenate([bank.utterance(g, rng), np.zeros(FS // 4), bank.utterance(g, rng)]) for g in dirs}
    n = min(len(p) for p in parts.values())
    x = sum(foa.encode_gains(direction_from_azel(*dirs[g]))[:, None] * parts[g][None, :n] for g in dirs)
    noise = sensing.diffuse_noise("pink", n, rng)
    x = x + np.sqrt(sensing.active_power(x[0]) / np.mean(noise[0] ** 2) * 0.1) * noise
    for gender, (az, el) in dirs.items():
        est = doa_dpd.estimate_by_gender(x, gender, seeding="flat")
        assert great_circle_deg(est.azimuth_deg, est.elevation_deg, az, el) < 3.0
    old = doa_dpd.estimate_by_gender(x, "female", seeding="robust")
    assert great_circle_deg(old.azimuth_deg, old.elevation_deg, *dirs["male"]) < 5.0


@pytest.mark.parametrize("options,limit_deg", [({"seeding": "robust"}, 3.5), ({"seeding": "flat"}, 3.5),
                                               ({"seeding": "flat", "lead": "edge", "fuse": True}, 2.0)])
def test_speech_in_a_reverberant_room_with_10_db_diffuse_noise(options, limit_deg):
    """espeak-ng speech in an image-source room (RT60 ~0.5 s), diffuse pink noise at 10 dB: the
    whole clip's answer within 3.5 degrees of the geometry's direction with either seeding (the
    room's floor reflection and walls still pull 1-3 degrees), within 2 degrees with the leading
    edges fused ("classical-audio-dpd-fuse")."""
    rng = np.random.default_rng(11)
    room = Room((6.0, 2.8, 5.0), (0.2, 0.2, 0.2, 0.35, 0.2, 0.2))
    receiver, source = np.array([3.0, 1.4, 4.2]), np.array([1.6, 1.1, 1.6])
    rot = rotation_y(15.0) @ rotation_x(-5.0)
    bank = SpeechBank("test", 11)
    dry = np.concatenate([bank.utterance("male", rng), np.zeros(FS // 4), bank.utterance("male", rng)])
    wet = convolve_foa(dry, foa_rir(room, source, receiver, rot, rng=rng))
    noise = sensing.diffuse_noise("pink", wet.shape[1], rng)
    x = wet + np.sqrt(sensing.active_power(wet[0]) / np.mean(noise[0] ** 2) * 0.1) * noise
    az, el = azel_from_direction(rot.T @ (source - receiver))
    est = doa_dpd.estimate_doa(x, **options)
    assert great_circle_deg(est.azimuth_deg, est.elevation_deg, az, el) < limit_deg


def test_method_names_and_bad_input():
    assert ClassicalMethod(use_depth=False, doa="dpd").name == "classical-audio-dpd"
    assert ClassicalMethod(use_depth=False, doa="dpd-floor").name == "classical-audio-dpd-floor"
    assert ClassicalMethod(use_depth=False, doa="dpd-flat").name == "classical-audio-dpd-flat"
    assert ClassicalMethod(use_depth=False, doa="dpd-fuse").name == "classical-audio-dpd-fuse"
    assert ClassicalMethod(use_depth=False, robust=True).name == "classical-audio-robust"
    with pytest.raises(ValueError):
        ClassicalMethod(doa="music")
    with pytest.raises(ValueError):
        doa_dpd.estimate_doa(np.zeros((3, FS)))
    with pytest.raises(ValueError):
        doa_dpd.estimate_doa(np.full((4, FS), np.nan))
    with pytest.raises(ValueError):
        doa_dpd.estimate_doa(np.zeros((4, FS)))       # silence: no onset region
    with pytest.raises(ValueError):
        doa_dpd.estimate_doa(_direct_and_floor(0.0, -20.0, 0.5, 24, 20.0), seeding="loudest")
    x = _direct_and_floor(0.0, -20.0, 0.5, 24, 20.0)
    with pytest.raises(ValueError):
        doa_dpd.estimate_doa(x, seeding="flat", lead="late")
    with pytest.raises(ValueError):
        doa_dpd.estimate_doa(x, seeding="robust", fuse=True)     # fusing needs the flat votes
    with pytest.raises(ValueError):
        doa_dpd.estimate_by_gender(x, "male", seeding="robust", fuse=True)
    with pytest.raises(ValueError):
        doa_dpd.estimate_doa(x, seeding="flat", fuse=True, seed=np.array([0.0, 0.0, -1.0]))  # fuses its own seed
    with pytest.raises(ValueError):
        doa_dpd.pooled_direction(doa_dpd.regions(_direct_and_floor(0.0, -20.0, 0.5, 24, 20.0)),
                                 np.array([0.0, 0.0, -1.0]), model="three")
