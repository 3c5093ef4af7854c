"""engine/stats.py: the confidence intervals behind every pattern a page or note states, checked against scipy."""
import numpy as np
import pytest

from engine import stats
from engine.clip_eval import spearman


def test_spearman_ci_is_fisher_z_with_the_spearman_standard_error():
    """rho = 0.5 at n = 103: tanh(atanh(0.5) -/+ 1.96 * sqrt(1.06 / 100)) = [0.3342, 0.6358] (Fieller et al. 1957);
    the Pearson standard error 1 / sqrt(n - 3) would give the narrower [0.3394, 0.6322]."""
    from scipy.stats import norm

    rng = np.random.default_rng(0)
    x = rng.normal(size=103)
    y = x + rng.normal(size=103) * 1.2
    ci = stats.spearman_ci(x, y)
    assert ci["rho"] == pytest.approx(spearman(x, y)) and ci["n"] == 103
    z, half = np.arctanh(ci["rho"]), norm.ppf(0.975) * np.sqrt(1.06 / 100)
    assert (ci["lo"], ci["hi"]) == pytest.approx((np.tanh(z - half), np.tanh(z + half)))
    half = norm.ppf(0.975) * np.sqrt(1.06 / 100)
    z = np.arctanh(0.5)
    assert (np.tanh(z - half), np.tanh(z + half)) == pytest.approx((0.3342, 0.6358), abs=1e-4)
    assert stats.spearman_ci(x, x ** 3)["lo"] > 0.99                           # monotone: rho 1, a tight interval


def test_spearman_ci_says_nothing_when_it_cannot_know():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=2000), rng.normal(size=2000)
    ci = stats.spearman_ci(a, b)
    assert ci["lo"] < 0 < ci["hi"] and stats.direction(ci) == 0              # independent data: no clear relation
    small = stats.spearman_ci(a[:20], a[:20] + rng.normal(size=20) * 3)
    big = stats.spearman_ci(a, a + rng.normal(size=2000) * 3)
    assert (small["hi"] - small["lo"]) > 3 * (big["hi"] - big["lo"])       # the interval shrinks with n
    assert stats.direction(big) == 1 and stats.direction(stats.spearman_ci(a, -a)) == -1
    assert stats.spearman_ci([1, 2, 3, 4, 5], [2, 2, 2, 2, 2]) == {"rho": 0.0, "lo": -1.0, "hi": 1.0, "n": 5}
    assert stats.spearman_ci([1, 2, 3], [3, 1, 2])["lo"] == -1.0               # n < 4: undefined, not a finding
    with pytest.raises(ValueError, match="equally long"):
        stats.spearman_ci([1, 2, 3, 4], [1, 2, 3])


def test_mean_and_difference_intervals_match_scipy():
    from scipy import stats as sps

    rng = np.random.default_rng(2)
    a, b = rng.normal(1.62, 0.03, size=100), rng.normal(1.61, 0.05, size=1000)
    m = stats.mean_ci(a)
    lo, hi = sps.t.interval(0.95, 99, loc=a.mean(), scale=sps.sem(a))
    assert (m["mean"], m["lo"], m["hi"], m["n"]) == pytest.approx((a.mean(), lo, hi, 100))
    d = stats.diff_ci(a, b)
    ref = sps.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert d["diff"] == pytest.approx(a.mean() - b.mean()) and (d["lo"], d["hi"]) == pytest.approx((ref.low, ref.high))
    assert stats.diff_ci(b, a)["diff"] == pytest.approx(-d["diff"])             # the sign says which is higher
    assert stats.mean_ci([1.5])["lo"] == stats.mean_ci([1.5])["hi"] == 1.5
    with pytest.raises(ValueError, match="at least two"):
        stats.diff_ci([1.0], [1.0, 2.0])


def test_spearman_ci_rho_is_scipys_even_with_ties():
    rng = np.random.default_rng(4)
    a = rng.integers(0, 5, size=60).astype(float)                        # many ties
    b = a + rng.integers(0, 3, size=60)
    assert stats.spearman_ci(a, b)["rho"] == pytest.approx(spearman(a, b), abs=1e-12)
    np.testing.assert_allclose(stats.ranks([3.0, 1.0, 3.0, 2.0]), [3.5, 1.0, 3.5, 2.0])
