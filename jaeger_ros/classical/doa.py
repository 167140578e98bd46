"""Direction of arrival from first-order ambisonics by the active intensity vector.

Each time-frequency bin of an ACN/SN3D signal gives a direction (its active intensity) and a
coherence c = (4/3)|I|/E in [0, 1] (1 for a single plane wave, 0 for a diffuse field). Indoors
at 2-4 m the reverberant field carries far more energy than the direct sound (DRR -3 to
-15 dB), so only ONSETS vote: short frames whose energy jumps well above the preceding
milliseconds, i.e. the direct sound before its reflections arrive (the precedence effect).
Votes are weighted by energy and coherence. One source is the robust mean of the votes;
several are peaks of a kernel density on the sphere.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from jaeger_ros import foa as foa_core
from jaeger_ros.geometry import azel_from_direction

BAND_HZ = (200.0, 4000.0)
"""Speech band where FOA intensity is reliable (above room modes, below spatial aliasing of
real tetrahedral arrays)."""
N_FFT = 128                 # 8 ms frames, 1 ms hop: onsets are resolved before reflections pile up
HOP = 16
ONSET_RATIO = 32.0          # a bin votes when its energy jumps 15 dB over the last ONSET_LAG hops
ONSET_LAG = 8
MIN_VOTES = 50
ONSET_RATIO_OVERLAP = 4.0   # with two talkers one's onsets ride on the other's reverberation
COHERENCE_POWER = 8
KAPPA = 400.0               # von Mises concentration of the density kernel (~3 deg wide)
MIN_PEAK_SEPARATION_DEG = 6.0
LOCAL_MAX_RADIUS_DEG = 4.0
_CANDIDATES = 1500
_MAX_BINS = 6000
_FULL_COHERENCE = 4.0 / 3.0  # E = (4/3)|s|^2 and |I| = |s|^2 for a plane wave in SN3D


@dataclass(frozen=True)
class DoaEstimate:
    """A direction in the JAEGER camera frame (x right, y up, z backward).

    confidence: weighted mean resultant length of the bins near this direction, times the
    share of all votes they carry -- near 1 for a dry single source, low for diffuse sound
    or for the weaker of two overlapping talkers.
    """

    azimuth_deg: float
    elevation_deg: float
    direction: np.ndarray
    confidence: float


@dataclass(frozen=True)
class _Votes:
    directions: np.ndarray   # (K, 3) unit, camera frame
    weights: np.ndarray      # (K,)
    freqs: np.ndarray        # (K,) Hz
    energy: np.ndarray       # (K,) bin energy


def _votes(foa: np.ndarray, sample_rate: int, band_hz: tuple[float, float] = BAND_HZ,
           n_fft: int = N_FFT, hop: int = HOP, onset_ratio: float | None = ONSET_RATIO) -> _Votes:
    a = np.asarray(foa, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] != 4:
        raise ValueError(f"FOA must have shape (4, N), got {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError("FOA contains NaN or infinite samples")
    field = foa_core.intensity_vectors(a, n_fft, hop)
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    band = (freqs >= band_hz[0]) & (freqs <= band_hz[1])
    inten = field.intensity[:, band].reshape(3, -1).T          # (K, 3) ambisonic axes
    energy = field.energy[band].reshape(-1)
    f = np.repeat(freqs[band], field.energy.shape[1])
    norm = np.linalg.norm(inten, axis=1)
    coherence = np.clip(_FULL_COHERENCE * norm / energy, 0.0, 1.0)
    keep = norm > 0
    if onset_ratio is not None:
        e = field.energy[band]                                  # (F, T)
        previous = np.zeros_like(e)
        for lag in range(1, ONSET_LAG + 1):
            previous[:, lag:] += e[:, :-lag]
        rise = (e / (previous / ONSET_LAG + 1e-12)).reshape(-1)
        # Mid-utterance windows have few clean onsets: relax the threshold until enough vote.
        ratio = onset_ratio
        while ratio > 1.0 and np.count_nonzero(keep & (rise > ratio)) < MIN_VOTES:
            ratio /= 2.0
        keep &= rise > ratio
    if not np.any(keep):
        raise ValueError("FOA has no directional onsets in the speech band (silence?)")
    weights = energy[keep] * coherence[keep] ** COHERENCE_POWER
    idx = np.flatnonzero(keep)
    if idx.size > _MAX_BINS:  # the strongest bins carry the direction; the rest only cost time
        top = np.argpartition(weights, -_MAX_BINS)[-_MAX_BINS:]
        idx, weights = idx[top], weights[top]
    dirs = foa_core.ambisonic_to_camera(inten[idx] / norm[idx, None])
    return _Votes(dirs, weights, f[idx], energy[idx])


def _estimate(votes: _Votes, seed: np.ndarray, total_weight: float,
              radius_deg: float = 25.0, iterations: int = 4) -> DoaEstimate:
    """Robust mean: re-average the votes within `radius_deg` of the current direction."""
    direction = seed / np.linalg.norm(seed)
    cos_r = np.cos(np.radians(radius_deg))
    near = np.ones(len(votes.weights), bool)
    for _ in range(iterations):
        near = votes.directions @ direction >= cos_r
        if not np.any(near):
            break
        mean = (votes.weights[near, None] * votes.directions[near]).sum(axis=0)
        if np.linalg.norm(mean) == 0:
            break
        direction = mean / np.linalg.norm(mean)
    w = votes.weights[near]
    resultant = np.linalg.norm((w[:, None] * votes.directions[near]).sum(axis=0)) / max(w.sum(), 1e-30)
    share = w.sum() / max(total_weight, 1e-30)
    az, el = azel_from_direction(direction)
    return DoaEstimate(float(az), float(el), direction, float(np.clip(resultant * share, 0.0, 1.0)))


def estimate_doa(foa: np.ndarray, sample_rate: int = foa_core.SAMPLE_RATE) -> DoaEstimate:
    """The dominant source of (4, N) ACN/SN3D FOA."""
    votes = _votes(foa, sample_rate)
    peaks = _density_peaks(votes, 1)
    return _estimate(votes, peaks[0], votes.weights.sum())


def _density_peaks(votes: _Votes, count: int) -> list[np.ndarray]:
    """Up to `count` maxima of the vote density, at least MIN_PEAK_SEPARATION_DEG apart.

    The density is evaluated at the strongest votes themselves (a data-adaptive grid, finer
    than any fixed sphere grid where it matters).
    """
    top = np.argsort(votes.weights)[::-1][:_CANDIDATES]
    cand = votes.directions[top]
    density = np.exp(KAPPA * (cand @ votes.directions.T - 1.0)) @ votes.weights
    cos_sep = np.cos(np.radians(MIN_PEAK_SEPARATION_DEG))
    cos_local = np.cos(np.radians(LOCAL_MAX_RADIUS_DEG))
    peaks: list[np.ndarray] = []
    for i in np.argsort(density)[::-1]:
        if len(peaks) == count:
            break
        if all(cand[i] @ p < cos_sep for p in peaks):
            # a real peak dominates its neighbourhood; a shoulder of a stronger peak does not
            if density[i] >= density[cand @ cand[i] >= cos_local].max():
                peaks.append(cand[i])
    return peaks


def estimate_sources(foa: np.ndarray, sample_rate: int = foa_core.SAMPLE_RATE,
                     max_sources: int = 2) -> list[DoaEstimate]:
    """Up to `max_sources` directions of overlapping sources, strongest first."""
    if max_sources < 1:
        raise ValueError(f"max_sources must be >= 1, got {max_sources}")
    votes = _votes(foa, sample_rate, onset_ratio=ONSET_RATIO_OVERLAP if max_sources > 1 else ONSET_RATIO)
    total = votes.weights.sum()
    found = [_estimate(votes, p, total, radius_deg=MIN_PEAK_SEPARATION_DEG / 2)
             for p in _density_peaks(votes, max_sources)]
    return sorted(found, key=lambda e: e.confidence, reverse=True)


def low_pitch_score(foa: np.ndarray, direction: np.ndarray,
                    sample_rate: int = foa_core.SAMPLE_RATE, radius_deg: float = 15.0) -> float:
    """Share of the energy arriving from `direction` that lies at 80-150 Hz within 80-260 Hz.

    A male voice (F0 ~ 85-155 Hz) puts its fundamental there, a female voice (F0 ~ 165-255 Hz)
    does not, so of two talkers the one with the higher score is taken as the male one.
    """
    votes = _votes(foa, sample_rate, band_hz=(80.0, 260.0), n_fft=1024, hop=256, onset_ratio=None)
    near = votes.directions @ (direction / np.linalg.norm(direction)) >= np.cos(np.radians(radius_deg))
    low = near & (votes.freqs < 150.0)
    total = votes.energy[near].sum()
    return float(votes.energy[low].sum() / total) if total > 0 else 0.0


def estimate_by_gender(foa: np.ndarray, gender: str,
                       sample_rate: int = foa_core.SAMPLE_RATE) -> DoaEstimate:
    """The direction of the requested voice ("male"/"female") among two overlapping talkers.

    The two strongest directions are found, then the one whose arriving energy has more of a
    male fundamental (see low_pitch_score) is called male. With one peak found, it is returned.
    """
    g = gender.strip().lower()
    if g not in ("male", "female", "m", "f"):
        raise ValueError(f"gender must be male or female, got {gender!r}")
    sources = estimate_sources(foa, sample_rate, 2)
    if len(sources) < 2:
        return sources[0]
    scores = [low_pitch_score(foa, s.direction, sample_rate) for s in sources]
    male = int(np.argmax(scores))
    return sources[male] if g in ("male", "m") else sources[1 - male]
