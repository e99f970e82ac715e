"""The baselines of ``predict_accuracy.py``: a MACs-only and a roofline-only kernel model,
fitted to the same calibration profile's kernel measurements as sepconv's predictor, so that
the three are judged on the same evidence."""

from __future__ import annotations

from typing import Any

import numpy as np

from sepconv.predict import Profile


def fit_baselines(profile: Profile, variant: str) -> dict[str, Any]:
    """The MACs-only and roofline-only kernel models, fitted to the profile's samples by least
    squares on relative error."""
    kernels = [k for k, _ in profile.samples]
    t = np.array([s[variant] for _, s in profile.samples])
    keep = t > 0
    macs = np.array([k.macs for k in kernels], float)[keep]
    moved = np.array([k.bytes for k in kernels], float)[keep]
    t = t[keep]

    def linear(feature: np.ndarray) -> tuple[float, float]:
        design = np.stack([np.ones_like(feature), feature], axis=1) / t[:, None]
        a, b = np.linalg.lstsq(design, np.ones_like(t), rcond=None)[0]
        return float(a), float(b)

    a_macs, b_macs = linear(macs)
    best = (np.inf, 0.0, 0.0, 0.0)
    for peak in np.logspace(9, 12, 61):  # MAC/s
        for bandwidth in np.logspace(9, 12, 61):  # bytes/s
            a, b = linear(np.maximum(macs / peak, moved / bandwidth))
            err = float(
                np.mean(((a + b * np.maximum(macs / peak, moved / bandwidth)) / t - 1) ** 2)
            )
            if err < best[0]:
                best = (err, peak / b, bandwidth / b, a)
    return {"macs": (a_macs, b_macs), "roofline": best[1:]}


def baseline_ms(fits: dict[str, Any], profile: Profile, variant: str, kernels: list) -> dict:
    a, b = fits["macs"]
    peak, bandwidth, a_roof = fits["roofline"]
    call = profile.call_s[variant]
    macs_s = call + sum(a + b * k.macs for k in kernels)
    roof_s = call + sum(a_roof + max(k.macs / peak, k.bytes / bandwidth) for k in kernels)
    return {"macs_only": 1e3 * macs_s, "roofline_only": 1e3 * roof_s}
