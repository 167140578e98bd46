"""Pooled direct-path covariance DoA from first-order ambisonics ("classical-audio-dpd").

Why: doa.py / doa_robust.py take the direction of EACH onset bin (its intensity) and then a
robust mean of those unit vectors. At 10 dB diffuse noise one 8 ms bin's intensity is mostly
noise, and averaging directions (a non-linear function of the noisy bin) keeps a bias and a
wide spread. Here the noise is averaged BEFORE the direction is taken:

1. Spatial covariance of the FOA STFT (8 ms frames, 1 ms hop) summed over blocks of
   BLOCK_BINS neighbouring frequencies. Frequency smoothing is the step of the direct-path
   dominance (DPD) test of Nadiri & Rafaely (2014, "Localization of multiple speakers under
   high reverberation using a spherical microphone array and the direct-path dominance test",
   IEEE/ACM TASLP 22(10)); an ideal FOA steering vector [1, y, z, x] (ACN/SN3D) is the same at
   every frequency, so no focusing is needed, and it is real, so the real part is used.
2. The noise covariance of each block from its quietest frames (minimum statistics in the
   spirit of Martin 2001), subtracted.
3. Onset regions (frame, block) vote: the block's speech power rises DPD_RATIO over its own
   last 8 ms and stands MIN_SNR_DB over the noise -- the direct sound before the reverberant
   tail builds up (as in doa_robust). Each region's vote is the principal generalised
   eigenvector (noise-whitened) of its covariance, weighted by its power.
4. Pooling: the noise-subtracted covariances of the regions whose votes lie within
   AGG_RADIUS_DEG of a seed direction are summed (each scaled to unit speech power times its
   speech-presence gain xi / (1 + xi), so every onset counts alike), whitened for a diffuse
   residue (W vs dipoles 1 : 1/3) and the direction is the principal eigenvector's; repeated
   AGG_ITER times from the new direction. The seed is doa_robust's answer (its density peak
   is the most reliable choice of WHICH source; this step refines WHERE).

`seeding="flat"` (the "classical-audio-dpd-flat" option) changes only WHICH source step 4 starts
from. doa_robust weights each vote by its speech energy, whose spread over a clip is
heavy-tailed: on the wrong-source answers of the seed-2026 10 dB split the winning density peak
held 82-100 % of its weight in ONE 20 ms stretch (one loud burst of noise or of a reflection),
while the true direction's votes came from 9-23 separate stretches. Here each seed vote weighs
its doa_robust weight to the SEED_WEIGHT_POWER, 1/4: speech energy to the 1/4 (its spread
flattened), directness squared and the speech-presence gain to the 1/4 (a diffuse bin still
weighs little), so many consistent onsets outvote one burst; the density kernel is SEED_KAPPA
(~5 degrees, ~1.6x doa's KAPPA kernel, width ~ 1/sqrt(kappa): the few votes of a 0 dB clip
then form one peak).

B, by voice, with seeding="flat": on the seed-2031 10 dB dev split 20 of the 23 answers on the
wrong talker were requests for the female voice -- votes at the male talker pass for female (a
window where both voices sound has the higher one's pitch, or an octave error) -- yet at the
two talkers' TRUE directions the male talker's share of male-labelled windows was the larger in
95 of 100 items: what failed was finding the weaker talker. So two_talker_seed finds two
talkers from the sound (the density peak of flat_votes and the peak of the votes more than
SECOND_TALKER_DEG from it) and tells them apart by their male shares, as task E does with boxes.
On a tie, contrast_seed: each vote labelled by the pitch of the syllable it starts
(doa.voiced_as, both voices), the seed is where the requested voice's normalised vote density
most exceeds GENDER_CONTRAST times the other voice's (the male votes cancel mislabelled ones).

`lead="edge"` with `fuse=True` (the "classical-audio-dpd-fuse" option, seeding="flat") changes
WHERE. Leading edge: the onset test fires on the frame whose 8 ms window already holds a few ms of
the new sound and with it the floor reflection 1-2 ms behind; the frame LEAD_FRAMES hop (1 ms)
earlier holds the first wavefront with less of it (the precedence effect's first-wavefront
principle, Litovsky, Colburn, Yost & Guzman 1999, "The precedence effect", JASA 106(4)). On the
seed-2031 dev splits (A, flat seed) it moved the pooled answer toward the emitting driver: median
1.99 -> 1.40 deg clean, 3.99 -> 3.37 at 10 dB, 7.06 -> 6.02 at 0 dB; a frame 2 ms earlier was
better clean (1.13) but worse at 10 dB (3.67: less speech power), and pooling later frames too
was much worse (2 ms more: 3.35 clean), so the early reflections, not the noise, set the clean
error. Fusion: at 10 dB the pooled covariance and the flat votes' robust mean (per-bin
intensities, other time-frequency bins, another non-linearity) err apart, so the answer is their
inverse-variance weighted mean (Hartung, Knapp & Sinha 2008, "Statistical Meta-Analysis with
Applications", ch. 4), each variance the squared standard error of its own votes' weighted mean
(_mean_variance: the flat votes within VOTE_RADIUS_DEG; the region votes pooled, weights
xi / (1 + xi)). B fuses likewise, with the flat votes of the requested pitch near the voice's
seed. Dev splits, A median / mean against the label: clean 1.89 / 2.11 -> 2.00 / 1.95 (the
label-driver floor), 10 dB 3.45 / 5.49 -> 3.00 / 4.69, 0 dB 6.58 / 11.65 -> 5.08 / 9.60.

`model="floor"` (the "classical-audio-dpd-floor" option) fits the pooled covariance with TWO
waves at the one-wave azimuth -- the direct sound and its floor reflection, whose image source
lies straight below the source -- and answers the stronger one (a deterministic maximum-
likelihood / subspace fit over both elevations). It removes most of the ~1.3-2 degree downward
pull of the floor reflection but its variance costs more than the bias gains (README).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from jaeger_ros.classical import doa, doa_robust
from jaeger_ros.core import foa as foa_core
from jaeger_ros.core.geometry import azel_from_direction

BAND_HZ = doa.BAND_HZ
N_FFT = doa.N_FFT
HOP = doa.HOP
ONSET_LAG = doa.ONSET_LAG
BLOCK_BINS = 8             # 1 kHz at 125 Hz per bin
BLOCK_STEP = 4
DPD_RATIO = 8.0            # block speech power 9 dB over its own last ONSET_LAG frames
MIN_SNR_DB = 6.0
RELAX_SNR_DB = 3.0
MIN_VOTES = 30
NOISE_PERCENTILE = 10.0    # quietest frames of each block give its noise covariance
NOISE_FLOOR = 1e-4         # regularisation: a clean recording's "noise" is this share of its median power
AGG_RADIUS_DEG = 15.0
AGG_ITER = 3
FLOOR_GRID_DEG = 0.5
SEED_WEIGHT_POWER = 0.25   # seeding="flat": a seed vote weighs its doa_robust weight to this power
SEED_KAPPA = 150.0         # seeding="flat": density kernel ~5 deg wide (doa.KAPPA's ~3 deg splits sparse 0 dB votes)
GENDER_CONTRAST = 0.5      # seeding="flat", B: the other voice's normalised density counts against this much
SECOND_TALKER_DEG = 12.0   # seeding="flat", B: the second talker's peak among the votes this far from the first
SECOND_TALKER_VOTES = 5    # ... when at least this many votes lie there (as many as a voice needs: doa.MIN_GENDER_VOTES)
LEAD_FRAMES = 1            # lead="edge": a region's covariance is this many hops (1 ms) before its onset frame
VOTE_RADIUS_DEG = 25.0     # fuse: the votes this near their robust mean (doa._estimate's radius) give its spread
VOICE_RADIUS_DEG = 10.0    # fuse, B: ... one voice's robust mean (contrast_seed's radius: the other talker is near)
MODELS = ("one", "floor")
SEEDINGS = ("robust", "flat")
LEADS = ("onset", "edge")
_DIFFUSE = np.array([1.0, 1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0])  # isotropic field in SN3D: W vs each dipole
_SCALE = np.sqrt(_DIFFUSE)


@dataclass(frozen=True)
class Regions:
    """Onset regions (frame, frequency block) of a window and each one's vote."""

    cov: np.ndarray         # (K, 4, 4) noise-subtracted covariance (ACN)
    speech: np.ndarray      # (K,) speech power
    xi: np.ndarray          # (K,) speech-to-noise power ratio
    votes: doa.Votes        # one per region (directions in the camera frame)


def block_covariances(foa: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """(T, B, 4, 4) real part of the STFT covariance summed over B overlapping frequency blocks
    of BLOCK_BINS bins in BAND_HZ (ACN channel order), and the (T,) frame centre times."""
    a = doa.checked_foa(foa)
    spec = foa_core.stft(a, N_FFT, HOP)                                   # (4, F, T)
    freqs = np.fft.rfftfreq(N_FFT, 1.0 / sample_rate)
    band = np.flatnonzero((freqs >= BAND_HZ[0]) & (freqs <= BAND_HZ[1]))
    x = spec[:, band]                                                     # (4, Fb, T)
    outer = np.einsum("aft,bft->tfab", x, np.conj(x)).real               # (T, Fb, 4, 4)
    csum = np.concatenate([np.zeros_like(outer[:, :1]), np.cumsum(outer, axis=1)], axis=1)
    starts = np.arange(0, max(len(band) - BLOCK_BINS, 0) + 1, BLOCK_STEP)
    ends = np.minimum(starts + BLOCK_BINS, len(band))
    return csum[:, ends] - csum[:, starts], np.arange(outer.shape[0]) * HOP / sample_rate


def _power(cov: np.ndarray) -> np.ndarray:
    """Energy of (..., 4, 4) ACN/SN3D covariances in doa's convention: W + (X + Y + Z) / 3."""
    return np.einsum("...ii,i->...", cov, _DIFFUSE)


def noise_covariance(cov: np.ndarray) -> np.ndarray:
    """(B, 4, 4) noise covariance of each block: the mean over its NOISE_PERCENTILE quietest
    frames, times 1.5 (the quietest frames of a fluctuating power sit below its mean), plus a
    small diffuse floor so a noise-free recording still whitens."""
    p = _power(cov)                                                       # (T, B)
    quiet = p <= np.percentile(p, NOISE_PERCENTILE, axis=0, keepdims=True)
    n = 1.5 * np.einsum("tb,tbij->bij", quiet, cov) / np.maximum(quiet.sum(axis=0), 1)[:, None, None]
    floor = np.maximum(NOISE_FLOOR * np.median(p, axis=0), 1e-20)          # > 0 even for digital silence
    return n + floor[:, None, None] * np.diag(_DIFFUSE)[None]


def _steering(d: np.ndarray) -> np.ndarray:
    """(..., 4) ACN/SN3D steering vectors [1, y, z, x] of (..., 3) ambisonic-axis directions."""
    return np.concatenate([np.ones(d.shape[:-1] + (1,)), d[..., [1, 2, 0]]], axis=-1)


def regions(foa: np.ndarray, sample_rate: int = foa_core.SAMPLE_RATE, min_votes: int = MIN_VOTES,
            ratio: float = DPD_RATIO, lead: int = 0) -> Regions:
    """Onset regions of (4, N) FOA (module doc, steps 1-3); the onset ratio halves and the SNR
    threshold drops RELAX_SNR_DB until `min_votes` regions pass (0: never relaxed); `lead`: see
    covariance_regions."""
    cov, times = block_covariances(foa, sample_rate)
    return covariance_regions(cov, times, noise_covariance(cov), min_votes, ratio, lead=lead)


def covariance_regions(cov: np.ndarray, times: np.ndarray, n: np.ndarray, min_votes: int = MIN_VOTES,
                       ratio: float = DPD_RATIO, min_snr_db: float = MIN_SNR_DB, lead: int = 0) -> Regions:
    """regions() of block covariances `cov` (T, B, 4, 4) at `times` with the noise covariance
    `n` (B, 4, 4). `lead` > 0: each region holds the covariance, speech power and SNR of the frame
    `lead` hops before the onset frame the test found (the leading edge, module doc)."""
    noise_power = _power(n)[None]
    speech = np.maximum(_power(cov) - noise_power, 0.0)                   # (T, B)
    previous = np.zeros_like(speech)
    for lag in range(1, ONSET_LAG + 1):
        previous[lag:] += speech[:-lag]
    rise = speech / (previous / ONSET_LAG + 0.1 * noise_power + 1e-30)
    rise[:ONSET_LAG] = 0.0
    xi = speech / noise_power
    snr_db = min_snr_db
    while ratio > 1.0 and snr_db > 0.0 and np.count_nonzero((rise > ratio) & (xi > 10 ** (snr_db / 10))) < min_votes:
        ratio, snr_db = ratio / 2.0, snr_db - RELAX_SNR_DB
    t_idx, b_idx = np.nonzero((rise > ratio) & (xi > 10 ** (max(snr_db, 0.0) / 10)))
    t_idx = np.maximum(t_idx - lead, 0)
    r = cov[t_idx, b_idx]                                                 # (K, 4, 4)
    chol = np.linalg.cholesky(n[b_idx])
    inv = np.linalg.inv(chol)
    _, vec = np.linalg.eigh(inv @ r @ np.swapaxes(inv, 1, 2))            # ascending eigenvalues
    u = np.einsum("kij,kj->ki", chol, vec[:, :, 3])                       # principal steering (K, 4)
    d = u[:, [3, 1, 2]] * np.sign(u[:, :1])
    d /= np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-30)
    clean = r - n[b_idx]
    a = _steering(d)
    power = np.einsum("ki,kij,kj->k", a, clean, a) / 4.0                  # a^T (P a a^T) a = 4 P
    keep = power > 0
    if not np.any(keep):
        raise ValueError("FOA has no direct-path-dominant onsets in the speech band (silence or noise only?)")
    return Regions(clean[keep], speech[t_idx, b_idx][keep], xi[t_idx, b_idx][keep],
                   doa.Votes(foa_core.ambisonic_to_camera(d[keep]), power[keep], times[t_idx[keep]]))


def _floor_split(white: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Direct direction (ambisonic axes) of a pooled, diffuse-whitened covariance as the
    stronger of TWO waves at the azimuth of the one-wave direction `d` (the direct sound and
    its floor reflection from the image source straight below), their elevations maximising
    the covariance's energy in their span, tr((A^T A)^-1 A^T C A)."""
    az = np.arctan2(d[1], d[0])
    el = np.radians(np.arange(-89.0, 89.0 + 1e-9, FLOOR_GRID_DEG))
    dirs = np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], axis=1)
    a = _steering(dirs) / _SCALE                                          # whitened steering (E, 4)
    gram = a @ a.T
    proj = a @ white @ a.T
    hi, lo = np.triu_indices(len(el), 1)
    g11, g22, g12 = gram[lo, lo], gram[hi, hi], gram[lo, hi]
    fit = (g22 * proj[lo, lo] + g11 * proj[hi, hi] - 2.0 * g12 * proj[lo, hi]) / np.maximum(g11 * g22 - g12 ** 2, 1e-12)
    k = int(np.argmax(fit))
    pinv = np.linalg.pinv(a[[hi[k], lo[k]]].T)
    power = np.einsum("ai,ij,aj->a", pinv, white, pinv)
    return dirs[hi[k]] if power[0] >= power[1] else dirs[lo[k]]


def pooled_direction(reg: Regions, seed: np.ndarray, mask: np.ndarray | None = None,
                     model: str = "one") -> np.ndarray:
    """Camera-frame direction of the summed covariances of the regions (of `mask`, all when
    None) whose votes lie within AGG_RADIUS_DEG of `seed` (module doc, step 4)."""
    if model not in MODELS:
        raise ValueError(f"model must be one of {MODELS}, got {model!r}")
    direction = np.asarray(seed, float) / np.linalg.norm(seed)
    use = np.ones(len(reg.xi), bool) if mask is None else np.asarray(mask, bool)
    for _ in range(AGG_ITER):
        near = use & (reg.votes.directions @ direction >= np.cos(np.radians(AGG_RADIUS_DEG)))
        if not np.any(near):
            break
        g = reg.xi[near] / (1.0 + reg.xi[near]) / np.maximum(reg.speech[near], 1e-30)
        white = np.einsum("k,kij->ij", g, reg.cov[near]) / _SCALE[:, None] / _SCALE[None, :]
        _, vec = np.linalg.eigh(white)
        u = _SCALE * vec[:, 3]
        d = u[[3, 1, 2]] * np.sign(u[0])
        if model == "floor":
            d = _floor_split(white, d)
        cam = foa_core.ambisonic_to_camera(d)
        direction = cam / np.linalg.norm(cam)
    return direction


def _answer(direction: np.ndarray, confidence: float) -> doa.DoaEstimate:
    az, el = azel_from_direction(direction)
    return doa.DoaEstimate(float(az), float(el), direction, confidence)


def flat_votes(foa: np.ndarray, sample_rate: int = foa_core.SAMPLE_RATE) -> doa.Votes:
    """doa_robust's votes of (4, N) FOA with each weight raised to SEED_WEIGHT_POWER (module doc:
    many consistent onsets outvote one loud burst)."""
    return doa.flattened(doa_robust.votes(foa, sample_rate), SEED_WEIGHT_POWER)


def contrast_seed(votes: doa.Votes, pitch: tuple[np.ndarray, np.ndarray, np.ndarray],
                  male: bool) -> doa.DoaEstimate | None:
    """The requested voice's seed among `votes` labelled by `pitch` (doa.pitch_track new_only):
    the vote of that voice where its normalised density most exceeds GENDER_CONTRAST times the
    other voice's, refined by the robust mean of its own votes; None with fewer than
    doa.MIN_GENDER_VOTES votes of that voice."""
    mine, theirs = doa.voiced_as(votes.times, pitch, male), doa.voiced_as(votes.times, pitch, not male)
    if np.count_nonzero(mine) < doa.MIN_GENDER_VOTES:
        return None
    cand = votes.directions[mine]

    def density(which: np.ndarray) -> np.ndarray:
        w = votes.weights[which]
        return np.exp(SEED_KAPPA * (cand @ votes.directions[which].T - 1.0)) @ w / max(w.sum(), 1e-30)

    score = density(mine) - (GENDER_CONTRAST * density(theirs) if np.any(theirs) else 0.0)
    own = doa.Votes(cand, votes.weights[mine], votes.times[mine])
    return doa._estimate(own, cand[int(np.argmax(score))], votes.weights.sum(), radius_deg=VOICE_RADIUS_DEG)


def two_talker_seed(foa: np.ndarray, votes: doa.Votes, gender: str,
                    sample_rate: int = foa_core.SAMPLE_RATE) -> doa.DoaEstimate | None:
    """The requested voice as one of two talkers found from the sound: the density peak of
    `votes` and the peak of the votes more than SECOND_TALKER_DEG from it, told apart by their
    male shares (doa.talker_male_shares, as task E does with boxes); None when there is no
    second peak (fewer than SECOND_TALKER_VOTES votes that far) or the shares tie."""
    first = doa.estimate_from_votes(votes, SEED_KAPPA)
    far = votes.directions @ first.direction < np.cos(np.radians(SECOND_TALKER_DEG))
    if np.count_nonzero(far) < SECOND_TALKER_VOTES:
        return None
    rest = votes.subset(far)
    second = doa.estimate_from_votes(rest, SEED_KAPPA)
    talkers = [first, second]
    k = doa.pick_by_male_share(doa.talker_male_shares(foa, [t.direction for t in talkers], 2, sample_rate), gender)
    return None if k is None else talkers[k]


def _check_seeding(seeding: str, lead: str = "onset", fuse: bool = False, seeded: bool = False) -> int:
    """Reject an unknown seeding or lead, or fusing without the flat votes (another seeding, or a
    seed given by the caller), before any work (a typo must not fall back to one silently); the
    lead's frame count for covariance_regions."""
    if seeding not in SEEDINGS:
        raise ValueError(f"seeding must be one of {SEEDINGS}, got {seeding!r}")
    if lead not in LEADS:
        raise ValueError(f"lead must be one of {LEADS}, got {lead!r}")
    if fuse and seeding != "flat":
        raise ValueError("fuse=True combines the flat votes' mean: it needs seeding='flat'")
    if fuse and seeded:
        raise ValueError("fuse=True combines the flat votes' mean: it computes its own seed, give none")
    return LEAD_FRAMES if lead == "edge" else 0


def _mean_variance(directions: np.ndarray, weights: np.ndarray, mean: np.ndarray, radius_deg: float) -> float:
    """Squared standard error of the weighted mean direction `mean` of the unit vectors within
    `radius_deg` of it: sum(w^2 |v - mean|^2) / (sum w)^2 (inf with fewer than 2 such votes)."""
    near = directions @ mean >= np.cos(np.radians(radius_deg))
    if np.count_nonzero(near) < 2:
        return np.inf
    w, v = weights[near], directions[near]
    if w.sum() <= 0.0:  # leading-edge regions can carry no speech-to-noise weight
        return np.inf
    return max(float(np.sum(w ** 2 * np.sum((v - mean) ** 2, axis=1)) / w.sum() ** 2), 1e-12)


def _fused(votes: doa.Votes, mean: np.ndarray, radius_deg: float, reg: Regions, pooled: np.ndarray,
           mask: np.ndarray | None) -> np.ndarray:
    """Inverse-variance combination (module doc, fuse) of the robust mean `mean` of `votes` (its
    spread within `radius_deg`) and `pooled`, the pooled covariance's direction (its spread: the
    region votes of `mask` within AGG_RADIUS_DEG, weighted xi / (1 + xi) as pooled); either alone
    when the other has fewer than 2 votes near it."""
    use = np.ones(len(reg.xi), bool) if mask is None else np.asarray(mask, bool)
    var_votes = _mean_variance(votes.directions, votes.weights, mean, radius_deg)
    var_pooled = _mean_variance(reg.votes.directions[use], (reg.xi / (1.0 + reg.xi))[use], pooled, AGG_RADIUS_DEG)
    if np.isinf(var_votes) and np.isinf(var_pooled):
        return pooled
    fused = mean / var_votes + pooled / var_pooled
    return fused / np.linalg.norm(fused)


def estimate_doa(foa: np.ndarray, sample_rate: int = foa_core.SAMPLE_RATE, model: str = "one",
                 seed: np.ndarray | None = None, seeding: str = "robust", lead: str = "onset",
                 fuse: bool = False) -> doa.DoaEstimate:
    """The dominant source of (4, N) ACN/SN3D FOA: doa_robust's answer ("robust") or the density
    peak of flat_votes ("flat"), or `seed` (a camera-frame direction), refined by pooled_direction
    over the regions' onset frames ("onset") or leading edges ("edge"); `fuse` (seeding "flat"):
    combined with the flat votes' robust mean by inverse variance (module doc)."""
    frames = _check_seeding(seeding, lead, fuse, seed is not None)
    a = doa.checked_foa(foa)
    reg = regions(a, sample_rate, lead=frames)
    first = doa.estimate_from_votes(reg.votes)
    votes = None
    if seed is None:
        try:
            if seeding == "robust":
                seed = doa_robust.estimate_doa(a, sample_rate).direction
            else:
                votes = flat_votes(a, sample_rate)
                seed = doa.estimate_from_votes(votes, SEED_KAPPA).direction
        except ValueError:  # no robust votes: this estimator's own density peak
            seed = first.direction
    direction = pooled_direction(reg, seed, model=model)
    if fuse and votes is not None:
        direction = _fused(votes, seed, VOTE_RADIUS_DEG, reg, direction, None)
    return _answer(direction, first.confidence)


def estimate_by_gender(foa: np.ndarray, gender: str, sample_rate: int = foa_core.SAMPLE_RATE,
                       model: str = "one", seed: doa.DoaEstimate | None = None,
                       seeding: str = "robust", lead: str = "onset", fuse: bool = False) -> doa.DoaEstimate:
    """The requested voice ("male"/"female") among overlapping talkers, by voice: the seed is
    doa_robust.estimate_by_gender's answer ("robust") or, of flat_votes ("flat"), two_talker_seed,
    else contrast_seed, else doa_robust's (too few votes carry that pitch), and only the regions whose onset starts a
    syllable of that pitch (doa.pitch_track new_only over the 40 ms after the region, F0 below
    doa.MALE_MAX_F0_HZ is male) are pooled -- all regions near the seed when fewer than
    doa.MIN_GENDER_VOTES carry it. `seed`: that answer when already computed; `lead`: as in
    estimate_doa; `fuse`: combined by inverse variance with the robust mean (within
    VOICE_RADIUS_DEG of the seed) of the flat votes of that pitch (all of them when fewer than 2)."""
    frames = _check_seeding(seeding, lead, fuse, seed is not None)
    male = doa.is_male(gender)
    a = doa.checked_foa(foa)
    pitch = doa.pitch_track(a[0], sample_rate, new_only=True)
    votes = None
    if seed is None and seeding == "flat":
        try:
            votes = flat_votes(a, sample_rate)
            seed = two_talker_seed(a, votes, gender, sample_rate) or contrast_seed(votes, pitch, male)
        except ValueError:  # no robust votes at all: doa_robust's own fallback below
            seed = None
    seed = seed or doa_robust.estimate_by_gender(a, gender, sample_rate, pitch=pitch)
    reg = regions(a, sample_rate, lead=frames)
    mine = doa.voiced_as(reg.votes.times, pitch, male)
    near = reg.votes.directions @ seed.direction >= np.cos(np.radians(AGG_RADIUS_DEG))
    mask = mine if np.count_nonzero(mine & near) >= doa.MIN_GENDER_VOTES else None
    direction = pooled_direction(reg, seed.direction, mask, model)
    if fuse and votes is not None:
        voiced = doa.voiced_as(votes.times, pitch, male)
        own = votes if np.count_nonzero(voiced) < 2 else votes.subset(voiced)
        mean = doa._estimate(own, seed.direction, own.weights.sum(), radius_deg=VOICE_RADIUS_DEG).direction
        direction = _fused(own, mean, VOICE_RADIUS_DEG, reg, direction, mask)
    return _answer(direction, seed.confidence)
