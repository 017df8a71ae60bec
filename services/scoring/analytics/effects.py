"""Exposure effects (DESIGN.md §4, relevance "with exposure only"): the effect of having met a touchpoint on
NPS (linear) and on conversion (logistic), controlling for the other touchpoints, each with a 95 % interval.

Both models take the customer x touchpoint exposure matrix as scipy.sparse CSR and never densify it: at
200,000 customers x 200 touchpoints a dense float64 design is 320 MB, while the sparse one (~5 met per
customer) is ~12 MB. Everything is built from cross-products X'X, X'WX (p x p) and sparse products.
Any non-zero entry counts as "met" (an exposure count of 3 is met, like 1).

Touchpoints that cannot be estimated are reported, never silently dropped: `estimable` is False, the
numbers are NaN and `reason` says why (never met, met by everyone, aliased with earlier touchpoints,
separated, no variance in the outcome, too few customers, no convergence).

Run the process with one BLAS thread (OPENBLAS_NUM_THREADS=1): the only dense algebra here is on p x p
matrices, and on a busy 2-core machine OpenBLAS's threaded Cholesky of a 201 x 201 matrix took ~0.25 s
instead of 0.2 ms (thread contention, OpenMathLib/OpenBLAS#731), which alone breaks the time budget.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.sparse as sp  # type: ignore[import-untyped]
from numpy.typing import NDArray
from scipy import linalg as sla
from scipy import stats as sps

from services.common.stats import LEVEL, Z

NEVER_MET = "never met"
MET_BY_EVERYONE = "met by everyone"
ALIASED = "aliased"
SEPARATED = "separated"
NO_VARIANCE = "no variance in the outcome"
TOO_FEW = "too few customers"
NO_CONVERGENCE = "no convergence"

# A column is aliased when its residual sum of squares on the columns kept before it is below this share
# of its own sum of squares (1 - R² < 1e-9): exact collinearity up to rounding, the rule of R's lm pivoting.
_ALIAS_TOL = 1e-9
# |log-odds| above 15 (odds ratio 3.3 million) cannot come from a real touchpoint; it is the signature of a
# likelihood that increases without bound (separation, Albert & Anderson 1984).
_MAX_LOGIT = 15.0
_MAX_ITER = 30
_STEP_TOL = 1e-8  # Newton converges quadratically: the step after one of 1e-8 is ~1e-16
_CHUNK = 512  # rows per block of the dense n x p marginal-effect arrays (0.8 MB each: stays in cache)

Float = NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class ExposureEffects:
    effect: Float  # (p,) linear: NPS points; logistic: average marginal effect in percentage points
    low: Float  # 95 % interval of `effect`
    high: Float
    p_value: Float  # two-sided test of effect = 0
    coef: Float  # the model's own coefficients (linear: = effect; logistic: log-odds)
    coef_se: Float
    n: int  # customers given
    n_exposed: NDArray[np.int64]  # customers who met each touchpoint
    estimable: NDArray[np.bool_]  # False (effect NaN) when met by nobody / by everyone / aliased / ...
    reason: tuple[str, ...]  # "" when estimable, else why not
    n_used: int  # customers in the fitted model (logistic: minus those a separated touchpoint predicts)
    method: str


def linear_exposure_effects(
    exposure: sp.csr_matrix, y: Float, *, cov_type: Literal["HC1", "classical"] = "HC1"
) -> ExposureEffects:
    """OLS y ~ 1 + exposures. y is each customer's NPS score in points (+100 promoter, 0 passive, -100
    detractor), so a coefficient is 'NPS points for having met it', holding the other touchpoints fixed.
    Solved from the cross-products X'X, X'y (sparse X; never densified).

    Standard errors default to HC1 (White 1980 with the n / (n - k) factor of MacKinnon & White 1985, as
    Stata's `regress, robust`): the score takes three values and its variance p + d - (p - d)² moves with
    every touchpoint that shifts the promoter / detractor mix, so the classical homoskedastic variance is
    wrong in principle; HC1 costs one more sparse product. Intervals use Student t on n - k degrees of
    freedom for both covariance types.
    """
    e, y = _validate(exposure, y)
    n, p = e.shape
    n_exposed = np.bincount(e.indices, minlength=p).astype(np.int64)
    reason = _reasons_for_counts(n_exposed, n)
    too_few = n - reason.count("") - 1 < 1  # no residual degrees of freedom even before aliasing
    if too_few or np.ptp(y) == 0:
        return _nothing(p, n, n_exposed, reason, TOO_FEW if too_few else NO_VARIANCE, n_used=n)
    cross = _CrossProducts(e)
    kept, aliased, chol = _independent(cross(), [1 + j for j in range(p) if reason[j] == ""])
    for j in aliased:
        reason[j - 1] = ALIASED
    k = len(kept)
    df = n - k  # >= 1: checked above with every candidate column
    xty = np.concatenate([[y.sum()], e.T @ y])[kept]
    beta = sla.cho_solve((chol, True), xty)
    full = np.zeros(p)
    full[np.asarray(kept[1:], dtype=np.intp) - 1] = beta[1:]
    resid = y - beta[0] - e @ full
    bread = sla.cho_solve((chol, True), np.eye(k))
    if cov_type == "HC1":
        meat = cross(resid * resid)[np.ix_(kept, kept)]
        cov = bread @ meat @ bread * (n / df)
        cov_text = "HC1 heteroskedasticity-consistent standard errors (White 1980; n / (n - k) factor)"
    else:
        cov = bread * (resid @ resid / df)
        cov_text = "classical OLS standard errors (residual variance RSS / (n - k))"
    se = np.sqrt(np.diag(cov))
    q = float(sps.t.ppf(0.5 + LEVEL / 2, df))
    with np.errstate(divide="ignore", invalid="ignore"):
        p_val = 2 * sps.t.sf(np.abs(beta / se), df)
    method = (
        "OLS of each customer's NPS score (+100 promoter, 0 passive, -100 detractor) on an intercept and one "
        "0/1 indicator per touchpoint met, solved by Cholesky from the sparse cross-products X'X and X'y; a "
        "coefficient is the NPS points associated with having met the touchpoint, the other touchpoints held "
        f"fixed. Touchpoints never met, met by everyone or exactly collinear with earlier ones are not estimable. "
        f"{cov_text}; 95 % interval coefficient ± t(0.975, n - k) x se, two-sided t test, n - k = {df}."
    )
    b, half = beta[1:], q * se[1:]
    return _result(kept, (b, b - half, b + half, p_val[1:], b, se[1:]), n, n_exposed, reason, n, method)


def logistic_exposure_effects(exposure: sp.csr_matrix, converted: NDArray[np.bool_]) -> ExposureEffects:
    """Logit converted ~ 1 + exposures by Newton-Raphson (= IRLS) on the sparse design. statsmodels cannot
    take sparse input and a dense 200,000 x 200 design is 320 MB, so the score X'(y - mu) and the
    information X'WX are built from sparse products. Wald standard errors from the inverse information.

    The effect reported is the average marginal effect of meeting the touchpoint as a discrete change,
    mean over customers of P(convert | met it) - P(convert | not met) with the other exposures as observed
    (Bartus 2005), in percentage points, with a delta-method standard error (the analytic Jacobian of
    statsmodels' get_margeff for dummies), a 95 % Wald interval clipped to [-100, 100] and its z test.

    Separation (Albert & Anderson 1984) is reported, not patched. A touchpoint whose customers all
    converted (or none did) has an infinite maximum-likelihood coefficient: as Stata's logit does, it is
    reported "separated" and its customers, whose outcome it predicts perfectly, leave the fit. That is the
    exact limit of the likelihood as its coefficient goes to infinity, so the other coefficients keep their
    maximum-likelihood values. Any other separation shows as non-convergence or |log-odds| > 15: those
    touchpoints are reported "separated" and the model is refitted without their columns. No ridge or
    Firth penalty, so estimable touchpoints carry plain maximum-likelihood numbers any logit software
    reproduces.
    """
    e, y = _validate(exposure, np.asarray(converted).astype(np.float64))
    n, p = e.shape
    n_exposed = np.bincount(e.indices, minlength=p).astype(np.int64)
    reason = _reasons_for_counts(n_exposed, n)
    if n < 3 or np.ptp(y) == 0:
        return _nothing(p, n, n_exposed, reason, TOO_FEW if n < 3 else NO_VARIANCE, n_used=n)
    rows = _set_aside_separated(e, y, reason)
    n_used = int(rows.sum())
    if n_used - reason.count("") - 1 < 1 or np.ptp(y[rows]) == 0:
        why = NO_VARIANCE if n_used > 0 and np.ptp(y[rows]) == 0 else TOO_FEW
        return _nothing(p, n, n_exposed, reason, why, n_used=n_used)
    es, ys = (e[rows], y[rows]) if n_used < n else (e, y)
    met = np.bincount(es.indices, minlength=p)
    for j in range(p):
        if reason[j] == "" and met[j] in (0, n_used):  # left with none of its customers, or all
            reason[j] = SEPARATED if met[j] == 0 else MET_BY_EVERYONE
    cross = _CrossProducts(es)
    for j in _independent(cross(), [1 + j for j in range(p) if reason[j] == ""])[1]:
        reason[j - 1] = ALIASED
    for _ in range(3):
        cols = np.array([j for j in range(p) if reason[j] == ""], dtype=np.intp)
        ek = es[:, cols].tocsr()
        beta, info, converged = _newton(ek, ys, cross, np.r_[0, cols + 1])
        big = np.abs(beta[1:]) > _MAX_LOGIT
        if converged and not big.any():
            break
        if not big.any() or abs(beta[0]) > _MAX_LOGIT:
            return _nothing(p, n, n_exposed, reason, NO_CONVERGENCE, n_used=n_used)
        for j in cols[big].tolist():
            reason[j] = SEPARATED
    else:
        return _nothing(p, n, n_exposed, reason, NO_CONVERGENCE, n_used=n_used)
    cov = sla.cho_solve(sla.cho_factor(info, lower=True), np.eye(beta.size))
    se = np.sqrt(np.diag(cov))
    ame, ame_se = _discrete_change(ek, beta, cov)
    with np.errstate(divide="ignore", invalid="ignore"):
        p_val = 2 * sps.norm.sf(np.abs(ame / ame_se))
    method = (
        "Logistic regression of conversion on an intercept and one 0/1 indicator per touchpoint met, maximum "
        "likelihood by Newton-Raphson on the sparse design; Wald standard errors from the inverse information. "
        "Effect: average marginal effect of meeting the touchpoint as a discrete change (mean over customers "
        "of P(convert | met) - P(convert | not met), other exposures as observed), in percentage points; "
        "delta-method standard error, 95 % interval effect ± 1.96 se clipped to [-100, 100], two-sided z test. "
        "Touchpoints never met, met by everyone or exactly collinear are not estimable; a touchpoint whose "
        "customers all converted or none did (separation) is not estimable and its customers leave the fit "
        f"(the likelihood's limit, as in Stata): {reason.count(SEPARATED)} separated, {n - n_used} customers "
        "set aside."
    )
    low, high = np.maximum(-100.0, 100 * (ame - Z * ame_se)), np.minimum(100.0, 100 * (ame + Z * ame_se))
    values = (100 * ame, low, high, p_val, beta[1:], se[1:])
    return _result([0, *(cols + 1).tolist()], values, n, n_exposed, reason, n_used, method)


def _set_aside_separated(e: sp.csr_matrix, y: Float, reason: list[str]) -> NDArray[np.bool_]:
    """Marks touchpoints whose customers (among those still in) all converted or none did, and takes their
    customers out; repeated, since removing customers can separate another touchpoint. Returns the rows kept."""
    rows = np.ones(y.size, dtype=np.bool_)
    live = np.array([r == "" for r in reason], dtype=np.bool_)
    while True:
        met = e.T @ rows.astype(np.float64)
        won = e.T @ (rows * y)
        sep = live & (met > 0) & ((won == 0) | (won == met))
        if not sep.any():
            return rows
        for j in np.flatnonzero(sep).tolist():
            reason[j] = SEPARATED
        live &= ~sep
        rows &= (e @ sep.astype(np.float64)) == 0


def _validate(exposure: sp.csr_matrix, y: Float) -> tuple[sp.csr_matrix, Float]:
    y = np.asarray(y, dtype=np.float64)
    if exposure.ndim != 2 or y.ndim != 1 or exposure.shape[0] != y.size:
        raise ValueError(f"exposure has {exposure.shape[0]} rows but the outcome has {y.size} values")
    if not np.isfinite(y).all():
        raise ValueError("the outcome has non-finite values")
    e = sp.csr_matrix(exposure, dtype=np.float64, copy=True)
    e.sum_duplicates()
    e.data = (e.data != 0).astype(np.float64)
    e.eliminate_zeros()
    return e, y


def _reasons_for_counts(n_exposed: NDArray[np.int64], n: int) -> list[str]:
    return [NEVER_MET if m == 0 else MET_BY_EVERYONE if m == n else "" for m in n_exposed.tolist()]


class _CrossProducts:
    """X'WX for X = [1, e] with e binary, as a dense (p + 1) x (p + 1) array, for many weight vectors w.

    X'WX = sum_i w_i x_i x_i' only involves the pairs of touchpoints each customer met (~n m² / 2 pairs for
    m met per customer), so the pairs are listed once and each weighting is one np.bincount: ~25 ms at
    n = 200,000, p = 200 against ~60 ms for a sparse-sparse product, which matters inside Newton.
    For binary e the diagonal is also the intercept row: sum_i w_i x_ij² = sum_i w_i x_ij."""

    def __init__(self, e: sp.csr_matrix) -> None:
        self.n, self.p = e.shape
        counts = np.diff(e.indptr)
        keys, owners = [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.intp)]
        for m in np.unique(counts[counts > 0]).tolist():  # a few dozen distinct counts, each vectorised
            rows = np.flatnonzero(counts == m)
            a, b = np.triu_indices(m)
            start = e.indptr[rows][:, None]
            ia, ib = e.indices[start + a].astype(np.int64), e.indices[start + b].astype(np.int64)
            keys.append((np.minimum(ia, ib) * self.p + np.maximum(ia, ib)).ravel())
            owners.append(np.repeat(rows, a.size))
        self.key = np.concatenate(keys)
        self.owner = np.concatenate(owners)

    def __call__(self, w: Float | None = None, kept: NDArray[np.intp] | None = None) -> Float:
        """X'WX (X'X without w), restricted to the columns `kept` of X when given (0 = intercept)."""
        p = self.p
        upper = np.bincount(self.key, None if w is None else w[self.owner], minlength=p * p).reshape(p, p)
        diag = np.diag(upper).copy()
        g = np.empty((p + 1, p + 1))
        g[1:, 1:] = upper + upper.T
        g[1 + np.arange(p), 1 + np.arange(p)] = diag
        g[0, 0] = self.n if w is None else w.sum()
        g[0, 1:] = g[1:, 0] = diag
        return g if kept is None else g[np.ix_(kept, kept)]


def _independent(gram: Float, candidates: list[int]) -> tuple[list[int], list[int], Float]:
    """Greedy column selection by a Cholesky factorisation of X'X that skips a column whose residual on the
    kept ones vanishes (1 - R² < _ALIAS_TOL), i.e. pivoting in column order as R's lm does: of an aliased
    set, the earlier touchpoints stay. Returns kept columns (0 = intercept first), aliased ones, and the
    lower Cholesky factor of X'X on the kept columns (reused for the OLS solve)."""
    chol = np.zeros((len(candidates) + 1, len(candidates) + 1))
    chol[0, 0] = math.sqrt(gram[0, 0])
    kept, aliased = [0], []
    for j in candidates:
        m = len(kept)
        z = sla.solve_triangular(chol[:m, :m], gram[kept, j], lower=True)
        rest = gram[j, j] - z @ z
        if rest <= _ALIAS_TOL * gram[j, j]:
            aliased.append(j)
            continue
        chol[m, :m] = z
        chol[m, m] = math.sqrt(rest)
        kept.append(j)
    m = len(kept)
    return kept, aliased, chol[:m, :m]


def _expit_parts(eta: Float) -> tuple[Float, Float]:
    """mu = 1 / (1 + exp(-eta)) and mu (1 - mu) without overflow or cancellation in the tails."""
    z = np.exp(-np.abs(eta))
    mu = np.where(eta >= 0, 1 / (1 + z), z / (1 + z))
    return mu, z / (1 + z) ** 2


def _newton(e: sp.csr_matrix, y: Float, cross: _CrossProducts, kept: NDArray[np.intp]) -> tuple[Float, Float, bool]:
    """Logit maximum likelihood by Newton-Raphson with step halving. Returns (beta, information at the
    last Newton point, converged). The information is taken one step before the final beta, whose step is
    < 1e-8, so the covariance differs from the one at beta by O(1e-8) relative."""
    beta = np.zeros(e.shape[1] + 1)
    beta[0] = math.log(y.mean() / (1 - y.mean()))
    eta = np.full(y.size, beta[0])
    loglik = float(y @ eta - np.logaddexp(0, eta).sum())
    info = np.eye(beta.size)
    for _ in range(_MAX_ITER):
        mu, w = _expit_parts(eta)
        resid = y - mu
        score = np.concatenate([[resid.sum()], e.T @ resid])
        info = cross(w, kept)
        try:
            step = sla.cho_solve(sla.cho_factor(info, lower=True), score)
        except np.linalg.LinAlgError:
            return beta, info, False
        t = 1.0
        while True:
            trial = beta + t * step
            eta_t = trial[0] + e @ trial[1:]
            ll_t = float(y @ eta_t - np.logaddexp(0, eta_t).sum())
            if ll_t >= loglik - 1e-12 * abs(loglik) or t < 1e-3:
                break
            t /= 2
        outside = np.abs(beta[1:]).max(initial=0.0) > _MAX_LOGIT and np.abs(trial[1:]).max(initial=0.0) > _MAX_LOGIT
        beta, eta, loglik = trial, eta_t, ll_t
        if np.abs(t * step).max() < _STEP_TOL:
            return beta, info, True
        if outside:  # two iterates past the bound: diverging, separation the count rule did not catch
            return beta, info, False
    return beta, info, False


def _discrete_change(e: sp.csr_matrix, beta: Float, cov: Float) -> tuple[Float, Float]:
    """Average marginal (discrete-change) effects as probabilities and their delta-method standard errors.

    AME_k = mean_i [F(eta_i with x_ik = 1) - F(eta_i with x_ik = 0)]. For a customer who did not meet k the
    two linear predictors are eta_i + b_k and eta_i; for one who did, eta_i and eta_i - b_k. The dense part
    F(eta_i + b_k) over all (i, k) is an outer product, F = 1 / (1 + exp(-eta_i) exp(-b_k)), evaluated in
    row blocks; met entries are corrected on the sparse pattern. The Jacobian row of AME_k is
    mean_i [f(eta1) x1_i - f(eta0) x0_i] with f = F (1 - F) (statsmodels' dummy Jacobian), i.e.
    D' X / n for D_ik = f(eta1_ik) - f(eta0_ik), except its own entry mean_i f(eta1_ik).
    """
    n, p = e.shape
    b = beta[1:]
    eta = np.clip(beta[0] + e @ b, -600.0, 600.0)  # exp(600) x exp(15) stays finite; F is 0 / 1 anyway
    s, f = _expit_parts(eta)
    rows = np.repeat(np.arange(n), np.diff(e.indptr))
    cols = e.indices
    s_on, f_on = _expit_parts(eta[rows] + b[cols])  # the dense formula's value at met entries
    s_off, f_off = _expit_parts(eta[rows] - b[cols])  # truly not met, for customers who met k
    d_met = f[rows] - f_off  # D at met entries
    u = np.exp(-eta)
    v = np.exp(-b)
    sum_s = np.zeros(p)
    sum_f = np.zeros(p)
    jac = np.zeros((p + 1, p))
    buf_t = np.empty((_CHUNK, p))
    buf_s = np.empty((_CHUNK, p))
    for start in range(0, n, _CHUNK):
        stop = min(start + _CHUNK, n)
        t, fs = buf_t[: stop - start], buf_s[: stop - start]
        np.multiply.outer(u[start:stop], v, out=t)
        np.add(t, 1.0, out=fs)
        np.reciprocal(fs, out=fs)  # F(eta_i + b_k)
        sum_s += fs.sum(axis=0)
        t *= fs
        t *= fs  # f = t / (1 + t)²: no 1 - F cancellation
        sum_f += t.sum(axis=0)
        lo, hi = e.indptr[start], e.indptr[stop]
        t[rows[lo:hi] - start, cols[lo:hi]] = d_met[lo:hi] + f[rows[lo:hi]]  # D + f there: -f comes below
        jac[1:] += e[start:stop].T @ t
    on_met = np.bincount(cols, weights=s[rows] - s_on + s[rows] - s_off, minlength=p)
    ame = (sum_s - s.sum() + on_met) / n
    # D = F'(eta + b) - f off the met entries: the -f part is rank one, subtracted once instead of per block
    jac[0] = sum_f - f.sum() + np.bincount(cols, weights=d_met - f_on + f[rows], minlength=p)
    jac[1:] -= (e.T @ f)[:, None]
    own = sum_f - np.bincount(cols, weights=f_on, minlength=p) + np.bincount(cols, weights=f[rows], minlength=p)
    jac[1 + np.arange(p), np.arange(p)] = own
    jac /= n
    var = np.einsum("ak,ak->k", jac, cov @ jac)
    return ame, np.sqrt(np.maximum(var, 0.0))


def _result(
    kept: list[int],
    values: tuple[Float, Float, Float, Float, Float, Float],
    n: int,
    n_exposed: NDArray[np.int64],
    reason: list[str],
    n_used: int,
    method: str,
) -> ExposureEffects:
    """Spreads per-kept-column (effect, low, high, p-value, coef, se) over all p touchpoints, NaN for the
    ones not estimable. `kept` are columns of X, 0 being the intercept."""
    index = np.asarray(kept[1:], dtype=np.intp) - 1
    spread = [np.full(n_exposed.size, np.nan) for _ in values]
    for full, v in zip(spread, values, strict=True):
        full[index] = v
    estimable = np.zeros(n_exposed.size, dtype=np.bool_)
    estimable[index] = True
    effect, low, high, p_value, coef, coef_se = spread
    return ExposureEffects(
        effect, low, high, p_value, coef, coef_se, n, n_exposed, estimable, tuple(reason), n_used, method
    )


def _nothing(
    p: int, n: int, n_exposed: NDArray[np.int64], reason: list[str], why: str, *, n_used: int
) -> ExposureEffects:
    none = np.zeros(0)
    method = f"No model fitted: {why} (n = {n}, {n_used} usable)."
    return _result([0], (none,) * 6, n, n_exposed, [r or why for r in reason], n_used, method)
