"""Random fields shared by every scene: a bank of normal samples and two periodic texture tiles.

Fixed seeds, generated once per process and never per frame: drawing fresh noise per pixel per frame would cost
more than rendering, and the same tiles keep a surface's texture stable across a drive.
"""
from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

_f32 = np.float32


#: Small enough (1 MB) to stay in the CPU cache: reading noise from a bigger bank costs more than using it.
_NOISE_LEN = 1 << 18


@lru_cache(maxsize=1)
def _noise_bank() -> np.ndarray:
    """Standard-normal samples; per-frame noise is a random window of it (much cheaper than sampling anew)."""
    bank = np.random.default_rng(0x5EED).standard_normal(_NOISE_LEN, dtype=_f32)
    bank.flags.writeable = False
    return bank


def gauss(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Standard-normal noise of `shape`: random windows of the bank (a read-only view when one window does)."""
    n = int(np.prod(shape))
    bank, window = _noise_bank(), _NOISE_LEN // 2
    starts = rng.integers(0, _NOISE_LEN - window, size=-(-n // window))
    if n <= window:
        return bank[int(starts[0]):int(starts[0]) + n].reshape(shape)
    return np.concatenate([bank[int(s):int(s) + window] for s in starts])[:n].reshape(shape)


@lru_cache(maxsize=1)
def textures() -> tuple[np.ndarray, np.ndarray]:
    """Two periodic 512x512 noise tiles (zero mean, unit std): coarse patches and fine grain.

    Built by spectral shaping of white noise, so they tile seamlessly; each carries one wrapped extra row and
    column so that bilinear lookups at coordinates reduced to [0, 512) never take remap's slow border path.
    """
    rng = np.random.default_rng(0x7E47)
    n = 512
    f = np.fft.fftfreq(n)
    radius = np.hypot(f[:, None], f[None, :])
    radius[0, 0] = 1.0
    tiles = []
    for exponent, cutoff in ((1.5, 0.5), (0.5, 0.35)):
        spectrum = np.fft.fft2(rng.standard_normal((n, n))) / radius ** exponent
        spectrum[radius > cutoff] = 0.0
        spectrum[0, 0] = 0.0
        tile = np.fft.ifft2(spectrum).real
        tile = ((tile - tile.mean()) / tile.std()).astype(_f32)
        tile = cv2.copyMakeBorder(tile, 0, 1, 0, 1, cv2.BORDER_WRAP)
        tile.flags.writeable = False
        tiles.append(tile)
    return tiles[0], tiles[1]


def wrap_period(x: np.ndarray, period: float = 1.0) -> np.ndarray:
    """x modulo period in [0, period) (much faster than numpy's % on float32 images)."""
    q = x * _f32(1.0 / period)
    return (q - np.floor(q)) * _f32(period)


def sample_tile(tile: np.ndarray, u: np.ndarray, v: np.ndarray, texel_m: float,
                u0: float = 0.0, v0: float = 0.0) -> np.ndarray:
    """Bilinear lookup of a periodic tile (from `textures`) at coordinates (u0 + u, v0 + v) in metres.

    The large scalar part (u0, v0) is reduced modulo the period in double precision, so the per-pixel part
    stays float32-exact however far a drive goes.
    """
    n = tile.shape[0] - 1
    k = 1.0 / texel_m
    mx = u * _f32(k) + _f32((u0 * k) % n)
    my = v * _f32(k) + _f32((v0 * k) % n)
    mx -= np.floor(mx * _f32(1.0 / n)) * _f32(n)
    my -= np.floor(my * _f32(1.0 / n)) * _f32(n)
    return cv2.remap(tile, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
