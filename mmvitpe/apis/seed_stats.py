"""Statistics over training seeds for comparing PE schemes.

A scheme's metric is summarised over seeds as mean, sample standard deviation
(ddof=1) and n. Two schemes trained with the same seeds (same data order and
initial RNG state) are compared *paired*: the per-seed differences
d_s = metric(scheme, s) - metric(baseline, s) remove the part of the seed noise
both runs share. The interval is Student's t interval on their mean,

    mean(d) +- t_{(1+c)/2, n-1} * sd(d) / sqrt(n),

not a bootstrap: with the 2-5 seeds a study can afford, a bootstrap has too
few distinct resamples to give a usable interval, while the t interval is
exact under normal seed noise. With one seed no interval exists, and the
verdict says so instead of presenting a single difference as a finding.
"""
import math
from dataclasses import dataclass
from typing import Dict, Iterable

import numpy as np
from scipy import stats

WITHIN_NOISE = 'within seed noise'
ABOVE = 'above baseline'
BELOW = 'below baseline'
ONE_SEED = 'n=1: no interval (one seed cannot measure seed noise)'


@dataclass(frozen=True)
class Summary:
    """Mean, sample standard deviation (nan for n = 1) and count."""
    n: int
    mean: float
    std: float


@dataclass(frozen=True)
class PairedDifference:
    """Mean per-seed difference to the baseline and its t interval.

    ``low``/``high`` are nan when n = 1; ``verdict`` is one of
    ``within seed noise`` (the interval covers 0), ``above baseline``,
    ``below baseline`` or the n = 1 statement.
    """
    n: int
    mean: float
    std: float
    low: float
    high: float
    confidence: float
    verdict: str


def summarize(values: Iterable[float]) -> Summary:
    """Mean, sample std (ddof=1) and n of one scheme's values over seeds."""
    v = np.asarray(list(values), dtype=float)
    if v.size == 0:
        raise ValueError('summarize: no values')
    return Summary(int(v.size), float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else math.nan)


def paired_difference(scheme: Dict[int, float], baseline: Dict[int, float],
                      confidence: float = 0.95) -> PairedDifference:
    """Per-seed paired difference ``scheme - baseline`` over the seeds both have.

    Args:
        scheme, baseline: metric value per seed.
        confidence: two-sided level of the t interval.

    Raises:
        ValueError: when no seed is shared or the level is not in (0, 1).
    """
    if not 0 < confidence < 1:
        raise ValueError(f'confidence={confidence}: must be in (0, 1)')
    seeds = sorted(set(scheme) & set(baseline))
    if not seeds:
        raise ValueError(f'no seed in common: scheme has {sorted(scheme)}, baseline has '
                         f'{sorted(baseline)}')
    d = np.array([scheme[s] - baseline[s] for s in seeds], dtype=float)
    n, mean = int(d.size), float(d.mean())
    if n == 1:
        return PairedDifference(1, mean, math.nan, math.nan, math.nan, confidence, ONE_SEED)
    std = float(d.std(ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * std / math.sqrt(n)
    low, high = mean - half, mean + half
    verdict = WITHIN_NOISE if low <= 0 <= high else (ABOVE if low > 0 else BELOW)
    return PairedDifference(n, mean, std, low, high, confidence, verdict)
