"""The scale λ of a combination θ0 + λ·Σ τ, chosen on a score: one grid and one tie rule for every
caller (tpv-init's ``scale_grid``, the combination analysis of TPV suites)."""

from __future__ import annotations

from collections.abc import Callable

#: λ from 0 to 1 in steps of 0.05 (docs/methods.md §2)
LAMBDA_GRID = tuple(round(0.05 * i, 2) for i in range(21))


def choose_scale(score: Callable[[float], float], grid: tuple[float, ...] = LAMBDA_GRID
                 ) -> tuple[float, dict[float, float]]:
    """The λ of ``grid`` with the highest ``score(λ)`` and the whole curve. Always a λ of the grid, even
    when no score is above 0 (a metric such as MCC at chance); ties go to the smaller λ — the smaller
    displacement from the origin."""
    curve = {lam: score(lam) for lam in grid}
    return max(grid, key=lambda lam: (curve[lam], -lam)), curve
