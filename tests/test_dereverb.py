"""Multichannel WPE on first-order ambisonics (classical/dereverb.py), against signals built here:
a plane wave from a known direction (ACN/SN3D encoded by hand: W, Y, Z, X) plus a diffuse tail of
late plane waves from random directions, decaying with a 0.8 s reverberation time."""
from __future__ import annotations

import numpy as np
import pytest

from jaeger_ros.classical import dereverb
from jaeger_ros.classical.dereverb import StreamDereverb

RATE = 16000


def _speech_like(seconds: float, rng: np.random.Generator) -> np.ndarray:
    """Noise in syllable-like bursts (80-250 ms on, 40-200 ms off): the time-varying variance WPE
    assumes of speech."""
    out = np.zeros(int(seconds * RATE))
    t = 0
    while t < out.size:
        on = int(rng.uniform(0.08, 0.25) * RATE)
        out[t:t + on] = rng.standard_normal(min(on, out.size - t)) * rng.uniform(0.3, 1.0) * np.hanning(on)[:out.size - t]
        t += on + int(rng.uniform(0.04, 0.2) * RATE)
    return out


def _gains(unit: np.ndarray) -> np.ndarray:
    """ACN/SN3D plane-wave gains (W, Y, Z, X) of a source in direction `unit` (x, y, z)."""
    return np.array([1.0, unit[1], unit[2], unit[0]])


def _room(rng: np.random.Generator, direct: np.ndarray, drr_db: float) -> np.ndarray:
    """(4, L) impulse response: the direct plane wave at t = 0 and 400 late ones from random
    directions between 20 ms and 600 ms, decaying 60 dB in 0.8 s, scaled to the DRR asked for."""
    length = int(0.6 * RATE)
    rir = np.zeros((4, length))
    rir[:, 0] = _gains(direct)
    late = np.zeros((4, length))
    for _ in range(400):
        delay = int(rng.uniform(0.02, 0.6) * RATE)
        v = rng.standard_normal(3)
        late[:, delay] += _gains(v / np.linalg.norm(v)) * rng.standard_normal() * 10 ** (-3.0 * delay / (0.8 * RATE))
    late *= np.sqrt(10 ** (-drr_db / 10.0) / np.sum(late[0] ** 2))
    return rir + late


def _convolve(s: np.ndarray, rir: np.ndarray) -> np.ndarray:
    from scipy.signal import fftconvolve
    return np.stack([fftconvolve(s, h)[:s.size] for h in rir]).astype(np.float32)


def _intensity_direction(foa: np.ndarray) -> np.ndarray:
    """Time-averaged intensity (W times the dipoles X, Y, Z), normalised."""
    i = np.array([np.mean(foa[0] * foa[3]), np.mean(foa[0] * foa[1]), np.mean(foa[0] * foa[2])])
    return i / np.linalg.norm(i)


def _deg(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip(a @ b, -1.0, 1.0))))


def test_late_reverberation_is_removed_and_the_direct_sound_kept():
    """DRR -8 dB (the live rooms the DoA lost): after WPE the error against the direct sound
    alone is at least 4 dB lower, and the mean intensity, pulled 30+ degrees towards the tail's
    random directions before, points within a few degrees of the source."""
    rng = np.random.default_rng(3)
    source = np.array([0.6, 0.3, -0.74])
    source /= np.linalg.norm(source)
    s = _speech_like(6.0, rng)
    heard = _convolve(s, _room(rng, source, drr_db=-8.0))
    direct = (_gains(source)[:, None] * s[None]).astype(np.float32)
    out = dereverb.dereverberate(heard, RATE)
    assert out.shape == heard.shape and out.dtype == np.float32
    # only the band the DoA reads is processed: compare there
    from scipy.signal import butter, sosfiltfilt
    sos = butter(4, (300.0, 3500.0), btype="band", fs=RATE, output="sos")
    band = lambda x: sosfiltfilt(sos, x, axis=1)[:, RATE:]   # noqa: E731  (after 1 s: the filter needs a past)
    before = np.sum((band(heard) - band(direct)) ** 2)
    after = np.sum((band(out) - band(direct)) ** 2)
    assert 10 * np.log10(before / after) >= 4.0, 10 * np.log10(before / after)
    assert _deg(_intensity_direction(band(out)), source) < 0.5 * _deg(_intensity_direction(band(heard)), source)


def test_a_dry_plane_wave_keeps_its_direction():
    """Nothing to remove: a dry source keeps its intensity direction within 2 degrees."""
    rng = np.random.default_rng(5)
    source = np.array([-0.5, -0.2, -0.84])
    source /= np.linalg.norm(source)
    s = _speech_like(4.0, rng)
    dry = (_gains(source)[:, None] * s[None]).astype(np.float32)
    assert _deg(_intensity_direction(dereverb.dereverberate(dry, RATE)), source) < 2.0


def test_the_stream_passes_windows_until_it_has_heard_enough_and_forgets_on_reset():
    rng = np.random.default_rng(7)
    source = np.array([0.0, 0.0, -1.0])
    heard = _convolve(_speech_like(4.0, rng), _room(rng, source, drr_db=-8.0))
    stream = dereverb.StreamDereverb()
    window, step = RATE // 2, RATE // 10
    changed = []
    for end in range(window, heard.shape[1] + 1, step):
        w = heard[:, end - window:end]
        out = stream(end / RATE, w, RATE)
        assert out.shape == w.shape
        changed.append(not np.array_equal(out, w))
    first = int(np.argmax(changed))
    # the first fit needs MIN_FIT_S of audio: windows end at 0.5, 0.6, ... s
    assert first == round((dereverb.MIN_FIT_S - 0.5) * 10) and all(changed[first:])
    stream.reset()
    w = heard[:, :window]
    assert np.array_equal(stream(window / RATE, w, RATE), w)
    with pytest.raises(ValueError, match=r"\(4, N\)"):
        stream(1.0, heard[:3, :window], RATE)


@pytest.mark.parametrize("step", [RATE // 10, RATE // 50])
def test_the_stream_dereverberates_each_sample_once_as_the_batch_filter_does(monkeypatch, step):
    """With one filter (no refit), every window the stream returns is what the filter gives the
    whole recording at once (apply_filter on all of it), though the stream only works on each
    window's new samples: at 10 Hz and at 50 Hz (steps shorter than an STFT frame)."""
    monkeypatch.setattr(dereverb, "REFIT_S", 1e9)
    rng = np.random.default_rng(13)
    source = np.array([0.3, -0.6, -0.74])
    heard = _convolve(_speech_like(4.0, rng), _room(rng, source / np.linalg.norm(source), drr_db=-6.0))
    stream = dereverb.StreamDereverb()
    window = RATE // 2
    outs = {end: stream(end / RATE, heard[:, end - window:end], RATE)
            for end in range(window, heard.shape[1] + 1, step)}
    whole = dereverb.apply_filter(heard, RATE, stream._filter)
    filtered = [end for end, out in outs.items() if not np.array_equal(out, heard[:, end - window:end])]
    assert len(filtered) > 0.6 * len(outs)
    for end in filtered:
        ref = whole[:, end - window:end - StreamDereverb.TAIL]   # the window's last TAIL: no future yet
        err = outs[end][:, :-StreamDereverb.TAIL] - ref
        assert np.sqrt(np.mean(err ** 2)) < 1e-3 * np.sqrt(np.mean(ref ** 2)), end


def test_the_classical_estimator_hears_the_stream_dereverberated_when_asked():
    """ClassicalEstimator(dereverb=True) streams the reverberant room (0.5 s windows at 10 Hz, no
    VAD: the bursts are not speech): its sound-only direction ends within 10 degrees of the
    source, and a new view (the depth image changed) starts the filter afresh."""
    from jaeger_ros.core.foa import ambisonic_to_camera
    from jaeger_ros.core.geometry import Intrinsics
    from jaeger_ros.pipeline.frame import ClassicalEstimator
    rng = np.random.default_rng(11)
    source = np.array([0.5, 0.1, -0.86])
    source /= np.linalg.norm(source)
    heard = _convolve(_speech_like(4.0, rng), _room(rng, source, drr_db=-6.0))
    est = ClassicalEstimator(candidates="depth", vad=False, dereverb=True)
    intr = Intrinsics.from_hfov(64, 48, 90.0)
    rgb = np.zeros((48, 64, 3), np.uint8)
    rows = np.arange(48)[:, None] + 0.5 - intr.cy   # a floor 1.2 m below the camera up to a wall 4 m ahead

    def room(wall_m: float) -> np.ndarray:
        floor = 1.2 * intr.fy / np.maximum(rows, 1e-6)
        return np.broadcast_to(np.where(rows > 0, np.minimum(floor, wall_m), wall_m), (48, 64)).astype(np.float32)
    depth = room(4.0)
    for end in range(RATE // 2, heard.shape[1] + 1, RATE // 10):
        out = est(rgb, depth, intr, heard[:, end - RATE // 2:end], RATE, "", end / RATE)
    assert est._dereverb._filter is not None
    assert _deg(out.direction, ambisonic_to_camera(source[None])[0]) < 10.0
    est(rgb, room(2.5), intr, heard[:, -RATE // 2:], RATE, "", heard.shape[1] / RATE + 0.1)
    assert est._dereverb._filter is None


def test_a_background_fit_runs_below_the_frame_paths_priority(monkeypatch):
    """The fit thread's niceness (read from the kernel while it fits) is the caller's + BACKGROUND_NICE;
    the caller's own is untouched. fit_filter is wrapped only to read it, and still fits."""
    import os
    import threading

    from jaeger_ros.core.threads import BACKGROUND_NICE
    seen = []
    real = dereverb.fit_filter

    def observed(x, rate):
        seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        return real(x, rate)
    monkeypatch.setattr(dereverb, "fit_filter", observed)
    mine = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    rng = np.random.default_rng(17)
    heard = _convolve(_speech_like(1.5, rng), _room(rng, np.array([0.0, 1.0, 0.0]), drr_db=-6.0))
    stream = StreamDereverb(background=True)
    for end in range(RATE // 2, heard.shape[1] + 1, RATE // 10):
        stream(end / RATE, heard[:, end - RATE // 2:end], RATE)
    stream._worker.join(timeout=10.0)
    assert seen == [min(mine + BACKGROUND_NICE, 19)] and stream._filter is not None
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == mine
