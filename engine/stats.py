"""Confidence intervals for the patterns the pages and notes state: Spearman's rho, a mean, a difference of means.

A relation whose interval includes 0 is reported as "no clear relation", not as a finding.
"""
from __future__ import annotations

import numpy as np

# Every pattern the CLIP page states comes with its 95 % confidence interval, computed from the data on screen, so
# a relation whose interval includes 0 is reported as "no clear relation" instead of as a finding.

# (scipy.special, not scipy.stats: the page's landing view computes these, and scipy.stats costs 0.5 s to import)

def ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of x, ties given the mean of the ranks they span (as Spearman's rho needs)."""
    x = np.asarray(x, dtype=np.float64).ravel()
    r = np.empty(len(x))
    r[np.argsort(x, kind="stable")] = np.arange(1, len(x) + 1)
    _, group, counts = np.unique(x, return_inverse=True, return_counts=True)
    return (np.bincount(group, weights=r) / counts)[group]


def spearman_ci(a, b, level: float = 0.95) -> dict:
    """Spearman's rho of a and b (Pearson's r of their ranks) with a Fisher-z confidence interval.

    z = atanh(rho) is close to normal with standard error sqrt(1.06 / (n - 3)) for Spearman's rho (Fieller, Hartley
    & Pearson 1957), so the interval is tanh(z -/+ z_crit * se). Returns {"rho", "lo", "hi", "n"}; an undefined
    rho (n < 4, or a constant input) is 0 with the uninformative interval [-1, 1].
    """
    from scipy.special import ndtri

    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"spearman_ci needs two equally long inputs, got {a.shape[0]} and {b.shape[0]}")
    n = int(a.shape[0])
    if n < 4 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return {"rho": 0.0, "lo": -1.0, "hi": 1.0, "n": n}
    rho = float(np.corrcoef(ranks(a), ranks(b))[0, 1])
    z = np.arctanh(np.clip(rho, -0.999999, 0.999999))
    half = float(ndtri(0.5 + level / 2)) * np.sqrt(1.06 / (n - 3))
    return {"rho": rho, "lo": float(np.tanh(z - half)), "hi": float(np.tanh(z + half)), "n": n}


def _t_quantile(p: float, dof: float) -> float:
    from scipy.special import stdtrit

    return float(stdtrit(dof, p))


def mean_ci(values, level: float = 0.95) -> dict:
    """Mean of `values` with a Student-t confidence interval: {"mean", "lo", "hi", "n"} (lo = hi = mean for n < 2)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    n = int(v.shape[0])
    if n == 0:
        raise ValueError("mean_ci needs at least one value")
    m = float(v.mean())
    if n < 2:
        return {"mean": m, "lo": m, "hi": m, "n": n}
    half = _t_quantile(0.5 + level / 2, n - 1) * float(v.std(ddof=1)) / np.sqrt(n)
    return {"mean": m, "lo": m - half, "hi": m + half, "n": n}


def diff_ci(a, b, level: float = 0.95) -> dict:
    """mean(a) - mean(b) with Welch's confidence interval: {"diff", "lo", "hi", "mean_a", "mean_b", "n_a", "n_b"}."""
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"diff_ci needs at least two values on each side, got {len(a)} and {len(b)}")
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    d = float(a.mean() - b.mean())
    se = float(np.sqrt(va + vb))
    if se == 0:
        return {"diff": d, "lo": d, "hi": d, "mean_a": float(a.mean()), "mean_b": float(b.mean()),
                "n_a": len(a), "n_b": len(b)}
    dof = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))      # Welch-Satterthwaite
    half = _t_quantile(0.5 + level / 2, dof) * se
    return {"diff": d, "lo": d - half, "hi": d + half, "mean_a": float(a.mean()), "mean_b": float(b.mean()),
            "n_a": len(a), "n_b": len(b)}


def direction(ci: dict) -> int:
    """+1 if a confidence interval lies above 0, -1 if below, 0 if it includes 0 (no clear relation/difference)."""
    if ci["lo"] > 0:
        return 1
    if ci["hi"] < 0:
        return -1
    return 0
