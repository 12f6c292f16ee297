"""What several seeds of one architecture say: mean, standard deviation and a 95% interval per objective, the Pareto
set on the means, and "A beats B" only where the intervals separate.

The interval is Student's t interval of the mean, mean +- t(0.975, n-1) * s / sqrt(n): with 3 seeds t = 4.30, so it
is wide, as three seeds deserve. One seed has no interval (it spans everything): a single run never beats anything.
Two intervals that overlap are "within noise"; a reviewer who wants a test gets the same verdict from a conservative
one (non-overlapping 95% intervals imply a difference at well below the 5% level).
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Estimate:
    """One objective of one architecture over its seeds."""

    values: tuple[float, ...]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values) if self.values else math.nan

    @property
    def std(self) -> float:
        return statistics.stdev(self.values) if self.n > 1 else math.nan

    @property
    def half_width(self) -> float:
        if self.n < 2:
            return math.inf
        from scipy.stats import t

        return float(t.ppf(0.5 + CONFIDENCE / 2, self.n - 1)) * self.std / math.sqrt(self.n)

    @property
    def low(self) -> float:
        return self.mean - self.half_width

    @property
    def high(self) -> float:
        return self.mean + self.half_width

    def text(self) -> str:
        if self.n < 2:
            return f"{self.mean:.4g} (1 seed)" if self.n else "-"
        return f"{self.mean:.4g} ± {self.std:.2g} [{self.low:.4g}, {self.high:.4g}]"


def beats(a: Estimate, b: Estimate, maximize: bool) -> bool:
    """a is better than b beyond noise: a's whole interval lies on the better side of b's."""
    if a.n < 2 or b.n < 2:
        return False
    return a.low > b.high if maximize else a.high < b.low


def verdict(name_a: str, a: Estimate, name_b: str, b: Estimate, metric: str, maximize: bool) -> str:
    """One sentence for a pair on one objective."""
    if beats(a, b, maximize):
        return f"{name_a} beats {name_b} on {metric} ({a.mean:.4g} vs {b.mean:.4g}; the 95% intervals separate)"
    if beats(b, a, maximize):
        return f"{name_b} beats {name_a} on {metric} ({b.mean:.4g} vs {a.mean:.4g}; the 95% intervals separate)"
    return f"{name_a} and {name_b} are within noise on {metric} ({a.mean:.4g} vs {b.mean:.4g}; the intervals overlap)"


def pareto_on_means(estimates: dict[str, list[Estimate]], maximize: list[bool]) -> set[str]:
    """The architectures no other one dominates on the means (at least as good on every objective, better on one).
    Single objective: those with the best mean."""
    def key(name: str) -> list[float]:
        return [e.mean if up else -e.mean for e, up in zip(estimates[name], maximize)]  # higher is better

    def dominates(b: str, a: str) -> bool:
        kb, ka = key(b), key(a)
        return all(x >= y for x, y in zip(kb, ka)) and any(x > y for x, y in zip(kb, ka))

    usable = [n for n in estimates if all(e.n for e in estimates[n])]
    return {a for a in usable if not any(dominates(b, a) for b in usable if b != a)}


def statements(estimates: dict[str, list[Estimate]], metrics: list[str], maximize: list[bool]) -> list[str]:
    """Per objective, every pair of architectures in order of their means: who beats whom, or within noise."""
    out = []
    for i, metric in enumerate(metrics):
        ranked = sorted((n for n in estimates if estimates[n][i].n),
                        key=lambda n: estimates[n][i].mean, reverse=maximize[i])
        for j, a in enumerate(ranked):
            for b in ranked[j + 1:]:
                out.append(verdict(a, estimates[a][i], b, estimates[b][i], metric, maximize[i]))
    return out


def leader(estimates: dict[str, list[Estimate]], metric_index: int, maximize: bool) -> tuple[str, list[str]]:
    """The best mean on one objective and the architectures it does not beat beyond noise (its ties)."""
    ranked = sorted((n for n in estimates if estimates[n][metric_index].n),
                    key=lambda n: estimates[n][metric_index].mean, reverse=maximize)
    if not ranked:
        return "", []
    top = ranked[0]
    ties = [n for n in ranked[1:] if not beats(estimates[top][metric_index], estimates[n][metric_index], maximize)]
    return top, ties
