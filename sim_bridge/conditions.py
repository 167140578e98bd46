"""Sensing conditions of the simulator: ambient noise, interferers, microphone, loudspeakers, cameras.

Why: noise-free scenes voiced by one engine flatter signal processing and teach models the
simulator instead of the task. A named preset (PRESETS) says how every condition is drawn;
`draw` turns it into one sample's concrete Conditions (recorded in metadata.json), and
`apply_audio` / `degrade_depth` / `degrade_rgb` apply them.

Levels. SNR is the ratio of the speech's ACTIVE power in W (mean over the 20 ms frames
within 30 dB of the loudest; the sum of all talkers) to the ambient noise power in W.
Ambient noise is a spatially diffuse field in ACN/SN3D: W, Y, Z, X mutually uncorrelated with
each dipole at 1/3 of W's power (the diffuse-field ratio). Babble is many talkers a few
metres away in a reverberant room: each carries its own diffuse late field (independent
reverberation per talker) and only a weak direct sound (beyond the critical distance), so it
is diffuse in every realisation, as a crowd is -- not a handful of dry point sources, which
are directional interferers' business. An
interferer (a TV or a fan, not a loudspeaker of the task) is a point source at its own place
in the room, rendered through the room like the talkers, at a speech-to-interferer ratio
(SIR). Microphone self-noise is white noise on each of the four capsules, converted to
B-format with the tetrahedral A->B matrix (as real capsules' noise is), at a
speech-to-self-noise ratio.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable

import numpy as np
from scipy.ndimage import maximum_filter, minimum_filter
from scipy.signal import fftconvolve

from jaeger_ros.core import foa
from sim_bridge.acoustics import MAX_RIR_SECONDS, diffuse_tail

NOISE_KINDS = ("pink", "brown", "hum", "babble")
INTERFERER_KINDS = ("tv", "fan")
ACTIVE_WINDOW_DB = 30.0
BABBLE_TALKERS = 12
BABBLE_DRR_DB = (-15.0, -8.0)
"""Direct-to-reverberant ratio of each babble talker (talkers 3-8 m away in a room whose
critical distance is about 1 m)."""
BABBLE_RT60_S = (0.4, 0.9)
"""Reverberation time of the babble's room when the scene's is not given (re-noised splits)."""
Speech = Callable[[str, np.random.Generator], np.ndarray]
"""(gender, rng) -> dry mono speech at foa.SAMPLE_RATE, e.g. SpeechBank(...).utterance."""


@dataclass(frozen=True)
class SnrDistribution:
    """A named SNR distribution in dB: "fixed" (a), "uniform" (a..b) or "normal" (mean a,
    standard deviation b, clipped to [lo, hi])."""

    name: str
    a: float
    b: float = 0.0
    lo: float = -np.inf
    hi: float = np.inf

    def __post_init__(self) -> None:
        if self.name not in ("fixed", "uniform", "normal"):
            raise ValueError(f"unknown SNR distribution {self.name!r}")

    def draw(self, rng: np.random.Generator) -> float:
        if self.name == "fixed":
            return float(self.a)
        if self.name == "uniform":
            return float(rng.uniform(self.a, self.b))
        return float(np.clip(rng.normal(self.a, self.b), self.lo, self.hi))

    def to_dict(self) -> dict[str, Any]:
        d = {"name": self.name, "a": self.a, "b": self.b}
        if self.name == "normal":
            d.update(lo=self.lo, hi=self.hi)
        return d


@dataclass(frozen=True)
class Preset:
    """How each condition is drawn (None: that condition is off)."""

    name: str
    snr_db: SnrDistribution | None = None
    noise_kinds: tuple[str, ...] = NOISE_KINDS
    interferer_probability: float = 0.0
    sir_db: tuple[float, float] = (15.0, 30.0)
    self_noise_db: tuple[float, float] | None = None
    directivity: bool = False
    tetra_probability: float = 0.0
    depth_noise_k: tuple[float, float] | None = None
    """Depth noise standard deviation k * d^2 (m, d in m): k drawn from this range."""
    rgb_noise: tuple[float, float] | None = None
    """Pixel noise standard deviation range (8-bit levels); also turns on exposure variation."""
    depth_8bit: bool = False

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["snr_db"] = self.snr_db.to_dict() if self.snr_db else None
        return d


PRESETS: dict[str, Preset] = {
    "clean": Preset("clean"),
    "realistic": Preset("realistic", SnrDistribution("normal", 20.0, 6.0, 8.0, 35.0), NOISE_KINDS, 0.3, (15.0, 30.0),
                        (45.0, 60.0), True, 0.5, (0.001, 0.003), (1.5, 4.0)),
    "hard": Preset("hard", SnrDistribution("uniform", 0.0, 15.0), NOISE_KINDS, 0.7, (5.0, 20.0), (35.0, 50.0), True,
                   1.0, (0.003, 0.006), (3.0, 8.0)),
}
"""clean: today's noise-free, omnidirectional, ideal-FOA scenes. realistic (the default for
generated data and the live world): diffuse noise at SNR ~ N(20, 6) dB clipped to 8..35,
a TV or fan interferer in 30 % of samples at SIR 15..30 dB, self-noise 45..60 dB down,
directional loudspeakers, a tetrahedral microphone in half of the samples, depth noise and
holes, RGB noise and exposure. hard: SNR 0..15 dB, interferers in 70 % at SIR 5..20 dB,
self-noise 35..50 dB down, always tetrahedral, stronger depth and RGB noise."""


def preset(spec: str) -> Preset:
    """A preset by name, or "diffuse@SNR" (clean scenes plus diffuse noise at exactly SNR dB)."""
    if spec in PRESETS:
        return PRESETS[spec]
    if spec.startswith("diffuse@"):
        try:
            snr = float(spec.split("@", 1)[1])
        except ValueError:
            raise ValueError(f"bad conditions {spec!r}: diffuse@SNR needs a number") from None
        return Preset(spec, SnrDistribution("fixed", snr))
    raise ValueError(f"unknown conditions {spec!r}; expected one of {sorted(PRESETS)} or diffuse@SNR")


@dataclass(frozen=True)
class Conditions:
    """One sample's drawn conditions (all recorded in metadata.json via to_dict)."""

    preset: str
    snr_db: float | None = None
    noise_kind: str | None = None
    interferer: str | None = None
    sir_db: float | None = None
    self_noise_db: float | None = None
    directivity: bool = False
    capsules: str = "ideal"
    depth_noise_k: float | None = None
    rgb_noise: float | None = None
    exposure: float = 1.0
    depth_8bit: bool = False
    measured: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def draw(spec: str | Preset, rng: np.random.Generator) -> Conditions:
    """Draw one sample's conditions from a preset (name, diffuse@SNR, or a Preset)."""
    p = preset(spec) if isinstance(spec, str) else spec
    snr = p.snr_db.draw(rng) if p.snr_db else None
    kind = p.noise_kinds[int(rng.integers(len(p.noise_kinds)))] if p.snr_db else None
    interferer = sir = None
    if rng.random() < p.interferer_probability:
        interferer = INTERFERER_KINDS[int(rng.integers(len(INTERFERER_KINDS)))]
        sir = float(rng.uniform(*p.sir_db))
    self_noise = float(rng.uniform(*p.self_noise_db)) if p.self_noise_db else None
    capsules = "tetra" if rng.random() < p.tetra_probability else "ideal"
    k = float(rng.uniform(*p.depth_noise_k)) if p.depth_noise_k else None
    sigma = float(rng.uniform(*p.rgb_noise)) if p.rgb_noise else None
    exposure = float(np.exp(rng.normal(0.0, 0.2))) if p.rgb_noise else 1.0
    return Conditions(p.name, snr, kind, interferer, sir, self_noise, p.directivity, capsules, k, sigma, exposure,
                      p.depth_8bit)


# --- audio -----------------------------------------------------------------------------------

def active_power(signal: np.ndarray, sample_rate: int = foa.SAMPLE_RATE) -> float:
    """Mean power of the 20 ms frames within ACTIVE_WINDOW_DB of the loudest (speech level
    without its pauses)."""
    x = np.asarray(signal, dtype=float).reshape(-1)
    frame = max(1, int(0.02 * sample_rate))
    n = x.size // frame
    if n == 0:
        return float(np.mean(x ** 2)) if x.size else 0.0
    p = np.mean(x[: n * frame].reshape(n, frame) ** 2, axis=1)
    active = p >= p.max() * 10.0 ** (-ACTIVE_WINDOW_DB / 10.0)
    return float(np.mean(p[active]))


def _shaped(rng: np.random.Generator, channels: int, n: int, slope_db_per_octave: float,
            sample_rate: int) -> np.ndarray:
    """Independent noise per channel with a power spectrum falling slope dB/octave, unit RMS."""
    spec = np.fft.rfft(rng.standard_normal((channels, n)), axis=1)
    f = np.fft.rfftfreq(n, 1.0 / sample_rate)
    shape = (np.maximum(f, 20.0) / 1000.0) ** (slope_db_per_octave / (20.0 * np.log10(2.0)))
    shape[f < 20.0] = 0.0
    x = np.fft.irfft(spec * shape[None], n, axis=1)
    return x / np.sqrt(np.mean(x ** 2, axis=1, keepdims=True))


def _hum(rng: np.random.Generator, channels: int, n: int, sample_rate: int) -> np.ndarray:
    """Ventilation: a fan's blade-pass tone with harmonics (1/k, slowly wobbling) over a
    brownish rumble, independent phases per channel, unit RMS."""
    t = np.arange(n) / sample_rate
    f0 = rng.uniform(40.0, 120.0)
    out = 0.5 * _shaped(rng, channels, n, -4.5, sample_rate)
    for k in range(1, int(1000.0 / f0) + 1):
        wobble = 1.0 + 0.2 * np.sin(2 * np.pi * rng.uniform(0.1, 0.5) * t[None] + rng.uniform(0, 2 * np.pi, (channels, 1)))
        out += (1.0 / k) * wobble * np.sin(2 * np.pi * k * f0 * t[None] + rng.uniform(0, 2 * np.pi, (channels, 1)))
    return out / np.sqrt(np.mean(out ** 2, axis=1, keepdims=True))


def _speech_stream(speech: Speech, rng: np.random.Generator, n: int) -> np.ndarray:
    """n samples of back-to-back utterances of random genders (a babble or TV talker)."""
    parts, total = [], 0
    while total < n:
        u = speech(("male", "female")[int(rng.integers(2))], rng)
        parts.append(u)
        total += u.size
    x = np.concatenate(parts)
    start = int(rng.integers(x.size - n + 1))
    return x[start:start + n].astype(float)


def _distant_talker(speech: Speech, rng: np.random.Generator, n: int, rt60: float,
                    sample_rate: int) -> np.ndarray:
    """(4, n) one talker of a crowd: a weak direct plane wave from a random direction (DRR drawn
    from BABBLE_DRR_DB) plus this talker's own diffuse late field decaying with rt60. The
    speech starts one response length before the output, so the reverberation is built up
    (no common onset of all talkers at the first sample)."""
    if rt60 <= 0:
        raise ValueError(f"babble reverberation time must be positive, got {rt60}")
    length = max(1, int(min(rt60, MAX_RIR_SECONDS) * sample_rate))
    rir = diffuse_tail(rng, 1.0, rt60, 0, length, sample_rate)
    rir /= np.sqrt(np.sum(rir[0] ** 2))
    az, el = rng.uniform(-180.0, 180.0), np.degrees(np.arcsin(rng.uniform(-0.3, 0.6)))
    d = np.array([-np.sin(np.radians(az)) * np.cos(np.radians(el)), np.sin(np.radians(el)),
                  -np.cos(np.radians(az)) * np.cos(np.radians(el))])
    rir[:, 0] += foa.encode_gains(d) * 10.0 ** (rng.uniform(*BABBLE_DRR_DB) / 20.0)
    dry = _speech_stream(speech, rng, n + length)
    return fftconvolve(dry[None], rir, axes=1)[:, length:length + n]


def diffuse_noise(kind: str, n: int, rng: np.random.Generator, speech: Speech | None = None,
                  sample_rate: int = foa.SAMPLE_RATE, rt60_s: float | None = None) -> np.ndarray:
    """(4, n) ACN/SN3D diffuse noise with W at unit RMS and each dipole at 1/sqrt(3) of it.
    rt60_s: the room's reverberation time for babble (None: drawn from BABBLE_RT60_S)."""
    if n <= 0:
        raise ValueError(f"noise length must be positive, got {n}")
    dipole = np.array([1.0, 3.0 ** -0.5, 3.0 ** -0.5, 3.0 ** -0.5])[:, None]
    if kind == "pink":
        return _shaped(rng, 4, n, -3.0, sample_rate) * dipole
    if kind == "brown":
        return _shaped(rng, 4, n, -6.0, sample_rate) * dipole
    if kind == "hum":
        return _hum(rng, 4, n, sample_rate) * dipole
    if kind == "babble":
        if speech is None:
            raise ValueError("babble needs a speech source")
        rt60 = float(rng.uniform(*BABBLE_RT60_S)) if rt60_s is None else float(rt60_s)
        out = sum(_distant_talker(speech, rng, n, rt60, sample_rate) for _ in range(BABBLE_TALKERS))
        return out / np.sqrt(np.mean(out[0] ** 2))
    raise ValueError(f"unknown noise kind {kind!r}; expected one of {NOISE_KINDS}")


def self_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """(4, n) B-format image of unit-variance white noise on each tetrahedral capsule."""
    return foa.tetrahedral_a_to_b(foa.TETRA_ORDER) @ rng.standard_normal((4, n))


def _interferer_source(kind: str, n: int, rng: np.random.Generator, speech: Speech | None,
                       sample_rate: int) -> np.ndarray:
    if kind == "fan":
        return _hum(rng, 1, n, sample_rate)[0]
    if speech is None:
        raise ValueError("a TV interferer needs a speech source")
    talk = _speech_stream(speech, rng, n)  # a TV: speech over a music-like pink bed
    return talk / np.sqrt(np.mean(talk ** 2) + 1e-20) + 0.3 * _shaped(rng, 1, n, -3.0, sample_rate)[0]


def interferer_position(scene: Any, rng: np.random.Generator) -> np.ndarray:
    """A point in the room >= 0.4 m from walls, >= 1 m from the camera and the loudspeakers."""
    size = np.asarray(scene.room.size, dtype=float)
    avoid = [np.asarray(scene.camera_position)] + [np.asarray(s.acoustic_center) for s in scene.loudspeakers]
    for _ in range(200):
        p = np.array([rng.uniform(0.4, size[0] - 0.4), rng.uniform(0.3, min(1.8, size[1] - 0.3)),
                      rng.uniform(0.4, size[2] - 0.4)])
        if all(np.linalg.norm(p - a) >= 1.0 for a in avoid):
            return p
    raise RuntimeError("no free place for an interferer in this room")


def apply_audio(speech_mix: np.ndarray, cond: Conditions, scene: Any, rng: np.random.Generator,
                speech: Speech | None = None,
                rir: Callable[[np.ndarray], np.ndarray] | None = None,
                sample_rate: int = foa.SAMPLE_RATE, rt60_s: float | None = None) -> tuple[np.ndarray, Conditions]:
    """Add the drawn ambient noise, interferer and self-noise to (4, N) ACN/SN3D speech.

    rir(position) -> (4, M) FOA RIR from a world position to the microphone (needed for an
    interferer). rt60_s: the room's reverberation time for babble where no scene is given
    (re-noising a recorded sample; None: drawn). Returns the noisy mix and the conditions with
    `measured` levels filled in.
    """
    x = np.asarray(speech_mix, dtype=float)
    n = x.shape[1]
    p_speech = active_power(x[0], sample_rate)
    out = x.copy()
    measured: dict[str, float] = {"speech_active_power_w": p_speech}
    if p_speech <= 0:
        raise ValueError("speech mix is silent")
    if cond.snr_db is not None:
        kind = cond.noise_kind or "pink"
        rt60 = None
        if kind == "babble":  # the crowd shares the scene's room where there is one
            rt60 = (float(scene.room.sabine_rt60()) if scene is not None else
                    float(rt60_s) if rt60_s is not None else float(rng.uniform(*BABBLE_RT60_S)))
            measured["babble_rt60_s"] = rt60
        noise = diffuse_noise(kind, n, rng, speech, sample_rate, rt60)
        out += noise * np.sqrt(p_speech / 10.0 ** (cond.snr_db / 10.0))
    if cond.interferer is not None:
        if rir is None:
            raise ValueError("an interferer needs rir(position)")
        pos = interferer_position(scene, rng)
        wet = fftconvolve(_interferer_source(cond.interferer, n, rng, speech, sample_rate)[None], rir(pos),
                          axes=1)[:, :n]
        out += wet * np.sqrt(p_speech / 10.0 ** (cond.sir_db / 10.0) / max(np.mean(wet[0] ** 2), 1e-30))
        measured["interferer_position"] = [float(v) for v in pos]
    if cond.self_noise_db is not None:
        out += self_noise(n, rng) * np.sqrt(p_speech / 10.0 ** (cond.self_noise_db / 10.0))
    residual = np.mean((out[0] - x[0]) ** 2)
    measured["snr_total_db"] = float(10.0 * np.log10(p_speech / residual)) if residual > 0 else None
    return out.astype(np.float32), replace(cond, measured=measured)


# --- vision ----------------------------------------------------------------------------------

DEPTH_MAX_M = 8.0
DARK_LUMA = 20.0
"""Pixels darker than this (8-bit luma) return no depth half the time (absorbing surfaces)."""


def degrade_depth(depth: np.ndarray, rgb: np.ndarray, cond: Conditions, rng: np.random.Generator) -> np.ndarray:
    """A structured-light/stereo depth sensor: noise std k d^2, 1 mm quantisation, holes at depth
    edges (invalid band where neighbours differ by > 5 %), on dark and on very shiny (saturated)
    surfaces, random 0.5 % dropouts, nothing beyond DEPTH_MAX_M. 0 = no return."""
    if cond.depth_noise_k is None:
        return depth
    d = np.asarray(depth, dtype=np.float32)
    valid = np.isfinite(d) & (d > 0)
    noisy = d + rng.standard_normal(d.shape).astype(np.float32) * np.float32(cond.depth_noise_k) * d * d
    noisy = np.round(noisy * 1000.0) / 1000.0
    hi, lo = maximum_filter(d, 3), minimum_filter(d, 3)
    edge = (hi - lo) > 0.05 * np.maximum(d, 1e-3)
    luma = np.asarray(rgb, dtype=np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    holes = (edge & (rng.random(d.shape) < 0.7)) | ((luma < DARK_LUMA) & (rng.random(d.shape) < 0.5))
    holes |= (luma > 250.0) & (rng.random(d.shape) < 0.5)
    holes |= rng.random(d.shape) < 0.005
    holes |= ~valid | (noisy > DEPTH_MAX_M) | (noisy <= 0)
    return np.where(holes, 0.0, noisy).astype(np.float32)


def degrade_rgb(rgb: np.ndarray, cond: Conditions, rng: np.random.Generator) -> np.ndarray:
    """Exposure gain, then signal-dependent (shot) plus read noise of std cond.rgb_noise levels."""
    if cond.rgb_noise is None:
        return rgb
    x = np.asarray(rgb, dtype=np.float32) * np.float32(cond.exposure)
    sigma = np.float32(cond.rgb_noise) * np.sqrt(0.3 + 0.7 * np.clip(x, 0, 255) / 255.0)
    x = x + rng.standard_normal(x.shape).astype(np.float32) * sigma
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def loudspeaker_facing(yaw_deg: float) -> np.ndarray:
    """World direction a loudspeaker's front (+z local) points to for a yaw about +y."""
    return np.array([np.sin(np.radians(yaw_deg)), 0.0, np.cos(np.radians(yaw_deg))])
