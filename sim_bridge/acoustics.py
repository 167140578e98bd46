"""FOA room impulse responses of a shoebox room: image sources + a diffuse late tail.

Why a hybrid: the image-source model (ISM) gives every early arrival its exact direction and
delay (what direction-of-arrival learning needs), but its cost grows with the cube of the
order; beyond the time up to which the ISM is complete, a statistical diffuse tail (decaying
noise, decorrelated per channel with the diffuse-field ambisonic energy ratio) reaches the
room's Sabine RT60 at negligible cost.

Amplitudes: each arrival is g / r with r in metres (the direct path at 1 m has W = 1) and
g the product of the reflection coefficients sqrt(1 - alpha) of the surfaces it hit. The
output is ACN/SN3D, axes aligned with the receiver's camera frame (see jaeger_ros.core.foa).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import butter, fftconvolve, sosfilt

from jaeger_ros.core import foa
from sim_bridge.room import Room

SPEED_OF_SOUND = 343.0
"""m/s, the value Room.sabine_rt60 uses by default."""
SINC_TAPS = 32
"""Length of the Hann-windowed sinc that places each arrival at its fractional delay."""
ISM_HORIZON_S = 0.08
"""With max_order=None, the order is raised until the ISM is complete up to this time."""
MAX_AUTO_ORDER = 20
HIGHPASS_HZ = 50.0
"""Loudspeaker-like high-pass: ISM arrivals all have positive amplitude, so their dense sum
carries a spurious slowly decaying DC pedestal that no real loudspeaker could excite."""
MAX_RIR_SECONDS = 2.0
TETRA_RADIUS_M = 0.0147
"""Capsule distance from the centre of a tetrahedral microphone (Soundfield/Ambeo class)."""
CAPSULE_MODES = ("ideal", "tetra")


@dataclass(frozen=True)
class Directivity:
    """Frequency-dependent loudspeaker directivity: in band b the amplitude towards angle theta
    off the facing axis is max(floor, ((1 + cos theta) / 2) ** exponents[b]). Bands meet at
    `crossovers_hz` with raised-cosine (in log frequency) cross-fades one octave wide that sum
    to one. The default is a small 2-way box: omni below ~500 Hz, -3 dB at 90 deg around
    1-2 kHz, -9 dB at 90 deg above 3 kHz, nothing quieter than -20 dB behind it."""

    facing: np.ndarray
    """(3,) world direction the loudspeaker's front points to."""
    crossovers_hz: tuple[float, ...] = (700.0, 2500.0)
    exponents: tuple[float, ...] = (0.0, 1.0, 3.0)
    floor: float = 0.1

    def __post_init__(self) -> None:
        f = np.asarray(self.facing, dtype=float).reshape(3)
        if not np.all(np.isfinite(f)) or np.linalg.norm(f) == 0:
            raise ValueError(f"facing must be a non-zero 3-vector, got {self.facing}")
        object.__setattr__(self, "facing", f / np.linalg.norm(f))
        if len(self.exponents) != len(self.crossovers_hz) + 1 or list(self.crossovers_hz) != sorted(self.crossovers_hz):
            raise ValueError("need one exponent per band and increasing crossovers")

    def gains(self, emission: np.ndarray) -> np.ndarray:
        """(bands, K) amplitude gains for (K, 3) world emission directions."""
        e = np.asarray(emission, dtype=float)
        cos = (e @ self.facing) / np.maximum(np.linalg.norm(e, axis=1), 1e-12)
        base = np.clip((1.0 + cos) / 2.0, 0.0, 1.0)
        return np.maximum(self.floor, base[None] ** np.asarray(self.exponents)[:, None])

    def band_masks(self, freqs: np.ndarray) -> np.ndarray:
        """(bands, F) complementary weights (they sum to 1 at every frequency)."""
        lf = np.log2(np.maximum(freqs, 1.0))
        upper = [np.clip(0.5 + (lf - np.log2(fc)), 0.0, 1.0) for fc in self.crossovers_hz]
        upper = [0.5 - 0.5 * np.cos(np.pi * u) for u in upper]  # share above each crossover
        masks, below = [], np.ones_like(lf)
        for u in upper:
            masks.append(below * (1.0 - u))
            below = below * u
        return np.stack(masks + [below])
_DECAY_60DB = 3.0 * np.log(10.0)  # amplitude: exp(-_DECAY_60DB * t / RT60) falls 60 dB at RT60


@dataclass(frozen=True)
class ImageSources:
    """Image sources of one source in a shoebox, world frame."""

    positions: np.ndarray
    """(K, 3) image positions, metres."""
    gains: np.ndarray
    """(K,) product of the reflection coefficients sqrt(1 - alpha) along each path."""
    orders: np.ndarray
    """(K,) number of reflections (0 = direct path)."""
    mirror: np.ndarray
    """(K, 3) +-1 per axis: -1 where the path hit that axis's walls an odd number of times, so
    the direction the sound LEAVES the real source is mirror * (receiver - image)."""


def _axis_images(length: float, coord: float, max_order: int) -> tuple[np.ndarray, ...]:
    """1-D images along one axis: position, hits on the low wall, hits on the high wall.

    Image (n, q) sits at (1 - 2q) * coord + 2 n L and has |n - q| low-wall and |n| high-wall hits.
    """
    n = np.arange(-max_order, max_order + 1)
    n, q = np.repeat(n, 2), np.tile([0, 1], n.size)
    low, high = np.abs(n - q), np.abs(n)
    keep = low + high <= max_order
    return (1 - 2 * q[keep]) * coord + 2 * n[keep] * length, low[keep], high[keep]


def image_sources(room: Room, source: np.ndarray, max_order: int) -> ImageSources:
    """All image sources with at most `max_order` reflections (vectorised over the 3 axes)."""
    s = np.asarray(source, dtype=float).reshape(3)
    if max_order < 0:
        raise ValueError(f"max_order must be >= 0, got {max_order}")
    if not room.contains(s):
        raise ValueError(f"source {s} is outside the room {room.size}")
    beta = np.sqrt(1.0 - np.asarray(room.absorption, dtype=float))
    per_axis = [_axis_images(room.size[k], s[k], max_order) for k in range(3)]
    (px, lx, hx), (py, ly, hy), (pz, lz, hz) = per_axis
    ix, iy, iz = np.meshgrid(np.arange(px.size), np.arange(py.size), np.arange(pz.size), indexing="ij")
    ix, iy, iz = ix.ravel(), iy.ravel(), iz.ravel()
    orders = lx[ix] + hx[ix] + ly[iy] + hy[iy] + lz[iz] + hz[iz]
    keep = orders <= max_order
    ix, iy, iz, orders = ix[keep], iy[keep], iz[keep], orders[keep]
    hits = np.stack([lx[ix], hx[ix], ly[iy], hy[iy], lz[iz], hz[iz]], axis=1)  # SURFACES order
    gains = np.prod(beta[None, :] ** hits, axis=1)
    positions = np.stack([px[ix], py[iy], pz[iz]], axis=1)
    mirror = 1.0 - 2.0 * ((hits[:, 0::2] + hits[:, 1::2]) % 2)
    return ImageSources(positions, gains, orders, mirror)


def _complete_distance(room: Room, source: np.ndarray, receiver: np.ndarray, max_order: int) -> float:
    """Distance below which every image source has at most `max_order` reflections: the
    nearest image with max_order + 1 reflections, found per axis (an image's order and squared
    distance are sums of per-axis parts) instead of enumerating all images."""
    target = max_order + 1
    nearest = np.full((3, target + 1), np.inf)  # [axis, per-axis order] -> min squared offset
    for k in range(3):
        pos, low, high = _axis_images(room.size[k], source[k], target)
        np.minimum.at(nearest[k], low + high, (pos - receiver[k]) ** 2)
    mx, my = np.meshgrid(np.arange(target + 1), np.arange(target + 1), indexing="ij")
    mz = target - mx - my
    ok = mz >= 0
    d2 = nearest[0][mx[ok]] + nearest[1][my[ok]] + nearest[2][mz[ok]]
    return float(np.sqrt(np.min(d2)))


def _auto_order(room: Room, source: np.ndarray, receiver: np.ndarray, horizon_m: float) -> int:
    order = 1
    while order < MAX_AUTO_ORDER and _complete_distance(room, source, receiver, order) < horizon_m:
        order += 1
    return order


def _place_arrivals(delays: np.ndarray, amplitudes: np.ndarray, length: int) -> np.ndarray:
    """Sum of Hann-windowed sincs (channels, length): arrival k at fractional sample delays[k]
    with per-channel amplitudes[:, k]."""
    half = SINC_TAPS // 2
    base = np.floor(delays).astype(int)
    taps = np.arange(-half + 1, half + 1)
    idx = base[:, None] + taps[None, :]  # (K, taps)
    offset = idx - delays[:, None]
    kernel = np.sinc(offset) * (0.5 + 0.5 * np.cos(np.pi * offset / half))
    valid = (idx >= 0) & (idx < length)
    flat_idx = idx[valid]
    out = np.empty((amplitudes.shape[0], length))
    for c in range(amplitudes.shape[0]):
        weights = (kernel * amplitudes[c][:, None])[valid]
        out[c] = np.bincount(flat_idx, weights=weights, minlength=length)[:length]
    return out


def diffuse_tail(rng: np.random.Generator, level: float, rt60: float, start: int, length: int,
                 sample_rate: int) -> np.ndarray:
    """(4, length) ACN/SN3D diffuse decay from sample `start`: independent noise per channel,
    dipoles at 1/sqrt(3) of W's amplitude (isotropic field in SN3D), energy per W sample
    `level` at t = 0 falling 60 dB per rt60, faded in over 2 ms to avoid a click. Also the
    late field through which sensing conditions render distant talkers (babble)."""
    out = np.zeros((4, length))
    n = length - start
    if n <= 0 or level <= 0:
        return out
    t = np.arange(start, length) / sample_rate
    envelope = np.sqrt(level) * np.exp(-_DECAY_60DB * t / rt60)
    fade = min(n, max(1, int(0.002 * sample_rate)))
    envelope[:fade] *= 0.5 - 0.5 * np.cos(np.pi * (np.arange(fade) + 0.5) / fade)
    std = np.array([1.0, 3.0 ** -0.5, 3.0 ** -0.5, 3.0 ** -0.5])
    out[:, start:] = rng.standard_normal((4, n)) * std[:, None] * envelope[None]
    return out


def foa_rir(room: Room, source: np.ndarray, receiver: np.ndarray, world_from_receiver: np.ndarray,
            sample_rate: int = foa.SAMPLE_RATE, rng: np.random.Generator | None = None,
            max_order: int | None = None, tail: bool = True, directivity: Directivity | None = None,
            capsules: str = "ideal") -> np.ndarray:
    """FOA room impulse response (4, N) float32, ACN/SN3D, axes of the receiver's camera frame.

    Parameters
    ----------
    room: shoebox with per-surface absorption (world frame, y up).
    source, receiver: (3,) world positions in metres, inside the room.
    world_from_receiver: (3, 3) rotation whose columns are the receiver's camera axes
        (x right, y up, z backward) in world coordinates.
    rng: draws the diffuse tail; pass one for reproducible output (None: fresh entropy).
    max_order: image-source reflection order; None picks the order that makes the ISM
        complete up to ISM_HORIZON_S.
    tail: add the diffuse tail after the ISM's complete horizon (False: pure ISM).
    directivity: the source's frequency-dependent directivity (None: omnidirectional); every
        arrival is weighted by it towards the direction that arrival LEFT the source.
    capsules: "ideal" encodes every arrival as an ideal plane wave; "tetra" renders the four
        cardioid capsules of a tetrahedral microphone (TETRA_RADIUS_M, foa.TETRA_ORDER) at their
        real positions -- each arrival reaches each capsule at its own time -- and converts
        them with foa.tetrahedral_a_to_b, as the capture node does with real hardware (exact
        at low frequencies, spatially aliased above ~4 kHz).

    N covers the room's Sabine RT60 after the direct path (capped at MAX_RIR_SECONDS).
    """
    src = np.asarray(source, dtype=float).reshape(3)
    rcv = np.asarray(receiver, dtype=float).reshape(3)
    rot = np.asarray(world_from_receiver, dtype=float)
    if rot.shape != (3, 3) or not np.allclose(rot.T @ rot, np.eye(3), atol=1e-6) or np.linalg.det(rot) < 0:
        raise ValueError(f"world_from_receiver must be a 3x3 rotation, got {rot.tolist()}")
    if not room.contains(rcv):
        raise ValueError(f"receiver {rcv} is outside the room {room.size}")
    if sample_rate <= 0:
        raise ValueError(f"sample rate must be positive, got {sample_rate}")
    if np.linalg.norm(src - rcv) < 1e-3:
        raise ValueError("source and receiver coincide")
    if capsules not in CAPSULE_MODES:
        raise ValueError(f"capsules must be one of {CAPSULE_MODES}, got {capsules!r}")
    rng = rng if rng is not None else np.random.default_rng()

    rt60 = room.sabine_rt60(SPEED_OF_SOUND)
    direct_s = np.linalg.norm(src - rcv) / SPEED_OF_SOUND
    length = int(np.ceil(sample_rate * min(direct_s + max(rt60, 0.05), MAX_RIR_SECONDS)))
    if max_order is None:
        max_order = _auto_order(room, src, rcv, ISM_HORIZON_S * SPEED_OF_SOUND)
    horizon_m = _complete_distance(room, src, rcv, max_order)

    images = image_sources(room, src, max_order)
    offsets = images.positions - rcv
    dist = np.linalg.norm(offsets, axis=1)
    # Beyond the horizon the ISM is incomplete: the tail stands in for those arrivals.
    keep = dist < (horizon_m if tail else np.inf)
    keep &= dist / SPEED_OF_SOUND * sample_rate < length + SINC_TAPS
    offsets, dist, gains, orders = offsets[keep], dist[keep], images.gains[keep], images.orders[keep]
    directions_cam = offsets @ rot  # world -> camera: rot.T @ v, batched
    delays = dist / SPEED_OF_SOUND * sample_rate
    tail_power = 1.0
    if directivity is None:
        rir = _arrivals(directions_cam, gains / dist, delays, length, capsules, sample_rate)
    else:
        band_gains = directivity.gains(-offsets * images.mirror[keep])  # leaving the source
        bands = [_arrivals(directions_cam, g * gains / dist, delays, length, capsules, sample_rate)
                 for g in band_gains]
        nfft = 1 << int(np.ceil(np.log2(length)))
        masks = directivity.band_masks(np.fft.rfftfreq(nfft, 1.0 / sample_rate))
        spec = sum(m[None] * np.fft.rfft(b, nfft, axis=1) for m, b in zip(masks, bands))
        rir = np.fft.irfft(spec, nfft, axis=1)[:, :length]
        # the late field carries the source's power, i.e. its directivity averaged over directions
        tail_power = float(np.mean(band_gains ** 2))

    if tail:
        t_h = horizon_m / SPEED_OF_SOUND
        rir += diffuse_tail(rng, tail_power * _tail_level(gains, orders, dist, rt60, t_h, sample_rate,
                                                           room.volume),
                            rt60, int(np.ceil(t_h * sample_rate)), length, sample_rate)
    sos = butter(2, HIGHPASS_HZ, btype="highpass", fs=sample_rate, output="sos")
    return sosfilt(sos, rir, axis=1).astype(np.float32)


def _arrivals(directions_cam: np.ndarray, amplitude: np.ndarray, delays: np.ndarray, length: int,
              capsules: str, sample_rate: int) -> np.ndarray:
    """(4, length) ACN/SN3D sum of arrivals from camera-frame directions (see foa_rir's capsules)."""
    if capsules == "ideal":
        return _place_arrivals(delays, foa.encode_gains(directions_cam).T * amplitude[None], length)
    u = foa.camera_to_ambisonic(directions_cam / np.linalg.norm(directions_cam, axis=1, keepdims=True))
    looks = np.array([foa.TETRA_CAPSULES[c] for c in foa.TETRA_ORDER], dtype=float) / np.sqrt(3.0)
    cos = u @ looks.T                                                    # (K, 4)
    a_format = np.stack([
        _place_arrivals(delays - TETRA_RADIUS_M * cos[:, i] / SPEED_OF_SOUND * sample_rate,  # nearer: earlier
                        (0.5 * (1.0 + cos[:, i]) * amplitude)[None], length)[0]
        for i in range(4)])
    return foa.tetrahedral_a_to_b(foa.TETRA_ORDER) @ a_format


def _tail_level(gains: np.ndarray, orders: np.ndarray, dist: np.ndarray, rt60: float, t_h: float,
                sample_rate: int, volume: float) -> float:
    """W energy per sample of the diffuse tail, extrapolated back to t = 0.

    Image density is 1/V, so a shell one sample thick at radius r holds 4 pi r^2 c / (V fs)
    images of energy g^2 / r^2: the expected energy per sample is 4 pi c / (V fs) * <g^2>(t).
    <g^2> is measured on the reflections in the last half of the complete ISM (undoing the
    tail's decay) so the tail continues the ISM's level; with too few of them, Sabine theory
    (<g^2>(0) = 1) is used.
    """
    t = dist / SPEED_OF_SOUND
    shell = (orders > 0) & (t >= 0.5 * t_h)
    mean_g2 = 1.0
    if np.count_nonzero(shell) >= 20:
        mean_g2 = float(np.mean(gains[shell] ** 2 * np.exp(2.0 * _DECAY_60DB * t[shell] / rt60)))
    return 4.0 * np.pi * SPEED_OF_SOUND / (volume * sample_rate) * mean_g2


def estimate_rt60(rir_w: np.ndarray, fs: int = foa.SAMPLE_RATE, decay_db: float = 20.0) -> float:
    """RT60 (s) by Schroeder backward integration: a line fitted to the energy decay curve
    from -5 dB to -(5 + decay_db) dB, extrapolated to -60 dB (T20 by default)."""
    h = np.asarray(rir_w, dtype=float).ravel()
    energy = np.cumsum(h[::-1] ** 2)[::-1]
    if energy.size == 0 or energy[0] <= 0:
        raise ValueError("impulse response is silent")
    edc = 10.0 * np.log10(np.maximum(energy / energy[0], 1e-300))
    fit = (edc <= -5.0) & (edc >= -5.0 - decay_db)
    if np.count_nonzero(fit) < 2 or edc[-1] > -5.0 - decay_db:
        raise ValueError(f"impulse response does not decay by {5 + decay_db:.0f} dB")
    t = np.flatnonzero(fit) / fs
    slope = np.polyfit(t, edc[fit], 1)[0]
    if slope >= 0:
        raise ValueError("energy decay curve does not fall")
    return float(-60.0 / slope)


DRR_DIRECT_WINDOW_S = (0.001, 0.0025)
"""The direct sound of an impulse response for its DRR: from 1 ms before the direct arrival (the
fractional-delay sinc spreads it over SINC_TAPS samples) to 2.5 ms after, the usual few-millisecond
window; wider than the mesh world's directivity split (mesh/world.py DIRECT_WINDOW_S, 1 ms after),
which only decides which part of a response gets the direct sound's gain."""


def direct_to_reverberant_db(rir_w: np.ndarray, fs: int = foa.SAMPLE_RATE, first_arrival_s: float | None = None,
                             window_s: tuple[float, float] = DRR_DIRECT_WINDOW_S) -> float:
    """Direct-to-reverberant ratio (dB) of an omnidirectional (W) impulse response: the energy
    in `window_s` around the direct arrival over all the rest. The arrival is `first_arrival_s`
    where the geometry gives it (a talker facing away, or hidden, can have a reflection louder
    than its direct sound), else the first sample within 10 % of the largest. Why the simulator
    states it: below about -9 dB the reflections of a talker outweigh its direct sound even at
    speech onsets, and a sound-only DoA fails there (README, "Where hearing fails")."""
    h = np.asarray(rir_w, dtype=float).ravel()
    if not np.all(np.isfinite(h)):
        raise ValueError("impulse response is not finite")
    peak = np.abs(h).max() if h.size else 0.0
    if not peak > 0:
        raise ValueError("impulse response is silent")
    first = (int(round(first_arrival_s * fs)) if first_arrival_s is not None
             else int(np.argmax(np.abs(h) >= 0.1 * peak)))
    lo, hi = max(first - int(round(window_s[0] * fs)), 0), max(first + int(round(window_s[1] * fs)), 0)
    direct = float(np.sum(h[lo:hi] ** 2))
    rest = float(np.sum(h ** 2)) - direct
    if rest <= 0:
        return float("inf")
    if direct <= 0:
        return float("-inf")
    return float(10.0 * np.log10(direct / rest))


def convolve_foa(dry: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """Dry mono signal (N,) convolved with a (4, M) FOA RIR -> (4, N + M - 1) float32."""
    x = np.asarray(dry, dtype=float)
    h = np.asarray(rir, dtype=float)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"dry signal must be a non-empty 1-D array, got shape {x.shape}")
    if h.ndim != 2 or h.shape[0] != 4 or h.shape[1] == 0:
        raise ValueError(f"RIR must have shape (4, M), got {h.shape}")
    return fftconvolve(x[None, :], h, axes=1).astype(np.float32)


def mix_sources(signals: list[np.ndarray]) -> np.ndarray:
    """Plain sum of (4, N_i) FOA signals, each zero-padded to the longest (as the reference)."""
    if not signals:
        raise ValueError("need at least one signal to mix")
    arrays = [np.asarray(s) for s in signals]
    for a in arrays:
        if a.ndim != 2 or a.shape[0] != 4:
            raise ValueError(f"every signal must have shape (4, N), got {a.shape}")
    out = np.zeros((4, max(a.shape[1] for a in arrays)), dtype=np.result_type(np.float32, *arrays))
    for a in arrays:
        out[:, :a.shape[1]] += a
    return out
