"""First-order ambisonics (FOA) in JAEGER's conventions: encoding, conversion, intensity, wav I/O.

Axes: the ambisonic frame is aligned with the JAEGER camera frame (x right, y up, z backward):
ambisonic X = forward (-z_cam), Y = left (-x_cam), Z = up (+y_cam). A plane wave from unit
direction u (ambisonic axes) encodes as W = 1, (X, Y, Z) = u in SN3D, and sqrt(3) u in N3D.

Channel orders: ACN = (W, Y, Z, X) (AmbiX, our default) and FUMA = (W, X, Y, Z). "FUMA" names
only the channel ORDER; the FuMa/MaxN W-scaling (1/sqrt(2)) is not one of the supported
normalisations, because neither SoundSpaces nor JAEGER uses it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import get_window

from jaeger_ros.core.geometry import azel_from_direction

ACN = ("W", "Y", "Z", "X")
FUMA = ("W", "X", "Y", "Z")
ORDERS = {"ACN": ACN, "FUMA": FUMA}
NORMALIZATIONS = ("SN3D", "N3D")
DEFAULT_ORDER = "ACN"
DEFAULT_NORMALIZATION = "SN3D"
SAMPLE_RATE = 16000
N_FFT = 800
HOP = 320
ENERGY_EPS = 1e-8
"""Added to the energy that normalises the Classical IV features (avoids 0/0 in silence)."""

_N3D_DIPOLE = np.sqrt(3.0)
# Ambisonic (X fwd, Y left, Z up) <- camera (x right, y up, z back): a = M @ c.
_AMBI_FROM_CAMERA = np.array([[0.0, 0.0, -1.0], [-1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


def _order(name: str) -> tuple[str, ...]:
    try:
        return ORDERS[name.upper()]
    except (KeyError, AttributeError):
        raise ValueError(f"unknown FOA channel order {name!r}; expected one of {sorted(ORDERS)}") from None


def _normalization(name: str) -> str:
    if not isinstance(name, str) or name.upper() not in NORMALIZATIONS:
        raise ValueError(f"unknown FOA normalisation {name!r}; expected one of {NORMALIZATIONS}")
    return name.upper()


def _dipole_scale(normalization: str) -> float:
    return _N3D_DIPOLE if _normalization(normalization) == "N3D" else 1.0


def _check_foa(foa: np.ndarray) -> np.ndarray:
    a = np.asarray(foa)
    if a.ndim != 2 or a.shape[0] != 4:
        raise ValueError(f"FOA must have shape (4, N), got {a.shape}")
    return a


def camera_to_ambisonic(vec: np.ndarray) -> np.ndarray:
    """(..., 3) camera-frame vectors -> ambisonic axes (X forward, Y left, Z up)."""
    return np.asarray(vec, dtype=float) @ _AMBI_FROM_CAMERA.T


def ambisonic_to_camera(vec: np.ndarray) -> np.ndarray:
    """(..., 3) ambisonic-axis vectors (X forward, Y left, Z up) -> camera frame."""
    return np.asarray(vec, dtype=float) @ _AMBI_FROM_CAMERA


TETRA_CAPSULES = {"LFU": (1, 1, 1), "RFD": (1, -1, -1), "LBD": (-1, 1, -1), "RBU": (-1, -1, 1)}
"""Capsule look directions (unnormalised) of a tetrahedral microphone in ambisonic axes
(x forward, y left, z up)."""
TETRA_ORDER = ("LFU", "RFD", "LBD", "RBU")


def tetrahedral_a_to_b(capsules: tuple[str, ...] = TETRA_ORDER) -> np.ndarray:
    """Ideal (4, 4) A->B matrix, ACN/SN3D rows (W, Y, Z, X), for cardioid capsules in the given
    channel order. A plane wave from unit u gives capsule i the gain 0.5 (1 + d_i . u); the
    tetrahedron's directions sum to zero, so W = 0.5 sum_i a_i = 1 and each dipole
    (sqrt(3) / 2) sum_i sign_i a_i = u_axis, the SN3D encoding."""
    try:
        d = np.array([TETRA_CAPSULES[c] for c in capsules], dtype=float)
    except KeyError as err:
        raise ValueError(f"unknown capsule {err}; expected names from {sorted(TETRA_CAPSULES)}") from None
    if len(capsules) != 4 or len(set(capsules)) != 4:
        raise ValueError(f"need the 4 distinct capsules {sorted(TETRA_CAPSULES)}, got {capsules}")
    w = np.full(4, 0.5)
    x, y, z = (np.sqrt(3.0) / 2.0) * d.T  # d entries are +-1: the signs of each capsule per axis
    return np.stack([w, y, z, x])


def encode_gains(direction_cam: np.ndarray, order: str = DEFAULT_ORDER,
                 normalization: str = DEFAULT_NORMALIZATION) -> np.ndarray:
    """Plane-wave encoding gains (..., 4) for camera-frame directions (..., 3) (need not be unit)."""
    d = np.asarray(direction_cam, dtype=float)
    if d.shape[-1:] != (3,):
        raise ValueError(f"direction must have shape (..., 3), got {d.shape}")
    norm = np.linalg.norm(d, axis=-1, keepdims=True)
    if np.any(norm == 0) or not np.all(np.isfinite(d)):
        raise ValueError("direction must be finite and non-zero")
    u = camera_to_ambisonic(d / norm) * _dipole_scale(normalization)
    by_name = {"W": np.ones(d.shape[:-1]), "X": u[..., 0], "Y": u[..., 1], "Z": u[..., 2]}
    return np.stack([by_name[c] for c in _order(order)], axis=-1)


def convert(foa: np.ndarray, src_order: str, src_normalization: str,
            dst_order: str = DEFAULT_ORDER, dst_normalization: str = DEFAULT_NORMALIZATION) -> np.ndarray:
    """Reorder and rescale (4, N) FOA between ACN/FuMa orders and SN3D/N3D normalisations."""
    a = _check_foa(foa)
    src, dst = _order(src_order), _order(dst_order)
    scale = _dipole_scale(dst_normalization) / _dipole_scale(src_normalization)
    out = a[[src.index(c) for c in dst]]
    if out.dtype.kind != "f":
        out = out.astype(float)
    gains = np.array([1.0 if c == "W" else scale for c in dst], dtype=out.dtype)
    return out * gains[:, None]


def stft(x: np.ndarray, n_fft: int = N_FFT, hop: int = HOP) -> np.ndarray:
    """Complex STFT (C, n_fft//2+1, T) of (C, N) signals: periodic Hann window, frames centred
    on t = k*hop with reflect padding (torch.stft's defaults, as JAEGER's Classical IV uses),
    so 16 kHz audio gives 50 frames/s and T = 1 + N // hop."""
    a = np.atleast_2d(np.asarray(x, dtype=float))
    if a.ndim != 2 or a.shape[1] == 0:
        raise ValueError(f"signal must have shape (C, N) with N > 0, got {np.shape(x)}")
    if n_fft <= 0 or hop <= 0:
        raise ValueError(f"n_fft and hop must be positive, got {n_fft}, {hop}")
    pad = n_fft // 2
    padded = np.pad(a, ((0, 0), (pad, pad)), mode="reflect" if a.shape[1] > pad else "constant")
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft, axis=1)[:, ::hop]  # (C, T, n_fft)
    spec = np.fft.rfft(frames * get_window("hann", n_fft), axis=-1)  # (C, T, F)
    return np.swapaxes(spec, 1, 2)


@dataclass(frozen=True)
class IntensityField:
    """Active intensity per time-frequency bin of an ACN/SN3D FOA signal."""

    intensity: np.ndarray
    """(3, F, T) Re(conj(W) * [X, Y, Z]) in AMBISONIC axis order (x forward, y left, z up)."""
    energy: np.ndarray
    """(F, T) eps + |W|^2 + (|X|^2 + |Y|^2 + |Z|^2) / 3 (JAEGER's normaliser)."""


def intensity_vectors(foa: np.ndarray, n_fft: int = N_FFT, hop: int = HOP) -> IntensityField:
    """STFT active intensity and energy of (4, N) ACN/SN3D FOA (see IntensityField)."""
    spec = stft(_check_foa(foa), n_fft, hop)
    w = spec[0]
    xyz = spec[[ACN.index("X"), ACN.index("Y"), ACN.index("Z")]]
    intensity = np.real(np.conj(w)[None] * xyz)
    energy = ENERGY_EPS + np.abs(w) ** 2 + np.sum(np.abs(xyz) ** 2, axis=0) / 3.0
    return IntensityField(intensity, energy)


def direction_from_foa(foa: np.ndarray, fs: int = SAMPLE_RATE, band_hz: tuple[float, float] = (100.0, 8000.0),
                       n_fft: int = N_FFT, hop: int = HOP) -> tuple[float, float]:
    """(azimuth, elevation) in degrees of the summed active intensity of (4, N) ACN/SN3D FOA.

    Summing raw intensity weights each bin by its energy; only bins inside `band_hz` count
    (speech band, away from DC). A single dominant source only: no robustness to overlap.
    """
    field = intensity_vectors(foa, n_fft, hop)
    freqs = np.fft.rfftfreq(n_fft, 1.0 / fs)
    band = (freqs >= band_hz[0]) & (freqs <= band_hz[1])
    total = field.intensity[:, band].sum(axis=(1, 2))
    if not np.any(band) or np.linalg.norm(total) <= 0:
        raise ValueError("FOA has no directional energy in the analysis band")
    az, el = azel_from_direction(ambisonic_to_camera(total))
    return float(az), float(el)


def classical_iv_features(foa: np.ndarray, n_fft: int = N_FFT, hop: int = HOP) -> np.ndarray:
    """JAEGER's Classical IV features (T, 3 * (n_fft//2+1)) float32 of (4, N) ACN/SN3D FOA:
    per frame [I_X / E, I_Y / E, I_Z / E] over all bins (1203 dims at n_fft 800), ambisonic axes."""
    field = intensity_vectors(foa, n_fft, hop)
    normalised = field.intensity / field.energy[None]  # (3, F, T)
    return normalised.transpose(2, 0, 1).reshape(normalised.shape[2], -1).astype(np.float32)


def write_foa_wav(path: str | Path, foa: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """Write (4, N) FOA as a 4-channel 32-bit float wav, channels in the order given."""
    a = _check_foa(foa)
    if int(sample_rate) <= 0:
        raise ValueError(f"sample rate must be positive, got {sample_rate}")
    sf.write(str(path), np.ascontiguousarray(a.T, dtype=np.float32), int(sample_rate), subtype="FLOAT")


def read_foa_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """Read a 4-channel wav -> ((4, N) float32 in file channel order, sample rate)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"FOA wav not found: {p}")
    data, rate = sf.read(str(p), dtype="float32", always_2d=True)
    if data.shape[1] != 4:
        raise ValueError(f"{p}: expected 4 FOA channels, found {data.shape[1]}")
    return np.ascontiguousarray(data.T), int(rate)


def measure_normalization(foa: np.ndarray, direction_cam: np.ndarray, order: str = DEFAULT_ORDER,
                          window_ms: float = 2.0, fs: int = SAMPLE_RATE) -> str:
    """Tell SN3D from N3D by the direct-path dipole/omni ratio of a source in a known direction.

    `foa` is an FOA impulse response (or an anechoic recording) in channel `order`; the
    direct path is taken as +-window_ms around the |W| peak. The dipole signal projected on
    the source direction over W is 1 in SN3D and sqrt(3) in N3D; the threshold is their
    geometric mean. A ratio far from both means the order or the direction is wrong -> ValueError.
    """
    a = convert(np.asarray(foa, dtype=float), order, "SN3D", "ACN", "SN3D")
    peak = int(np.argmax(np.abs(a[0])))
    half = max(1, int(round(window_ms * 1e-3 * fs)))
    seg = a[:, max(0, peak - half): peak + half + 1]
    u = camera_to_ambisonic(np.asarray(direction_cam, dtype=float))
    norm = np.linalg.norm(u)
    if u.shape != (3,) or norm == 0:
        raise ValueError(f"direction must be a non-zero 3-vector, got {direction_cam}")
    projected = (u / norm) @ seg[[ACN.index("X"), ACN.index("Y"), ACN.index("Z")]]
    w_energy = float(np.sum(seg[0] ** 2))
    if w_energy == 0:
        raise ValueError("FOA W channel is silent")
    ratio = float(np.sum(seg[0] * projected)) / w_energy
    if not 0.5 < ratio < 2.5:
        raise ValueError(f"direct-path dipole/omni ratio {ratio:.2f} matches neither SN3D (1) nor "
                         f"N3D (1.73): wrong channel order or source direction?")
    return "N3D" if ratio > 3.0 ** 0.25 else "SN3D"
