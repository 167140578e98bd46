"""Sensing conditions: diffuse-noise levels, SNR, directivity, tetrahedral capsules, voices by split,
depth/RGB sensor models and the metadata a generated sample records."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from scipy.signal import butter, sosfiltfilt

from jaeger_ros.core import foa
from jaeger_ros.core.geometry import direction_from_azel, rotation_y
from sim_bridge import conditions as sensing
from sim_bridge import speech
from sim_bridge.acoustics import Directivity, foa_rir
from sim_bridge.room import Room

FS = 16000


def speechlike(gender: str, rng: np.random.Generator) -> np.ndarray:
    """Syllable bursts of a gliding harmonic voice up to 4 kHz, F0 drawn per utterance in the
    gender's range (a test input standing in for a talker in babble)."""
    f0 = rng.uniform(90.0, 150.0) if gender == "male" else rng.uniform(170.0, 250.0)
    t = np.arange(int(rng.uniform(0.5, 1.5) * FS)) / FS
    phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.1 * np.sin(2 * np.pi * rng.uniform(1, 4) * t))) / FS
    voice = sum(np.sin(k * phase) / k for k in range(1, int(4000 / f0)))
    return (voice * (np.sin(2 * np.pi * rng.uniform(2, 5) * t) > 0)).astype(np.float32)


def _mean_coherence(x: np.ndarray) -> float:
    """Energy-weighted mean of the intensity coherence (4/3)|I|/E over 10 ms blocks of 8 ms
    bins: about 0.4 for a diffuse field (estimator bias of a short average), 1 for one plane wave."""
    field = foa.intensity_vectors(x, 128, 16)
    frames = field.energy.shape[1] // 10 * 10
    inten = field.intensity[:, :, :frames].reshape(3, field.energy.shape[0], -1, 10).mean(axis=-1)
    energy = field.energy[:, :frames].reshape(field.energy.shape[0], -1, 10).mean(axis=-1)
    coherence = np.clip(4.0 / 3.0 * np.linalg.norm(inten, axis=0) / energy, 0.0, 1.0)
    return float(np.sum(coherence * energy) / np.sum(energy))


@pytest.mark.parametrize("kind", ["pink", "brown", "hum"])
def test_diffuse_noise_has_the_diffuse_field_channel_ratio(kind: str) -> None:
    x = sensing.diffuse_noise(kind, 4 * FS, np.random.default_rng(1))
    power = np.mean(x ** 2, axis=1)
    np.testing.assert_allclose(power[0], 1.0, rtol=1e-6)
    np.testing.assert_allclose(power[1:] / power[0], 1.0 / 3.0, rtol=0.02)  # SN3D diffuse field
    if kind != "hum":  # a hum's few tones stay partly coherent over seconds, as a real one's do
        assert np.max(np.abs(np.corrcoef(x) - np.eye(4))) < 0.08  # channels mutually uncorrelated
        # and no direction: the summed active intensity is small against a plane wave's (|I| = 3E/4)
        field = foa.intensity_vectors(x)
        assert np.linalg.norm(field.intensity.sum(axis=(1, 2))) < 0.05 * 0.75 * field.energy.sum()


def test_noise_spectra_differ_by_kind() -> None:
    rng = np.random.default_rng(2)
    slopes = {}
    for kind in ("pink", "brown"):
        w = sensing.diffuse_noise(kind, 4 * FS, rng)[0]
        p = np.abs(np.fft.rfft(w)) ** 2
        f = np.fft.rfftfreq(w.size, 1 / FS)
        slopes[kind] = 10 * np.log10(p[(f > 1000) & (f < 1100)].mean() / p[(f > 250) & (f < 275)].mean()) / 2
    assert abs(slopes["pink"] + 3.0) < 1.0 and abs(slopes["brown"] + 6.0) < 1.0  # dB per octave


def test_babble_is_a_diffuse_field_in_every_realisation() -> None:
    """A crowd, not a few dry talkers: each draw has the diffuse-field channel levels,
    uncorrelated channels and the intensity coherence of diffuse noise. (Six dry talkers from
    single directions fail all three: ratios off by 0.19-0.36, correlations 0.39-0.94,
    coherence 0.51-0.92.)"""
    pink = _mean_coherence(sensing.diffuse_noise("pink", 4 * FS, np.random.default_rng(0)))
    ratios = []
    for seed in range(4):
        x = sensing.diffuse_noise("babble", 4 * FS, np.random.default_rng(seed), speechlike)
        power = np.mean(x ** 2, axis=1)
        np.testing.assert_allclose(power[0], 1.0, rtol=1e-6)
        ratios.append(power[1:] / power[0])
        np.testing.assert_allclose(ratios[-1], 1.0 / 3.0, atol=0.12)
        assert np.max(np.abs(np.corrcoef(x) - np.eye(4))) < 0.2
        assert _mean_coherence(x) < min(0.47, pink + 0.06), (_mean_coherence(x), pink)
    np.testing.assert_allclose(np.mean(ratios, axis=0), 1.0 / 3.0, atol=0.05)


def test_babble_shares_the_scene_rooms_reverberation() -> None:
    class Scene:
        room = Room((5.0, 3.0, 4.0), (0.2,) * 6)

    rng = np.random.default_rng(8)
    talk = np.zeros(2 * FS)
    talk[FS // 4: FS // 4 + FS // 2] = speechlike("male", rng)[: FS // 2]
    mix = foa.encode_gains(direction_from_azel(0, 0))[:, None] * talk[None]
    _, cond = sensing.apply_audio(mix, sensing.Conditions("test", snr_db=10.0, noise_kind="babble"), Scene(), rng,
                                  speechlike)
    assert cond.measured["babble_rt60_s"] == pytest.approx(Scene.room.sabine_rt60())
    assert abs(cond.measured["snr_total_db"] - 10.0) < 0.3
    _, cond = sensing.apply_audio(mix, sensing.Conditions("test", snr_db=10.0, noise_kind="babble"), None, rng,
                                  speechlike, rt60_s=0.7)  # re-noising a recorded sample of a known room
    assert cond.measured["babble_rt60_s"] == 0.7
    with pytest.raises(ValueError, match="babble needs a speech source"):
        sensing.diffuse_noise("babble", FS, rng)


@pytest.mark.parametrize("snr", [0.0, 10.0, 25.0])
def test_apply_audio_hits_the_requested_snr(snr: float) -> None:
    rng = np.random.default_rng(3)
    talk = np.zeros(3 * FS)
    burst = speechlike("female", rng)
    talk[FS // 2: FS // 2 + burst.size] = burst
    mix = foa.encode_gains(direction_from_azel(20, -10))[:, None] * talk[None]
    cond = sensing.Conditions("test", snr_db=snr, noise_kind="pink")
    noisy, cond = sensing.apply_audio(mix, cond, None, rng)
    assert abs(cond.measured["snr_total_db"] - snr) < 0.3
    assert abs(10 * np.log10(sensing.active_power(mix[0]) / np.mean((noisy[0] - mix[0]) ** 2)) - snr) < 0.3


def test_presets_draw_recordable_conditions() -> None:
    rng = np.random.default_rng(4)
    clean = sensing.draw("clean", rng)
    assert clean.snr_db is None and clean.capsules == "ideal" and not clean.directivity
    hard = [sensing.draw("hard", rng) for _ in range(50)]
    assert all(0.0 <= c.snr_db <= 15.0 and c.capsules == "tetra" and c.directivity for c in hard)
    assert 0.5 < np.mean([c.interferer is not None for c in hard]) < 0.9
    real = [sensing.draw("realistic", rng).snr_db for _ in range(200)]
    assert 8.0 <= min(real) and max(real) <= 35.0 and abs(np.mean(real) - 20.0) < 1.5
    assert sensing.draw("diffuse@7.5", rng).snr_db == 7.5
    json.dumps(hard[0].to_dict())
    with pytest.raises(ValueError, match="unknown conditions"):
        sensing.preset("noisy")


def test_directivity_gains_as_specified() -> None:
    d = Directivity(facing=[0.0, 0.0, 1.0])
    off = {deg: np.array([[np.sin(np.radians(deg)), 0.0, np.cos(np.radians(deg))]]) for deg in (0, 90, 180)}
    g = {deg: d.gains(v)[:, 0] for deg, v in off.items()}
    np.testing.assert_allclose(g[0], [1, 1, 1])
    np.testing.assert_allclose(g[90], [1.0, 0.5, 0.125])               # ((1 + 0) / 2) ** (0, 1, 3)
    np.testing.assert_allclose(g[180], [1.0, 0.1, 0.1])                 # the -20 dB floor
    masks = d.band_masks(np.linspace(0, 8000, 801))
    np.testing.assert_allclose(masks.sum(axis=0), 1.0, atol=1e-12)


def _band_energy(x: np.ndarray, lo: float, hi: float) -> float:
    sos = butter(6, [lo, hi], btype="bandpass", fs=FS, output="sos")
    return float(np.sum(sosfiltfilt(sos, x) ** 2))


def test_directional_loudspeaker_attenuates_off_axis_high_frequencies() -> None:
    room = Room((6.0, 3.0, 6.0), (0.3,) * 6)
    src, rcv = np.array([3.0, 1.5, 2.0]), np.array([3.0, 1.5, 4.0])  # receiver along +z from the source
    rot = np.eye(3)
    rirs = {}
    for deg in (0, 90):
        facing = rotation_y(deg) @ np.array([0.0, 0.0, 1.0])
        rirs[deg] = foa_rir(room, src, rcv, rot, FS, max_order=0, tail=False, directivity=Directivity(facing))[0]
    omni = foa_rir(room, src, rcv, rot, FS, max_order=0, tail=False)[0]
    np.testing.assert_allclose(_band_energy(rirs[0], 3500, 7000), _band_energy(omni, 3500, 7000), rtol=0.02)
    np.testing.assert_allclose(_band_energy(rirs[90], 3500, 7000) / _band_energy(omni, 3500, 7000), 0.125 ** 2,
                               rtol=0.1)
    np.testing.assert_allclose(_band_energy(rirs[90], 100, 350) / _band_energy(omni, 100, 350), 1.0, rtol=0.1)


@pytest.mark.parametrize("az,el", [(0, 0), (30, -20), (-35, 10), (120, 40), (-150, -30)])
def test_tetrahedral_capsules_give_the_direct_path_doa_below_3khz(az: float, el: float) -> None:
    room = Room((8.0, 6.0, 8.0), (0.3,) * 6)
    rcv = np.array([4.0, 3.0, 4.0])
    src = rcv + 2.0 * direction_from_azel(az, el)  # camera frame = world frame here
    rir = foa_rir(room, src, rcv, np.eye(3), FS, max_order=0, tail=False, capsules="tetra")
    noise = np.random.default_rng(5).standard_normal(2 * FS)
    sig = np.stack([np.convolve(noise, h)[: 2 * FS] for h in rir])
    est_az, est_el = foa.direction_from_foa(sig, band_hz=(100.0, 3000.0))
    gc = np.degrees(np.arccos(np.clip(direction_from_azel(est_az, est_el) @ direction_from_azel(az, el), -1, 1)))
    assert gc < 2.0


def test_voices_of_a_split_never_appear_in_another() -> None:
    by_split = {s: {v.speaker for v in speech.VOICES if v.split == s} for s in speech.SPLITS}
    assert not by_split["train"] & by_split["val"]
    assert not by_split["train"] & by_split["test"]
    assert not by_split["val"] & by_split["test"]
    for split in speech.SPLITS:
        for gender in speech.GENDERS:
            assert speech.voices(split, gender), (split, gender)
    assert {v.engine for v in speech.VOICES if v.split == "test"} == set(speech.ENGINES)


@pytest.mark.skipif(shutil.which("espeak-ng") is None or shutil.which("flite") is None or shutil.which("sox") is None,
                    reason="espeak-ng, flite and sox are needed")
def test_speech_bank_draws_only_its_split_voices_and_records_them() -> None:
    bank = speech.SpeechBank("test", seed=1, pool_size=6, engines=("espeak-ng", "flite"))
    rng = np.random.default_rng(0)
    test_speakers = {v.speaker for v in speech.VOICES if v.split == "test"}
    for gender, f0_range in (("male", (70, 150)), ("female", (160, 400))):
        infos = [bank.utterance_with_info(gender, rng)[1] for _ in range(20)]
        assert all(i["speaker"] in test_speakers and i["gender"] == gender for i in infos)
        assert all(f0_range[0] < i["f0_hz"] < f0_range[1] for i in infos), infos
    assert len({i["engine"] for i in (bank.utterance_with_info(g, rng)[1] for g in ("male", "female") * 30)}) == 2


def test_depth_sensor_noise_grows_with_distance_squared() -> None:
    rng = np.random.default_rng(6)
    cond = sensing.Conditions("test", depth_noise_k=0.003)
    rgb = np.full((200, 200, 3), 128, np.uint8)
    stds = []
    for d in (1.0, 4.0):
        out = sensing.degrade_depth(np.full((200, 200), d, np.float32), rgb, cond, rng)
        valid = out > 0
        assert 0.98 < valid.mean() < 1.0  # random dropouts only
        stds.append(float(np.std(out[valid] - d)))
    np.testing.assert_allclose(stds, [0.003, 0.048], rtol=0.15)
    step = np.where(np.arange(200)[None, :] < 100, 1.0, 3.0).astype(np.float32) * np.ones((200, 1), np.float32)
    dark = rgb.copy()
    dark[:50] = 5
    out = sensing.degrade_depth(step, dark, cond, rng)
    assert (out[60:, 99:101] == 0).mean() > 0.5 and (out[:50, :90] == 0).mean() > 0.3 and (out[60:, :90] == 0).mean() < 0.02


def test_rgb_noise_and_exposure() -> None:
    rgb = np.full((100, 100, 3), 100, np.uint8)
    cond = sensing.Conditions("test", rgb_noise=4.0, exposure=1.2)
    out = sensing.degrade_rgb(rgb, cond, np.random.default_rng(7)).astype(float)
    assert abs(out.mean() - 120.0) < 0.5 and 2.5 < out.std() < 4.5
    assert sensing.degrade_rgb(rgb, sensing.Conditions("clean"), np.random.default_rng(7)) is rgb


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")
def test_generated_sample_records_every_condition(tmp_path) -> None:
    from jaeger_ros.data.dataset import generate

    generate(tmp_path, "test", 1, seed=3, tasks=["B"], conditions="hard", progress=False, resolution=(160, 90))
    meta = json.loads(next((tmp_path / "test").glob("task2_*/metadata.json")).read_text())
    cond = meta["conditions"]
    for key in ("preset", "snr_db", "noise_kind", "interferer", "sir_db", "self_noise_db", "directivity", "capsules",
                "depth_noise_k", "rgb_noise", "exposure", "depth_8bit", "measured"):
        assert key in cond, key
    assert cond["preset"] == "hard" and cond["capsules"] == "tetra" and 0 <= cond["snr_db"] <= 15
    for src in meta["sources"]:
        assert {"engine", "voice", "speaker", "f0_hz"} <= set(src["voice"]) and "off_axis_deg" in src
