"""Spatial audio path: Classical IV and Neural IV features (1203 dims per 20 ms frame).

Both take ACN/SN3D FOA (W, Y, Z, X) at 16 kHz and give 50 frames/s; the features are
later resampled to the audio tower's token rate (25 tokens/s) and concatenated to its
hidden states (see modeling.py). Axis order of the features is ambisonic (X fwd, Y left, Z up).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from jaeger_ros.core.foa import ACN, ENERGY_EPS, HOP, N_FFT

IV_FRAME_RATE = 50
"""IV frames per second at 16 kHz (hop 320; Neural IV total stride 320)."""
NEURAL_IV_PARAMETERS = 2_907_651
"""Parameters of the authors' Neural IV (7 convs + 7 GroupNorms + the shared 2-layer head)."""
NEURAL_IV_CHANNELS = 401
NEURAL_IV_KERNELS = (10, 3, 3, 3, 3, 2, 2)
NEURAL_IV_STRIDES = (5, 2, 2, 2, 2, 2, 2)
XYZ_ROWS = (ACN.index("X"), ACN.index("Y"), ACN.index("Z"))
"""FOA rows of the ambisonic X (forward), Y (left), Z (up) axes in our ACN files."""
RELEASE_ROWS = (1, 2, 3)
"""The release feeds rows 1-3 to the IV in the order its files hold them."""


def _check_foa_batch(foa: torch.Tensor) -> torch.Tensor:
    if foa.ndim != 3 or foa.shape[1] != 4:
        raise ValueError(f"FOA batch must have shape (B, 4, N), got {tuple(foa.shape)}")
    return foa


def _check_axes(axes: Sequence[int]) -> tuple[int, int, int]:
    rows = tuple(int(a) for a in axes)
    if sorted(rows) != [1, 2, 3]:
        raise ValueError(f"axes must order the dipole rows 1, 2, 3, got {axes}")
    return rows  # type: ignore[return-value]


class ClassicalIV(nn.Module):
    """JAEGER's Classical IV in torch (same numbers as jaeger_ros.core.foa.classical_iv_features):
    per STFT bin I_C = Re(conj(W) C) / (eps + |W|^2 + (|X|^2+|Y|^2+|Z|^2)/3), C over `axes`
    (the FOA rows of the three blocks, as for NeuralIV)."""

    def __init__(self, n_fft: int = N_FFT, hop: int = HOP, axes: Sequence[int] = XYZ_ROWS) -> None:
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        self.axes = _check_axes(axes)

    @property
    def out_dim(self) -> int:
        return 3 * (self.n_fft // 2 + 1)

    def forward(self, foa: torch.Tensor) -> torch.Tensor:
        """(B, 4, N) -> (B, T, 1203) with T = 1 + N // hop."""
        x = _check_foa_batch(foa).double()
        b, c, n = x.shape
        window = torch.hann_window(self.n_fft, periodic=True, dtype=torch.float64, device=x.device)
        spec = torch.stft(x.reshape(b * c, n), self.n_fft, self.hop, window=window,
                          center=True, pad_mode="reflect" if n > self.n_fft // 2 else "constant",
                          return_complex=True).reshape(b, c, self.n_fft // 2 + 1, -1)  # (B, 4, F, T)
        w, xyz = spec[:, 0], spec[:, list(self.axes)]
        intensity = (w.conj()[:, None] * xyz).real  # (B, 3, F, T)
        energy = ENERGY_EPS + w.abs() ** 2 + (xyz.abs() ** 2).sum(1) / 3.0  # (B, F, T)
        feats = intensity / energy[:, None]
        return feats.permute(0, 3, 1, 2).reshape(b, feats.shape[-1], -1).float()  # (B, T, 3F)


class NeuralIV(nn.Module):
    """JAEGER's Neural IV as the authors' encoder defines it: one Conv1d stack applied to each
    FOA channel alone (7 convs, kernels 10,3,3,3,3,2,2, strides 5,2,2,2,2,2,2, padding k//2,
    bias on, GroupNorm(1, 401) after each conv, no activation between them), h_C = f_W * f_C
    for the three dipole channels, then ONE Linear(401,401)-ReLU-Linear(401,401) shared by the
    three products, concatenated -> 1203 dims per 20 ms frame (2,907,651 parameters).

    The stack is shared by the four channels so that W and the dipoles are embedded in one
    space, which the product f_W * f_C relies on. `axes`: the FOA rows that give the three
    products, in output order (default X, Y, Z of our ACN files; the release's order is
    rows 1, 2, 3 as its files hold them)."""

    def __init__(self, channels: int = NEURAL_IV_CHANNELS, axes: Sequence[int] = XYZ_ROWS) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = 1
        for k, s in zip(NEURAL_IV_KERNELS, NEURAL_IV_STRIDES):
            layers += [nn.Conv1d(in_ch, channels, k, stride=s, padding=k // 2), nn.GroupNorm(1, channels)]
            in_ch = channels
        self.cnn = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Linear(channels, channels), nn.ReLU(), nn.Linear(channels, channels))
        self.channels = channels
        self.axes = _check_axes(axes)

    @property
    def out_dim(self) -> int:
        return 3 * self.channels

    @staticmethod
    def num_frames(n_samples: int) -> int:
        """Output frames of the CNN for n_samples input samples (651 at 13 s)."""
        n = int(n_samples)
        for k, s in zip(NEURAL_IV_KERNELS, NEURAL_IV_STRIDES):
            n = (n + 2 * (k // 2) - k) // s + 1
        return max(n, 0)

    def forward(self, foa: torch.Tensor) -> torch.Tensor:
        """(B, 4, N) -> (B, T, 1203), T = num_frames(N)."""
        x = _check_foa_batch(foa)
        b, c, n = x.shape
        if n < NEURAL_IV_KERNELS[0] // 2 + 1:
            raise ValueError(f"FOA too short for Neural IV: {n} samples")
        f = self.cnn(x.reshape(b * c, 1, n).to(self.cnn[0].weight.dtype))  # (B*4, ch, T)
        f = f.reshape(b, c, self.channels, -1).transpose(2, 3)  # (B, 4, T, ch)
        products = f[:, 0:1] * f[:, list(self.axes)]  # (B, 3, T, ch)
        return self.head(products).transpose(1, 2).reshape(b, f.shape[2], -1)


def iv_frames(kind: str, n_samples: int) -> int:
    """Frames the chosen IV module gives for n_samples of 16 kHz audio."""
    if kind == "neural":
        return NeuralIV.num_frames(n_samples)
    return 1 + int(n_samples) // HOP


def release_iv_tokens(features: torch.Tensor, n_samples: int, n_after_cnn: int) -> torch.Tensor:
    """The release's IV timing: (T, D) frames trimmed to n_samples // 320, linearly
    interpolated (align_corners=False) to the audio tower's post-CNN length (50 Hz), then
    averaged in pairs as the tower's AvgPool1d(2) does -> (n_after_cnn // 2, D)."""
    if features.ndim != 2 or features.shape[0] == 0:
        raise ValueError(f"features must be (T > 0, D), got {tuple(features.shape)}")
    keep = max(1, min(features.shape[0], int(n_samples) // HOP))
    x = features[:keep].T[None]
    if keep != n_after_cnn:
        x = F.interpolate(x, size=int(n_after_cnn), mode="linear", align_corners=False)
    return F.avg_pool1d(x, 2, 2)[0].T


def resample_to_tokens(features: torch.Tensor, n_tokens: int) -> torch.Tensor:
    """(T, D) frame features -> (n_tokens, D) by adaptive averaging over time (50 frames/s
    onto the audio tower's 25 tokens/s: pairs of frames are averaged)."""
    if features.ndim != 2 or features.shape[0] == 0:
        raise ValueError(f"features must be (T > 0, D), got {tuple(features.shape)}")
    if n_tokens <= 0:
        raise ValueError(f"n_tokens must be positive, got {n_tokens}")
    return F.adaptive_avg_pool1d(features.T[None], n_tokens)[0].T
