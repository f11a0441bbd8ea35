"""How much of a picture file's finest detail lies along each of its axes.

A picture enlarged along one axis holds no detail finer than its source's along that axis: the
top band of its spectrum along the stretch is nearly empty (what is left there is the
interpolation's and the saves' noise), while across it the band is as full as the source's.
The keep rule `largest` reads this to tell a copy stretched one way from its original, which
the picture check's map cannot: the map is the same seen from either file
(`simsearch.plan.largest_between`; recipes/default_model/trials/keep-rules-band-rule.md).
"""
from __future__ import annotations

import os

import numpy as np

from simsearch.errors import SimsearchError
from simsearch.images import load_image

__all__ = ["band", "band_shares", "TOP_BAND", "STRETCH"]

# the top band, in cycles per pixel, and the whole it is a share of (below 0.04: the picture's
# layout, not its detail; above 0.48: the last bins, where the window leaks)
TOP_BAND, WHOLE = (0.405, 0.48), (0.04, 0.48)
# an axis enlarged this many times or more holds nothing in the top band: 0.5 / 1.3 = 0.385
STRETCH = 1.3
REGION = 1024   # the central part of the picture measured, at most this many pixels a side
MIN_SIDE = 64   # a picture with a side shorter than this has too few samples to tell


def band(path: str | os.PathLike) -> tuple[float, float] | None:
    """(along x, along y): the share of the energy of the file's grey picture, at its full
    resolution and upright, that lies in the top band along each axis (`band_shares`); None when
    the file cannot be read or is too small to tell."""
    try:
        image = load_image(path).image
    except (SimsearchError, OSError, ValueError):
        return None
    w, h = image.size
    left, top = max(0, (w - REGION) // 2), max(0, (h - REGION) // 2)
    # only the central region is measured: cut it before the grey copy and the floats
    region = image.crop((left, top, left + min(w, REGION), top + min(h, REGION)))
    return band_shares(np.asarray(region.convert("L"), np.float64))


def band_shares(grey: np.ndarray) -> tuple[float, float] | None:
    """`band` of a grey picture (rows by columns): along x, the rows' spectra; along y, the
    columns'; each line of the central region less its mean, under a Hann window, its power
    averaged over the lines. None for a side under MIN_SIDE or a picture flat all over."""
    h, w = grey.shape
    if min(h, w) < MIN_SIDE:
        return None
    top, left = max(0, (h - REGION) // 2), max(0, (w - REGION) // 2)
    region = np.asarray(grey[top:top + REGION, left:left + REGION], np.float64)
    shares = (_share(region.T), _share(region))
    return None if None in shares else shares


def _share(lines: np.ndarray) -> float | None:
    """The top band's share for the spectra along axis 0 of `lines` (each column one line)."""
    n = lines.shape[0]
    lines = lines - lines.mean(axis=0, keepdims=True)
    power = (np.abs(np.fft.rfft(lines * np.hanning(n)[:, None], axis=0)) ** 2).mean(axis=1)
    freq = np.arange(len(power)) / n
    whole = power[(freq >= WHOLE[0]) & (freq <= WHOLE[1])].sum()
    if not whole > 1e-9:
        return None
    return float(power[(freq >= TOP_BAND[0]) & (freq <= TOP_BAND[1])].sum() / whole)
