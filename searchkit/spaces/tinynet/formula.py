"""TinyNet's "tiny formula": r and d as functions of a FLOPs target, w solved from the cost.

TinyNet (Han et al. 2020) samples r/d/w under FLOPs constraints, keeps the best models
and regresses resolution and depth on FLOPs; width is then what is left to meet the target.
Here:

:func:`fit_formula` (``points`` = evaluated genomes with their FLOPs and accuracy)

1. **Bands.** ``n_bands`` log-spaced FLOPs bands between the smallest and largest FLOPs
   (default ``min(len(points), 12)``); in each band the most accurate point is
   kept (ties: fewer FLOPs). These are the "Pareto-ish" models the formula learns from.
2. **Mean.** For ``y`` in ``r, d``: least squares ``log y = c0 + c1 * x`` with
   ``x = log(FLOPs)``, i.e. the power law ``y = exp(c0) * FLOPs**c1`` (with one point,
   ``c1 = 0``). It is what extrapolates beyond the data.
3. **GP** (4 or more band-best points): Gaussian-process regression of the residuals of
   ``log y`` on ``x`` with an RBF kernel
   ``k(x, x') = s2 * exp(-(x - x')**2 / (2 * l**2)) + n2 * [x == x']``. ``s2``, ``l`` and
   ``n2`` maximise the log marginal likelihood over a fixed grid (numpy only, no random
   restarts, so the fit is deterministic). With fewer than 4 points, the power law alone
   (``method: "power_law"``).

The fit is plain JSON (``json.loads(json.dumps(fit)) == fit``): the method, the mean
coefficients, kernel parameters, the GP weights ``alpha = K^-1 residuals`` and the data used.

:func:`solve` predicts ``r`` and ``d`` for a target, clamps them into the space's grid
ranges, and bisects ``w`` (in 1e-4 steps, on the space's exact cost function) so the
FLOPs land within ``tol`` (3%) of the target. Because FLOPs are a step function of ``w``
(channels are multiples of 8), a miss is retried with neighbouring depths and input sides.

Example:
    >>> from searchkit.spaces.tinynet import TinyNetSpace
    >>> pts = [{"r": r, "d": d, "w": w, "flops": f, "accuracy": a} for r, d, w, f, a in [
    ...     (0.86, 1.2, 1.0, 336.9e6, 77.7), (0.84, 1.1, 0.75, 200.7e6, 74.9),
    ...     (0.825, 0.85, 0.54, 99.5e6, 71.2), (0.68, 0.695, 0.54, 51.6e6, 66.9),
    ...     (0.475, 0.6, 0.51, 24.4e6, 59.9)]]
    >>> fit = fit_formula(pts)
    >>> space = TinyNetSpace({}, 1000)
    >>> g = solve(fit, 150e6, space)
    >>> abs(space.flops_params(g)[0] / 150e6 - 1) <= 0.03
    True
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from searchkit.core.genome import Genome

FIT_VERSION = 1
GP_MIN_POINTS = 4
TARGETS = ("r", "d")


# -- band-best selection --------------------------------------------------------------

def band_best(points: list[dict], n_bands: int | None = None) -> list[dict]:
    """The most accurate point of each log-spaced FLOPs band, in increasing FLOPs.

    Example:
        >>> pts = [{"r": .5, "d": .5, "w": .5, "flops": f, "accuracy": a}
        ...        for f, a in [(1e6, 50), (1.1e6, 55), (9e6, 60), (1e7, 58)]]
        >>> [p["accuracy"] for p in band_best(pts, n_bands=2)]
        [55, 60]
    """
    def usable(p: dict) -> bool:  # failed / pruned trials come with None or NaN
        try:
            return float(p["flops"]) > 0 and math.isfinite(float(p["flops"])) and \
                math.isfinite(float(p["accuracy"]))
        except (TypeError, ValueError):
            return False

    pts = [p for p in points if usable(p)]
    if not pts:
        raise ValueError("fit_formula needs at least one point with finite FLOPs > 0 and accuracy")
    if n_bands is None:
        n_bands = min(len(pts), 12)
    logs = np.log([float(p["flops"]) for p in pts])
    lo, hi = float(logs.min()), float(logs.max())
    if hi - lo < 1e-12:
        n_bands = 1
    edges = np.linspace(lo, hi, n_bands + 1)
    band = np.clip(np.searchsorted(edges, logs, side="right") - 1, 0, n_bands - 1)
    best: dict[int, dict] = {}
    for b, p in zip(band.tolist(), pts):
        cur = best.get(b)
        key = (float(p["accuracy"]), -float(p["flops"]))
        if cur is None or key > (float(cur["accuracy"]), -float(cur["flops"])):
            best[b] = p
    return sorted(best.values(), key=lambda p: float(p["flops"]))


# -- regression ------------------------------------------------------------------------

def _rbf(a: np.ndarray, b: np.ndarray, s2: float, ls: float) -> np.ndarray:
    return s2 * np.exp(-((a[:, None] - b[None, :]) ** 2) / (2.0 * ls * ls))


def _log_marginal(x: np.ndarray, y: np.ndarray, s2: float, ls: float, n2: float) -> float:
    k = _rbf(x, x, s2, ls) + n2 * np.eye(len(x))
    try:
        chol = np.linalg.cholesky(k)
    except np.linalg.LinAlgError:
        return -math.inf
    alpha = np.linalg.solve(chol.T, np.linalg.solve(chol, y))
    return float(-0.5 * y @ alpha - np.log(np.diag(chol)).sum()
                 - 0.5 * len(x) * math.log(2 * math.pi))


def _fit_one(x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    logy = np.log(y)
    if len(x) >= 2 and np.ptp(x) > 1e-12:
        c1, c0 = np.polyfit(x, logy, 1)
    else:
        c0, c1 = float(logy.mean()), 0.0
    out: dict[str, Any] = {"mean": {"c0": float(c0), "c1": float(c1)}}
    if len(x) < GP_MIN_POINTS:
        return out
    resid = logy - (c0 + c1 * x)
    span = max(float(np.ptp(x)), 1e-6)
    var = max(float(resid.var()), 1e-6)
    best = None
    # NOTE: a fixed grid instead of gradient ascent with restarts: deterministic, and a
    # handful of points cannot pin the hyperparameters better than this anyway.
    for ls in span * np.array([0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0]):
        for s2 in var * np.array([0.25, 0.5, 1.0, 2.0, 4.0]):
            for n2 in np.array([1e-4, 1e-3, 1e-2, 0.1, 0.5]) * var + 1e-8:
                lml = _log_marginal(x, resid, s2, ls, n2)
                if best is None or lml > best[0]:
                    best = (lml, float(s2), float(ls), float(n2))
    lml, s2, ls, n2 = best
    k = _rbf(x, x, s2, ls) + n2 * np.eye(len(x))
    alpha = np.linalg.solve(k, resid)
    out["kernel"] = {"type": "rbf+white", "signal_var": s2, "length_scale": ls, "noise_var": n2,
                     "log_marginal_likelihood": lml}
    out["alpha"] = [float(a) for a in alpha]
    return out


def fit_formula(points: list[dict], *, n_bands: int | None = None) -> dict[str, Any]:
    """Fit ``r(FLOPs)`` and ``d(FLOPs)`` on the best point of each FLOPs band.

    Args:
        points: dicts with ``r``, ``d``, ``w``, ``flops`` (MACs) and ``accuracy``
            (higher is better); other keys are ignored.
        n_bands: number of log-spaced FLOPs bands (default ``min(len(points), 12)``).

    Returns:
        A JSON-able dict: ``version``, ``method`` ("gp" or "power_law"), ``x``
        (log-FLOPs of the data used), ``data`` (the band-best points), and per target
        ``r`` / ``d``: ``mean`` ``{c0, c1}`` and, for "gp", ``kernel`` and ``alpha``.

    Example:
        >>> pts = [{"r": .5 + .1 * i, "d": .6 + .1 * i, "w": .5, "flops": 1e7 * 2 ** i,
        ...         "accuracy": 60 + i} for i in range(3)]
        >>> fit = fit_formula(pts); fit["method"], round(predict(fit, 2e7)[0], 1)
        ('power_law', 0.6)
    """
    data = band_best(points, n_bands)
    x = np.log([float(p["flops"]) for p in data])
    fit: dict[str, Any] = {
        "version": FIT_VERSION,
        "method": "gp" if len(data) >= GP_MIN_POINTS else "power_law",
        "x": [float(v) for v in x],
        "data": [{k: float(p[k]) for k in ("r", "d", "w", "flops", "accuracy")} for p in data],
    }
    for t in TARGETS:
        y = np.array([float(p[t]) for p in data])
        if (y <= 0).any():
            raise ValueError(f"fit_formula: '{t}' must be > 0")
        fit[t] = _fit_one(x, y)
    return fit


def predict(fit: dict[str, Any], flops: float) -> tuple[float, float]:
    """``(r, d)`` the fit gives for a FLOPs target (the GP posterior mean).

    Example:
        >>> fit = fit_formula([{"r": .8, "d": 1, "w": 1, "flops": 1e8, "accuracy": 70}])
        >>> predict(fit, 5e7)
        (0.8, 1.0)
    """
    if fit.get("version") != FIT_VERSION:
        raise ValueError(f"unsupported tiny-formula fit version {fit.get('version')!r}")
    x = math.log(float(flops))
    xs = np.array(fit["x"], dtype=float)
    out = []
    for t in TARGETS:
        part = fit[t]
        logy = part["mean"]["c0"] + part["mean"]["c1"] * x
        if "alpha" in part:
            kern = part["kernel"]
            kx = _rbf(np.array([x]), xs, kern["signal_var"], kern["length_scale"])[0]
            logy += float(kx @ np.array(part["alpha"]))
        out.append(float(math.exp(logy)))
    return out[0], out[1]


# -- solving ---------------------------------------------------------------------------

def _solve_w(space, r: float, d: float, target: float, w_lo: float, w_hi: float) -> Genome:
    """The 1e-4-step ``w`` in ``[w_lo, w_hi]`` whose FLOPs are closest to ``target``."""
    def flops(n: int) -> int:
        return space.flops_params(space.genome(r, d, n / 1e4))[0]

    lo, hi = int(math.ceil(w_lo * 1e4 - 1e-6)), int(math.floor(w_hi * 1e4 + 1e-6))
    if flops(hi) < target:
        return space.genome(r, d, hi / 1e4)
    if flops(lo) >= target:
        return space.genome(r, d, lo / 1e4)
    while hi - lo > 1:  # invariant: flops(lo) < target <= flops(hi); FLOPs rise with w
        mid = (lo + hi) // 2
        if flops(mid) >= target:
            hi = mid
        else:
            lo = mid
    n = hi if flops(hi) - target <= target - flops(lo) else lo
    return space.genome(r, d, n / 1e4)


def solve(fit: dict[str, Any], flops_target: float, space, *, tol: float = 0.03,
          max_steps: int = 6) -> Genome:
    """A genome of ``space`` whose FLOPs are within ``tol`` of ``flops_target``.

    ``r`` and ``d`` come from :func:`predict` (clamped into the space's ``r``/``d`` grid
    ranges, rounded to 4 decimals), ``w`` from bisection on ``space.flops_params`` within the
    ``w`` range. If the FLOPs step across the target by more than ``tol`` (or ``w`` runs
    out of range), neighbouring depths (± the ``d`` grid step) and input sides (± one
    pixel) are tried, nearest first, up to ``max_steps`` steps away; failing that, the grid
    ``(r, d)`` nearest the prediction whose ``w`` range brackets the target. The result is
    off-grid in general: build and evaluate it directly (``params_of`` snaps to the grid).

    Raises:
        ValueError: if no tried point is within ``tol`` (the message gives the best).

    Example:
        >>> from searchkit.spaces.tinynet import TinyNetSpace
        >>> fit = fit_formula([{"r": .8, "d": 1, "w": 1, "flops": 1e8, "accuracy": 70}])
        >>> g = solve(fit, 1e8, TinyNetSpace({}, 1000))
        >>> (g["r"], g["d"]), abs(TinyNetSpace({}, 1000).flops_params(g)[0] / 1e8 - 1) < 0.03
        ((0.8, 1.0), True)
    """
    target = float(flops_target)
    gr, gd, gw = space.grids["r"], space.grids["d"], space.grids["w"]
    r0, d0 = predict(fit, target)
    r0 = round(min(max(r0, gr.low), gr.high), 4)
    d0 = round(min(max(d0, gd.low), gd.high), 4)
    ref = space.reference_size
    best, best_err = None, math.inf

    def attempt(r: float, d: float) -> bool:
        nonlocal best, best_err
        g = _solve_w(space, r, d, target, gw.low, gw.high)
        err = abs(space.flops_params(g)[0] / target - 1)
        if err < best_err:
            best, best_err = g, err
        return err <= tol

    tried = set()
    for total in range(max_steps + 1):
        for dr in range(-total, total + 1):
            for sign in ((1, -1) if total - abs(dr) else (1,)):
                dd = sign * (total - abs(dr))
                r = round(min(max(r0 + dr / ref, gr.low), gr.high), 4)
                d = round(min(max(d0 + dd * gd.step, gd.low), gd.high), 4)
                if (r, d) not in tried:
                    tried.add((r, d))
                    attempt(r, d)
        if best_err <= tol:
            return best
    # The prediction is too far off for w to make up the difference (a poor fit, or a
    # target at the edge of the space): take the grid (r, d) nearest the prediction whose
    # w range brackets the target, per the space's FLOPs table.
    fg = space.flops_grid
    reach = (fg[:, :, 0] <= target * (1 + tol)) & (fg[:, :, -1] >= target * (1 - tol))
    ri, di = np.nonzero(reach)
    dist = (np.abs(np.array(gr.values)[ri] - r0) / gr.step
            + np.abs(np.array(gd.values)[di] - d0) / gd.step)
    for n in np.argsort(dist, kind="stable")[:32]:
        if attempt(gr.values[ri[n]], gd.values[di[n]]):
            return best
    raise ValueError(f"no genome within {tol:.0%} of {target / 1e6:.4g}M FLOPs near r={r0}, "
                     f"d={d0}; best {best} is {best_err:.1%} off "
                     f"(space reaches {space.flops_grid[space.feasible].min() / 1e6:.4g}M.."
                     f"{space.flops_params(space.base_genome())[0] / 1e6:.4g}M)")


FIT_KEY = "searchkit:tinyformula"


def formula_for_study(study, flops_target: float, space) -> tuple[dict, dict]:
    """Fit the tiny formula to a tinynet study's trained candidates, store the fit (with its
    data) in the study, and solve it for ``flops_target``.

    Returns:
        (fit, genome whose FLOPs lie within 3% of the target)
    """
    from searchkit.study import GENOME, ranked_trials, trial_cost

    points = [{**{k: float(t.user_attrs[GENOME][k]) for k in ("r", "d", "w")},
               "flops": trial_cost(t, "flops"), "accuracy": float(t.values[0])}
              for t in ranked_trials(study)]
    if len(points) < 2:
        raise ValueError(f"study '{study.study_name}' has {len(points)} trained candidates; "
                         "the formula needs at least 2 (search longer first)")
    fit = fit_formula(points)
    genome = solve(fit, flops_target, space)
    study.set_user_attr(FIT_KEY, {"fit": fit, "last_target": flops_target, "last_genome": genome})
    return fit, genome


def fit_warnings(fit: dict, num_classes: int) -> list[str]:
    """What makes a fit untrustworthy, in words: too few band-best points, or candidates that
    scored at chance (the formula then follows noise)."""
    out = []
    data = fit.get("data") or []
    if len(data) < GP_MIN_POINTS:
        out.append(f"the formula rests on {len(data)} band-best candidates (a power law alone; the Gaussian-"
                   f"process correction needs {GP_MIN_POINTS}): search more FLOPs bands or more candidates")
    accs = sorted(float(p["accuracy"]) for p in data)
    chance = 1 / max(num_classes, 1)
    # "near chance": less than a quarter of the way from chance to a perfect score
    if accs and accs[len(accs) // 2] <= chance + 0.25 * (1 - chance):
        out.append(f"the candidates score near chance (median val accuracy {accs[len(accs) // 2]:.3f} with "
                   f"{num_classes} classes): the formula follows noise; train candidates longer "
                   "(finetune.epochs) before fitting it")
    return out
