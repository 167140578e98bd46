"""Noise-aware direct-path-dominance DoA from first-order ambisonics ("classical-audio-robust").

Why another estimator: doa.py's onset votes (bins whose energy jumps 15 dB over the last 8 ms)
pick the direct sound in a quiet room, but diffuse noise at 10 dB fills the "before" of every
onset, so few bins pass and those that do are weighted by an energy and a coherence that the
noise inflates and deflates. Here the same precedence idea is applied to the SPEECH part of each
bin, with the noise's statistics tracked and taken out:

1. Noise power per frequency by minimum statistics (Martin 2001): the time-smoothed energy of
   each frequency has its minima in speech pauses; the noise floor is a low percentile of it
   times a bias factor. In a stream the floor is tracked over the last seconds (NoiseTracker).
2. Speech energy s = E - N (spectral subtraction). A bin is a direct-path-dominant onset when s
   rises DPD_RATIO over its own last ONSET_LAG frames AND s is a local SNR above MIN_SNR_DB
   over the noise: the direct-path dominance test of Nadiri & Rafaely (2014) in its simplest
   form (one dominant plane wave in a short TF region), made noise-aware.
3. Diffuseness from the noise-compensated coherence, smoothed over neighbouring frequencies
   as DirAC does (Pulkki 2007; Del Galdo, Thiergart et al. 2012: diffuseness = 1 - |<I>|/c<E>):
   psi = 1 - (4/3)|<I>| / <s>. A diffuse field (noise or late reverberation) has psi near 1
   and gets weight (1 - psi)^COHERENCE_POWER, near 0.
4. Each vote is weighted by its speech energy, its directness and the speech-presence
   (Wiener) gain xi / (1 + xi), xi = s / N: speech-activity weighting per bin.

The direction is then the density peak and robust mean of the votes (doa.estimate_from_votes).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.ndimage import convolve1d
from scipy.signal import lfilter

from jaeger_ros.classical import doa
from jaeger_ros.core import foa as foa_core

BAND_HZ = doa.BAND_HZ
N_FFT = doa.N_FFT
HOP = doa.HOP
ONSET_LAG = doa.ONSET_LAG
DPD_RATIO = 8.0            # speech energy 9 dB over its own last ONSET_LAG frames
MIN_SNR_DB = 10.0          # local speech-to-noise ratio of a voting bin (0 dB diffuse: 13.2 -> 9.3 deg median vs 6 dB)
RELAX_SNR_DB = 3.0
GENDER_DPD_RATIO = 32.0     # B: stricter onsets first (the pitch labels need the voice that STARTS there)
COHERENCE_POWER = 8
SMOOTH_BINS = 1            # diffuseness averaged over +-1 frequency bin (DirAC-style smoothing)
NOISE_PERCENTILE = 5.0     # minimum statistics: the floor is a low percentile of the smoothed energy ...
NOISE_BIAS = 2.0           # ... times this (the minimum of a smoothed chi-square power underestimates its mean)
NOISE_SMOOTH_FRAMES = 16   # 16 ms recursive smoothing before taking minima
MIN_VOTES = 30
_MAX_BINS = 6000
_FULL_COHERENCE = 4.0 / 3.0


@dataclass(frozen=True)
class Spectra:
    """Band-limited STFT quantities of a (4, N) FOA window (ambisonic axes)."""

    intensity: np.ndarray  # (3, F, T)
    energy: np.ndarray     # (F, T)
    times: np.ndarray      # (T,) s, frame centres
    freqs: np.ndarray      # (F,) Hz, bin centres


def spectra(foa: np.ndarray, sample_rate: int) -> Spectra:
    a = doa.checked_foa(foa)
    f = foa_core.intensity_vectors(a, N_FFT, HOP)
    freqs = np.fft.rfftfreq(N_FFT, 1.0 / sample_rate)
    band = (freqs >= BAND_HZ[0]) & (freqs <= BAND_HZ[1])
    times = np.arange(f.energy.shape[1]) * HOP / sample_rate
    return Spectra(f.intensity[:, band], f.energy[band], times, freqs[band])


def _smoothed(energy: np.ndarray) -> np.ndarray:
    """First-order recursive smoothing of (F, T) energy along time (Martin 2001's P(lambda, k))."""
    alpha = 1.0 - 1.0 / NOISE_SMOOTH_FRAMES
    return lfilter([1.0 - alpha], [1.0, -alpha], energy, axis=1,
                   zi=(alpha * energy[:, :1]))[0] if energy.shape[1] else energy


def noise_floor(energy: np.ndarray) -> np.ndarray:
    """(F,) noise energy of a window by minimum statistics (see the module doc)."""
    return NOISE_BIAS * np.percentile(_smoothed(energy), NOISE_PERCENTILE, axis=1)


@dataclass
class NoiseTracker:
    """Noise floor of a stream: the minimum of the per-window floors of the last `memory_s`
    seconds (a window full of speech has a high floor; a pause in any recent window sets it)."""

    memory_s: float = 2.0
    _floors: list[tuple[float, np.ndarray]] = field(default_factory=list)

    def update(self, stamp: float, energy: np.ndarray) -> np.ndarray:
        floor = noise_floor(energy)
        self._floors = [(t, f) for t, f in self._floors if t > stamp - self.memory_s and f.shape == floor.shape]
        self._floors.append((stamp, floor))
        return np.min(np.stack([f for _, f in self._floors]), axis=0)

    def reset(self) -> None:
        self._floors = []


def directness(sp: Spectra, noise: np.ndarray) -> np.ndarray:
    """(F, T) 1 - diffuseness of each bin's speech part: (4/3)|<I>| / <E - N>, <> the mean over
    +-SMOOTH_BINS frequencies (DirAC's expectation taken over frequency instead of time, so an
    8 ms onset frame keeps its own value). 1 for one plane wave, near 0 for a diffuse field,
    whose intensities point every way and cancel in the mean."""
    s = np.maximum(sp.energy - np.asarray(noise, float)[:, None], 0.0)
    kernel = np.ones(2 * SMOOTH_BINS + 1)
    s_sm = convolve1d(s, kernel, axis=0, mode="constant")
    i_sm = convolve1d(sp.intensity, kernel, axis=1, mode="constant")
    return np.clip(_FULL_COHERENCE * np.linalg.norm(i_sm, axis=0) / np.maximum(s_sm, 1e-30), 0.0, 1.0)


def votes(foa: np.ndarray, sample_rate: int = foa_core.SAMPLE_RATE, noise: np.ndarray | None = None,
          valid: np.ndarray | None = None, min_votes: int = MIN_VOTES,
          ratio: float = DPD_RATIO) -> doa.Votes:
    """Direct-path-dominant, noise-compensated votes of (4, N) FOA (`noise`: a tracked (F,)
    floor, else estimated from this window). The DPD `ratio` is halved until `min_votes` bins
    pass (0: never relaxed). `valid` (N,): see doa._votes."""
    return spectra_votes(spectra(foa, sample_rate), noise, valid, min_votes, ratio)


def spectra_votes(sp: Spectra, noise: np.ndarray | None = None, valid: np.ndarray | None = None,
                  min_votes: int = MIN_VOTES, ratio: float = DPD_RATIO, min_snr_db: float | None = None,
                  tilt: float = 0.0) -> doa.Votes:
    """votes() of precomputed spectra (a stream computes them once for noise tracking and votes);
    `min_snr_db`: the local SNR threshold (None: MIN_SNR_DB); `tilt`: each vote's weight times
    (f / 1 kHz)^tilt (which bins vote does not change; see tracking.RobustPool.TILT)."""
    e = sp.energy
    n = noise_floor(e) if noise is None else np.asarray(noise, float)
    s = np.maximum(e - n[:, None], 0.0)
    direct = directness(sp, n)
    norm = np.linalg.norm(sp.intensity, axis=0)
    previous = np.zeros_like(s)
    for lag in range(1, ONSET_LAG + 1):
        previous[:, lag:] += s[:, :-lag]
    previous /= ONSET_LAG
    rise = s / (previous + 0.1 * n[:, None] + 1e-20)
    rise[:, :ONSET_LAG] = 0.0
    # a gain step (AGC, a driver's volume) lifts every bin at once and would pass for an onset
    raw_before = np.zeros_like(e)
    for lag in range(1, ONSET_LAG + 1):
        raw_before[:, lag:] += e[:, :-lag]
    raw_rise = e / (raw_before / ONSET_LAG + 1e-12)
    raw_rise[:, :ONSET_LAG] = 0.0
    rise[:, doa._level_steps(raw_rise, raw_before.sum(axis=0) / ONSET_LAG, e.sum(axis=0))] = 0.0
    xi = s / np.maximum(n[:, None], 1e-20)
    keep = norm > 0
    if valid is not None:
        gap = np.concatenate([[0], np.cumsum(~np.asarray(valid, bool))])
        centre = np.arange(e.shape[1]) * HOP
        total = np.asarray(valid).size
        lo = np.clip(centre - ONSET_LAG * HOP - N_FFT // 2, 0, total)
        hi = np.clip(centre + N_FFT // 2, 0, total)
        keep &= (gap[hi] == gap[lo])[None, :]
    # relax step by step: the DPD ratio halves and the local SNR threshold drops RELAX_SNR_DB
    snr_db = MIN_SNR_DB if min_snr_db is None else min_snr_db
    while (ratio > 1.0 and snr_db > 0.0
           and np.count_nonzero(keep & (rise > ratio) & (xi > 10.0 ** (snr_db / 10.0))) < min_votes):
        ratio, snr_db = ratio / 2.0, snr_db - RELAX_SNR_DB
    keep &= (rise > ratio) & (xi > 10.0 ** (max(snr_db, 0.0) / 10.0))
    if not np.any(keep):
        raise ValueError("FOA has no direct-path-dominant speech bins in the band (silence or noise only?)")
    weights = (s * direct ** COHERENCE_POWER * xi / (1.0 + xi)
               * (np.asarray(sp.freqs, float)[:, None] / 1000.0) ** tilt)[keep]
    direction = np.transpose(sp.intensity, (1, 2, 0))[keep]      # single-bin intensity: smoothing it measured worse
    length = np.linalg.norm(direction, axis=1)
    ok = length > 0
    weights, direction, length = weights[ok], direction[ok], length[ok]
    times = np.broadcast_to(sp.times, e.shape)[keep][ok]
    if weights.size > _MAX_BINS:
        top = np.argpartition(weights, -_MAX_BINS)[-_MAX_BINS:]
        weights, direction, length, times = weights[top], direction[top], length[top], times[top]
    dirs = foa_core.ambisonic_to_camera(direction / length[:, None])
    return doa.Votes(dirs, weights, times)


def estimate_doa(foa: np.ndarray, sample_rate: int = foa_core.SAMPLE_RATE,
                 valid: np.ndarray | None = None) -> doa.DoaEstimate:
    """The dominant source of (4, N) ACN/SN3D FOA."""
    return doa.estimate_from_votes(votes(foa, sample_rate, valid=valid))


def estimate_by_gender(foa: np.ndarray, gender: str, sample_rate: int = foa_core.SAMPLE_RATE,
                       pitch: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> doa.DoaEstimate:
    """The requested voice ("male"/"female") among overlapping talkers, by voice not by box:
    each direct-path-dominant vote is labelled by the pitch of what is NEW in W over the 40 ms
    after it (doa.pitch_track new_only: the voice whose syllable starts there); F0 below
    doa.MALE_MAX_F0_HZ is a male voice. The DPD ratio is relaxed until doa.MIN_GENDER_VOTES
    votes carry the requested pitch; each onset frame's weight is square-root compressed (one
    joint onset of both voices cannot outvote many). Without such votes: the dominant source.
    `pitch`: doa.pitch_track(W, new_only=True) when the caller already has it."""
    male = doa.is_male(gender)
    a = np.asarray(foa, dtype=np.float64)
    sp = spectra(a, sample_rate)
    pitch = pitch or doa.pitch_track(a[0], sample_rate, new_only=True)
    ratio = GENDER_DPD_RATIO
    mine = np.zeros(0, bool)
    while True:
        try:
            onset = spectra_votes(sp, None, None, 0, ratio)
        except ValueError:  # none this strict: relax
            ratio /= 2.0
            if ratio < 1.0:
                break
            continue
        mine = doa.voiced_as(onset.times, pitch, male)
        if np.count_nonzero(mine) >= doa.MIN_GENDER_VOTES or ratio <= 1.0:
            break
        ratio /= 2.0
    if not np.any(mine):
        return doa.estimate_from_votes(spectra_votes(sp))
    weights = doa._frame_compressed(onset)
    own = doa.Votes(onset.directions[mine], weights[mine], onset.times[mine])
    return doa._estimate(own, doa._density_peaks(own, 1)[0], weights.sum(), radius_deg=10.0)
