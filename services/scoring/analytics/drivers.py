"""Key-driver importance of per-touchpoint ratings on the likelihood to recommend (DESIGN.md §4, Relevance
"with per-touchpoint ratings"): how much of the variance of LTR (0-10) each touchpoint's rating (CSAT 1-5)
accounts for, decomposed two ways with a bootstrap interval.

- Johnson's relative weights (Johnson 2000, Multivariate Behav. Res. 35(1):1-19): regress y on the
  orthogonal Z = X Rxx^-1/2 closest to X; raw weight_j = sum_k Lambda_jk^2 beta_k^2 with Lambda = Rxx^1/2
  and beta = Lambda^-1 r_xy. The weights sum to R^2 and cost one eigendecomposition, so they scale to
  hundreds of touchpoints.
- LMG (Lindeman, Merenda & Gold 1980; Groemping 2006, J. Stat. Softw. 17(1)): the Shapley value of R^2,
  the increase in R^2 from adding driver j averaged over all orders of the drivers. Exact, but it needs the
  R^2 of all 2^p subsets, so it is computed only up to LMG_EXACT_MAX drivers.

Both read a correlation matrix only, so customers who rated only the touchpoints they met can be handled
through pairwise-complete correlations (see key_drivers)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp  # type: ignore[import-untyped]
from numpy.typing import NDArray
from scipy import linalg as sla
from scipy import stats as sps

from services.common.stats import LEVEL

F64 = NDArray[np.float64]

# 2^12 = 4,096 subset regressions per replicate: exact LMG with 200 bootstrap replicates of 100,000
# customers stays inside the same ~1 s as the relative weights of 200 drivers; each further driver doubles
# time and memory. Above it the relative weights, which track LMG closely (Johnson 2000; LeBreton et al.
# 2004), are the importance measure.
LMG_EXACT_MAX = 12
# Answers are points on a rating scale (CSAT 1-5, LTR 0-10): the bootstrap counts customers per
# (pair of drivers, answer, answer) cell instead of carrying six moments per customer and pair.
MAX_SCALE_POINTS = 11
# Eigenvalues below this are raised to it when a pairwise matrix is not positive semi-definite.
EIGEN_FLOOR = 1e-8
_RANK_TOL = 1e-10  # eigenvalues / residual variances below this count as exact collinearity
_STATE_BYTES = 64 * 2**20  # memory for one chunk of bootstrap replicates

# Poisson(1) quantiles at 16-bit resolution: one table lookup per customer and replicate instead of a
# Poisson draw (4x faster; probabilities exact to 1/65,536).
_POISSON_TABLE = np.searchsorted(sps.poisson.cdf(np.arange(32), 1.0), (np.arange(2**16) + 0.5) / 2**16).astype(
    np.float32
)


def _check_corr(corr: F64) -> F64:
    c = np.asarray(corr, dtype=np.float64)
    if c.ndim != 2 or c.shape[0] != c.shape[1] or c.shape[0] < 1:
        raise ValueError("corr must be a square (p+1)x(p+1) matrix, drivers first, outcome last")
    if not np.all(np.isfinite(c)) or not np.allclose(c, c.T, atol=1e-10) or not np.allclose(np.diag(c), 1.0):
        raise ValueError("corr must be a finite symmetric matrix with a unit diagonal")
    return c


def relative_weights(corr: F64) -> tuple[F64, float]:
    """Johnson (2000) relative weights from a (p+1)x(p+1) correlation matrix, drivers first, outcome last.
    Returns (raw weights, which sum to R², R²). A singular Rxx is handled with the pseudo-inverse (exactly
    collinear directions carry no weight), matching R² = r' Rxx⁺ r."""
    weights, r2 = _relative_weights_stack(_check_corr(corr)[None])
    return weights[0], float(r2[0])


def lmg(corr: F64) -> F64:
    """Exact LMG / Shapley decomposition of R² (Lindeman, Merenda & Gold 1980; Grömping 2006) from the same
    matrix; sums to R². ValueError when p > LMG_EXACT_MAX."""
    c = _check_corr(corr)
    if c.shape[0] - 1 > LMG_EXACT_MAX:
        raise ValueError(f"exact LMG needs 2^p regressions; p = {c.shape[0] - 1} > LMG_EXACT_MAX = {LMG_EXACT_MAX}")
    return np.asarray(_lmg_stack(c[None])[0])


def repair_correlation(corr: F64) -> tuple[F64, bool]:
    """(matrix, repaired). Eigenvalue clipping and rescaling (Rousseeuw & Molenberghs 1993; Rebonato &
    Jäckel 1999): eigenvalues below EIGEN_FLOOR are raised to it, then the matrix is rescaled to a unit
    diagonal. Not Higham's (2002) nearest correlation matrix: that needs tens of eigendecompositions per
    matrix by alternating projections, clipping one partial one, which the bootstrap can afford."""
    repaired, flags = _repair_stack(_check_corr(corr)[None])
    return repaired[0], bool(flags[0])


def _relative_weights_stack(c: F64) -> tuple[F64, F64]:
    """Relative weights and R² of a stack (m, q+1, q+1) of correlation matrices."""
    m, q = c.shape[0], c.shape[1] - 1
    if q == 0:
        return np.zeros((m, 0)), np.zeros(m)
    lam, vec = np.linalg.eigh(c[:, :q, :q])
    usable = lam > _RANK_TOL * np.maximum(lam[:, -1:], 1.0)
    root = np.sqrt(np.where(usable, lam, 0.0))
    z = np.einsum("mji,mj->mi", vec, c[:, :q, q])  # r_xy in the eigenbasis
    beta_rot = np.where(usable, z / np.where(usable, root, 1.0), 0.0)
    beta = np.einsum("mij,mj->mi", vec, beta_rot)  # Lambda^-1 r_xy = V D^-1/2 V' r_xy
    half = (vec * root[:, None, :]) @ vec.transpose(0, 2, 1)  # Lambda = Rxx^1/2, symmetric
    weights = np.einsum("mjk,mk->mj", half * half, beta * beta)
    return weights, (beta_rot * beta_rot).sum(axis=1)


def _subset_r2(c: F64) -> F64:
    """R² of every subset of drivers (bit j of the column index = driver j in the model), shape (m, 2^q).
    Sweep operator level by level: the states of all subsets of drivers 0..l-1 hold the residual
    covariance of drivers l.. and y; sweeping driver l on each of them gives the subsets with l. One
    vectorised step per driver instead of one regression per subset."""
    q = c.shape[1] - 1
    state = c[None].copy()
    for _ in range(q):
        pivot = state[:, :, 0, 0]
        col = state[:, :, 1:, 0]
        rest = state[:, :, 1:, 1:]
        usable = pivot > _RANK_TOL  # a driver collinear with the subset adds nothing (pseudo-inverse)
        scale = np.where(usable, 1.0 / np.where(usable, pivot, 1.0), 0.0)
        swept = rest - (col * scale[..., None])[..., :, None] * col[..., None, :]
        state = np.concatenate([rest, swept])
    return np.asarray(1.0 - state[:, :, 0, 0].T)


def _shapley_coefficients(q: int) -> F64:
    """(2^q, q): LMG_j = sum_S R²(S) coef[S, j], with coef = w(|S|-1) when j is in S and -w(|S|) when not,
    w(k) = k! (q-1-k)! / q!, the share of orders in which j joins exactly the k drivers before it."""
    bits = (np.arange(2**q)[:, None] >> np.arange(q)) & 1
    size = bits.sum(axis=1)
    w = np.array([math.factorial(k) * math.factorial(q - 1 - k) / math.factorial(q) for k in range(q)])
    inside = w[np.clip(size - 1, 0, q - 1)][:, None]
    outside = -w[np.clip(size, 0, q - 1)][:, None]
    return np.asarray(np.where(bits == 1, inside, outside), dtype=np.float64)


def _lmg_stack(c: F64) -> F64:
    q = c.shape[1] - 1
    if q == 0:
        return np.zeros((c.shape[0], 0))
    return np.asarray(_subset_r2(c) @ _shapley_coefficients(q))


def _repair_stack(c: F64) -> tuple[F64, NDArray[np.bool_]]:
    """Clip-and-rescale each matrix whose smallest eigenvalue is below EIGEN_FLOOR. A Cholesky
    factorisation of C - floor I (a tenth of an eigendecomposition) tells which ones need it."""
    out = c.copy()
    repaired = np.zeros(c.shape[0], dtype=np.bool_)
    shift = EIGEN_FLOOR * np.eye(c.shape[1])
    for i in range(c.shape[0]):
        if sla.lapack.dpotrf(c[i] - shift, lower=1, clean=0, overwrite_a=1)[1] == 0:
            continue
        lam, vec = np.linalg.eigh(c[i])
        lifted = (vec * np.maximum(lam, EIGEN_FLOOR)) @ vec.T
        d = np.sqrt(np.diag(lifted))
        fixed = lifted / np.outer(d, d)
        out[i] = (fixed + fixed.T) / 2
        np.fill_diagonal(out[i], 1.0)
        repaired[i] = True
    return out, repaired


@dataclass(frozen=True, slots=True)
class DriverImportance:
    """Importance per driver (touchpoint), p entries each; intervals are bootstrap percentile intervals at
    services.common.stats.LEVEL (NaN when bootstrap = 0; [0, 0] for an inactive driver, whose 0 is not an
    estimate)."""

    relative_weight: F64  # raw Johnson weights, sum to r2
    relative_weight_low: F64
    relative_weight_high: F64
    lmg: F64 | None  # None when more than LMG_EXACT_MAX drivers are active
    lmg_low: F64 | None
    lmg_high: F64 | None
    r2: float
    r2_low: float
    r2_high: float
    n: int  # customers with an LTR and at least one rating
    n_rated: NDArray[np.int64]  # raters per driver
    significant: NDArray[np.bool_]  # Fisher z test of the driver's correlation with LTR at LEVEL
    p_value: F64  # of that test; NaN for an inactive driver
    correlation: F64  # (p+1)x(p+1) matrix the weights come from (pairwise, zeroed, repaired), LTR last
    repaired: bool  # whether the pairwise matrix needed the eigenvalue repair
    bootstrap: int  # replicates
    method: str


@dataclass(frozen=True, slots=True)
class _Cells:
    """Customers counted per cell: (pair of active drivers, answer, answer) and (driver, answer, LTR)."""

    matrix: sp.csr_matrix  # cells x customers, ones
    counts: F64  # the full sample's count per cell
    pair_j: NDArray[np.intp]  # kept pairs (active indices, j < k)
    pair_k: NDArray[np.intp]
    coef_pair: F64  # (6, K²): 1, a, b, a², b², ab per (a, b) cell
    coef_y: F64  # (6, K·L)
    q: int


def _coefficients(u: F64, v: F64) -> F64:
    a, b = np.repeat(u, v.size), np.tile(v, u.size)
    return np.stack([np.ones_like(a), a, b, a * a, b * b, a * b])


def _cells(x: sp.csr_matrix, y: F64, active: NDArray[np.intp], q: int, min_pair_n: int) -> _Cells:
    n = x.shape[0]
    levels, code = np.unique(x.data, return_inverse=True)
    y_levels, y_code = np.unique(y, return_inverse=True)
    k, ly = levels.size, y_levels.size
    rows = np.repeat(np.arange(n), np.diff(x.indptr))
    drv = active[x.indices]
    keep = drv >= 0
    rows, drv, code = rows[keep], drv[keep], code[keep]
    # Pairs within a customer: entries are sorted by customer, then driver; pair each entry with the one d
    # places on while both belong to the same customer (a loop over the longest customer's ratings).
    length = np.bincount(rows, minlength=n)
    first = np.concatenate([[0], np.cumsum(length)[:-1]])
    remaining = length[rows] - (np.arange(rows.size) - first[rows]) - 1
    cand, lefts, rights, d = np.flatnonzero(remaining >= 1), [], [], 1
    while cand.size:
        lefts.append(cand)
        rights.append(cand + d)
        d += 1
        cand = cand[remaining[cand] >= d]
    left = np.concatenate(lefts) if lefts else np.zeros(0, np.intp)
    right = np.concatenate(rights) if rights else np.zeros(0, np.intp)
    key = drv[left] * q + drv[right]
    kept = np.flatnonzero(np.bincount(key, minlength=q * q) >= min_pair_n)
    pid = np.full(q * q, -1)
    pid[kept] = np.arange(kept.size)
    ev = pid[key]
    sel = ev >= 0
    left, right, ev = left[sel], right[sel], ev[sel]
    n_pair = kept.size * k * k
    cells = np.concatenate(
        [(code[left] * k + code[right]) * kept.size + ev, n_pair + (code * ly + y_code[rows]) * q + drv]
    )
    cust = np.concatenate([rows[left], rows])
    n_cells = n_pair + k * ly * q
    matrix = sp.csr_matrix((np.ones(cells.size, np.float32), (cells, cust)), shape=(n_cells, n))
    # Centred answers keep the moment sums small, so the float32 bootstrap sums lose no accuracy to r.
    u, v = levels - x.data.mean(), y_levels - y.mean()
    return _Cells(
        matrix=matrix,
        counts=np.bincount(cells, minlength=n_cells).astype(np.float64),
        pair_j=kept // q,
        pair_k=kept % q,
        coef_pair=_coefficients(u, u),
        coef_y=_coefficients(u, v),
        q=q,
    )


def _pearson(s: F64) -> F64:
    """r from (n, Σa, Σb, Σa², Σb², Σab); 0 without two raters or without variance."""
    nn, sa, sb, qa, qb, ab = s
    safe = np.where(nn > 0, nn, 1.0)
    va, vb, cov = qa - sa * sa / safe, qb - sb * sb / safe, ab - sa * sb / safe
    ok = (nn > 1) & (va > 1e-6 * qa) & (vb > 1e-6 * qb)
    return np.clip(np.where(ok, cov / np.sqrt(np.where(ok, va * vb, 1.0)), 0.0), -1.0, 1.0)


def _matrices(cells: _Cells, totals: NDArray[np.floating]) -> F64:
    """Pairwise correlation matrices (m, q+1, q+1) from cell totals (cells, m); pairs not kept stay 0."""
    m, q, pairs = totals.shape[1], cells.q, cells.pair_j.size
    split = cells.coef_pair.shape[1] * pairs
    coef_pair, coef_y = cells.coef_pair.astype(totals.dtype), cells.coef_y.astype(totals.dtype)
    if pairs:
        s_pair = (coef_pair @ totals[:split].reshape(-1, pairs * m)).reshape(6, pairs, m)
    else:  # no two drivers share enough raters: every driver stands alone
        s_pair = np.zeros((6, 0, m), dtype=totals.dtype)
    s_y = (coef_y @ totals[split:].reshape(-1, q * m)).reshape(6, q, m)
    r_pair, r_y = _pearson(s_pair.astype(np.float64)).T, _pearson(s_y.astype(np.float64)).T
    c = np.zeros((m, q + 1, q + 1))
    c[:, np.arange(q + 1), np.arange(q + 1)] = 1.0
    c[:, cells.pair_j, cells.pair_k] = r_pair
    c[:, cells.pair_k, cells.pair_j] = r_pair
    c[:, :q, q] = r_y
    c[:, q, :q] = r_y
    return c


def _evaluate(c: F64, *, with_lmg: bool) -> tuple[F64, F64, F64 | None, F64, NDArray[np.bool_]]:
    fixed, repaired = _repair_stack(c)
    weights, r2 = _relative_weights_stack(fixed)
    return weights, r2, _lmg_stack(fixed) if with_lmg else None, fixed, repaired


def _interval(reps: F64) -> tuple[F64, F64]:
    if reps.shape[0] == 0:
        nan = np.full(reps.shape[1:], np.nan)
        return nan, nan
    low, high = np.quantile(reps, [(1 - LEVEL) / 2, (1 + LEVEL) / 2], axis=0)
    return low, high


METHOD = (
    "Importance of each touchpoint's rating for the likelihood to recommend: Johnson's (2000) relative "
    "weights and, for at most {lmg_max} active drivers, the exact LMG/Shapley decomposition of R² "
    "(Lindeman, Merenda & Gold 1980; Grömping 2006); both sum to R². Missing ratings: customers rate only "
    "the touchpoints they met, so each correlation is pairwise-complete (between two touchpoints: customers "
    "who rated both; with LTR: customers who rated the touchpoint), set to 0 when fewer than {min_pair_n} "
    "customers share the pair; a driver rated by fewer than {min_pair_n} customers, or always rated the same, "
    "is inactive and gets 0. A matrix that is not positive semi-definite is repaired by eigenvalue clipping "
    "at {floor:g} and rescaling to a unit diagonal (not Higham's nearest correlation matrix); when the "
    "repair is large R² is inflated towards 1. Above {lmg_max} active drivers LMG is not computed and the "
    "relative weights, which track it closely, stand alone. Intervals: {bootstrap} Poisson(1)-weighted "
    "bootstrap replicates of customers (Hanley & MacGibbon 2006), the whole estimator (pairwise "
    "correlations on the pairs kept in the sample, repair, weights) rerun on each, {level:g} % percentile "
    "intervals. Significance: Fisher z test of the driver's correlation with LTR, two-sided, unadjusted, "
    "at {alpha:g}."
)


def key_drivers(
    ratings: sp.csr_matrix, ltr: F64, *, bootstrap: int = 200, seed: int = 0, min_pair_n: int = 30
) -> DriverImportance:
    """ratings: n customers x p touchpoints, stored value = the customer's rating (1-5), not stored = not rated
    (customers rate only the touchpoints they met; one rating per customer and touchpoint: duplicate entries
    would be summed, so the caller keeps each customer's latest). ltr: each customer's likelihood to recommend
    (NaN: none). See METHOD for the estimator; the bootstrap is vectorised as one sparse product (cells x customers) @
    (customers x replicates) of Poisson weights per chunk of replicates."""
    x = sp.csr_matrix(ratings, dtype=np.float64, copy=True)
    x.sum_duplicates()  # canonical: sorted drivers within a customer
    y_all = np.asarray(ltr, dtype=np.float64)
    if y_all.shape != (x.shape[0],):
        raise ValueError("ltr must hold one value per row of ratings")
    if not np.all(np.isfinite(x.data)):
        raise ValueError("ratings must be finite")
    if bootstrap < 0 or min_pair_n < 2:
        raise ValueError("bootstrap must be >= 0 and min_pair_n >= 2")
    if np.unique(x.data).size > MAX_SCALE_POINTS or np.unique(y_all[np.isfinite(y_all)]).size > MAX_SCALE_POINTS:
        raise ValueError(f"ratings and LTR must be answers on scales of at most {MAX_SCALE_POINTS} points")
    keep = np.isfinite(y_all) & (np.diff(x.indptr) > 0)
    x, y = x[keep], y_all[keep]
    n, p = x.shape
    n_rated = np.bincount(x.indices, minlength=p).astype(np.int64)
    total = np.bincount(x.indices, weights=x.data, minlength=p)
    squares = np.bincount(x.indices, weights=x.data**2, minlength=p)
    spread = squares - total**2 / np.maximum(n_rated, 1)
    is_active = (n_rated >= min_pair_n) & (spread > 1e-9 * np.maximum(squares, 1.0))
    if n == 0 or np.ptp(y) == 0:
        is_active[:] = False
    act = np.flatnonzero(is_active)
    q = act.size
    active = np.full(p, -1, dtype=np.intp)
    active[act] = np.arange(q)
    with_lmg = q <= LMG_EXACT_MAX

    cells = _cells(x, y, active, q, min_pair_n) if q else None
    point = _matrices(cells, cells.counts[:, None]) if cells else np.ones((1, 1, 1))
    weights, r2, lmg_point, fixed, repaired = _evaluate(point, with_lmg=with_lmg)
    rep_w, rep_r2, rep_lmg = np.zeros((bootstrap, q)), np.zeros(bootstrap), np.zeros((bootstrap, q))
    if cells is not None and bootstrap:
        rng = np.random.default_rng(seed)
        per_replicate = 4 * (cells.counts.size + n) + 64 * (q + 1) ** 2 + (24 * 2**q * 9 if with_lmg else 0)
        chunk = int(np.clip(_STATE_BYTES // per_replicate, 1, bootstrap))
        for start in range(0, bootstrap, chunk):
            stop = min(start + chunk, bootstrap)
            draws = rng.integers(0, 2**16, size=(n, stop - start), dtype=np.uint16)
            totals = cells.matrix @ _POISSON_TABLE[draws]  # float32: counts stay exact below 2^24
            w, rr, lm, _, _ = _evaluate(_matrices(cells, totals), with_lmg=with_lmg)
            rep_w[start:stop], rep_r2[start:stop] = w, rr
            if lm is not None:
                rep_lmg[start:stop] = lm

    def spread_p(v: F64) -> F64:
        out = np.zeros(p)
        out[act] = v
        return out

    w_low, w_high = _interval(rep_w)
    r2_low, r2_high = _interval(rep_r2[:, None])
    lmg_vals = lmg_low = lmg_high = None
    if lmg_point is not None:
        lo, hi = _interval(rep_lmg)
        lmg_vals, lmg_low, lmg_high = spread_p(lmg_point[0]), spread_p(lo), spread_p(hi)
    r_y = point[0, :q, q]  # observed pairwise correlations with LTR, before any repair
    z = np.arctanh(np.clip(r_y, -1 + 1e-12, 1 - 1e-12)) * np.sqrt(np.maximum(n_rated[act] - 3, 0))
    p_value = np.full(p, np.nan)
    p_value[act] = 2 * sps.norm.sf(np.abs(z))
    significant = np.zeros(p, dtype=np.bool_)
    significant[act] = (p_value[act] < 1 - LEVEL) & (n_rated[act] > 3)
    corr = np.eye(p + 1)
    idx = np.append(act, p)
    corr[np.ix_(idx, idx)] = fixed[0]
    method = METHOD.format(
        lmg_max=LMG_EXACT_MAX,
        min_pair_n=min_pair_n,
        floor=EIGEN_FLOOR,
        bootstrap=bootstrap,
        level=100 * LEVEL,
        alpha=1 - LEVEL,
    )
    return DriverImportance(
        relative_weight=spread_p(weights[0]),
        relative_weight_low=spread_p(w_low),
        relative_weight_high=spread_p(w_high),
        lmg=lmg_vals,
        lmg_low=lmg_low,
        lmg_high=lmg_high,
        r2=float(r2[0]),
        r2_low=float(r2_low[0]),
        r2_high=float(r2_high[0]),
        n=int(n),
        n_rated=n_rated,
        significant=significant,
        p_value=p_value,
        correlation=corr,
        repaired=bool(repaired[0]),
        bootstrap=bootstrap,
        method=method,
    )
