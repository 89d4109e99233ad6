"""A synthetic trade-credit book whose defaults are caused by a latent credit quality.

Why: a PD model can only be judged against the truth, and real books do not come with one.
Here every firm has a latent risk ``r = firm risk + industry offset + industry cycle + shock``
(the shock an AR(1)). The same ``r`` drives its financial ratios, how late it pays and its
monthly hazard ``sigmoid(base + r)`` of *distress*. A distressed firm stops paying at once and
is recorded as defaulted three months later (bankruptcy or 90 days past due), so unpaid
invoices lead the default without leaking anything the latent state does not hold. The true
12-month PD of every active customer on every quarter start (``truth``) is therefore exact:
the latent state and this supplier's ledger, read by Bayes (a distress that began lately
shows only once invoices it left unpaid fall due), and the future hazard integrated over the
firm's shocks and the economy's cycle by Monte Carlo, the scenario's downturn being known.

Everything is drawn from child generators of ``numpy.random.default_rng(seed)``, one per
purpose, and every draw covers all firms whether they are active or not, so a seed gives the
same book, and with the same seed the recession scenario differs from the baseline only in
the industries it hits (and in the invoice numbering).
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pandas as pd
from scipy.special import expit, logsumexp, ndtri

from riskcast.config import GeneratorConfig

from .io import ParquetParts, RawTables
from .schema import ARROW_STRING, NACE_SECTIONS

Progress = Callable[[str], None] | None

RECESSION_INDUSTRIES = ("C", "F", "G", "H")

#: share of trade-credit customers by NACE section: manufacturing, trade, construction,
#: professional services and transport dominate
_INDUSTRY_WEIGHT = dict(A=2.0, B=0.5, C=20.0, D=1.0, E=1.0, F=12.0, G=22.0, H=8.0, I=3.0, J=4.0, K=1.0,
                        L=2.0, M=9.0, N=5.0, O=0.5, P=1.0, Q=3.0, R=1.0, S=2.0, T=0.2, U=0.1)
#: logit offset of the hazard by section: construction and hospitality riskier, public sector safest
_INDUSTRY_OFFSET = dict(A=0.1, B=0.1, C=0.0, D=-0.4, E=-0.2, F=0.4, G=0.05, H=0.2, I=0.45, J=-0.1, K=-0.4,
                        L=0.0, M=-0.15, N=0.15, O=-0.8, P=-0.3, Q=-0.3, R=0.2, S=0.15, T=0.0, U=-0.5)
_COUNTRY_WEIGHT = dict(DE=30, FR=15, PL=12, NL=10, IT=9, ES=8, BE=5, AT=4, CZ=4, SE=3)
_LEGAL_FORM = dict(DE="GmbH", AT="GmbH", FR="SARL", PL="Sp. z o.o.", NL="B.V.", BE="BV", IT="S.r.l.",
                   ES="S.L.", CZ="s.r.o.", SE="AB")
_NAME_STEMS = ("Alder", "Birk", "Castell", "Dorn", "Elm", "Falk", "Gran", "Hain", "Iber", "Jura", "Kron",
               "Lind", "Mar", "Nord", "Ost", "Pol", "Quell", "Rhen", "Sud", "Tann", "Ulm", "Vall", "West", "Zeder")
_NAME_TAILS = ("berg", "feld", "hof", "mark", "stein", "tal", "wald", "bach", "dorf", "haven", "ton", "field")
_SECTOR_WORD = dict(A="Agrar", B="Mining", C="Manufacturing", D="Energy", E="Recycling", F="Construction",
                    G="Trading", H="Logistics", I="Hospitality", J="Software", K="Capital", L="Properties",
                    M="Consulting", N="Services", O="Public Works", P="Academy", Q="Care", R="Events",
                    S="Services", T="Household", U="Mission")

BURN_IN = 24           # months simulated before the data start (statements look back two years)
LAG = 3                # months from distress (payments stop) to the recorded default
_BASE_LOGIT = -7.1     # monthly distress hazard of an average firm in a neutral cycle
_FIRM_RISK_SD = 0.8
_SHOCK_RHO, _SHOCK_SD = 0.95, 0.25
_CYCLE_RHO, _CYCLE_SD = 0.9, 0.07      # per industry
_MACRO_RHO, _MACRO_SD = 0.95, 0.04     # shared by all industries
_DOWNTURN = 1.0        # logit added to the recession industries' hazard at full strength
_DOWNTURN_GROWTH = 0.02  # monthly log growth lost at full strength (about -13% over the year)
#: population sd of the latent risk (0.1: industry offsets and cycles, size and age);
#: ``q = r / _RISK_SD`` is the standardised risk
_RISK_SD = float(np.sqrt(_FIRM_RISK_SD**2 + 0.1 + _SHOCK_SD**2 / (1 - _SHOCK_RHO**2)))
_MC_PATHS = 256        # common future shock paths for the true PD (half of them antithetic)
_CHUNK = 4096          # firms per Monte Carlo block: bounds memory to ~10 MB per array
_NEVER = np.iinfo(np.int64).max
#: months of invoices read back for the true PD: one still open that long after issue, at a
#: firm still paying, has odds below e^-15
_LOOKBACK = 15


# -- the latent world ------------------------------------------------------------------------

@dataclass(frozen=True)
class _Calendar:
    """Months ``-BURN_IN .. months-1``; column ``c`` of every latent array is month ``c - BURN_IN``."""

    starts: np.ndarray      # datetime64[D], first day of each simulated month, plus the month after
    months: int

    @property
    def columns(self) -> int:
        return self.months + BURN_IN

    @property
    def data_start(self) -> np.datetime64:
        return self.starts[BURN_IN]

    @property
    def data_end(self) -> np.datetime64:
        """The last day of the data."""
        return self.starts[-1] - np.timedelta64(1, "D")

    def month_starts(self) -> pd.DatetimeIndex:
        """First days of the data months (no burn-in)."""
        return pd.DatetimeIndex(self.starts[BURN_IN:-1].astype("datetime64[ns]"))

    def column_of(self, day: np.ndarray) -> np.ndarray:
        """Latent column of the month holding each day (clipped to the simulated span)."""
        return np.clip(np.searchsorted(self.starts, day, side="right") - 1, 0, self.columns - 1)

    def days_in(self, col: np.ndarray) -> np.ndarray:
        return (self.starts[col + 1] - self.starts[col]).astype(np.int64)


@dataclass(frozen=True)
class _Economy:
    """Industry paths, one row per NACE section."""

    offset: np.ndarray      # (J,)
    cycle: np.ndarray       # (J, T) logit added to the hazard: the sum of the three below
    growth: np.ndarray      # (J, T) activity index, 100 at the first data month
    industry_state: np.ndarray  # (J, T) the section's own AR(1)
    macro_state: np.ndarray     # (T,) the AR(1) shared by all sections
    scenario: np.ndarray        # (J, T) the scenario's downturn (zero in the baseline)

    def cycle_ahead(self, col: int, steps: int) -> np.ndarray:
        """Expected cycle of columns ``col .. col+steps-1`` knowing it up to ``col - 1``: the
        scenario is known, the two AR(1)s decay towards zero."""
        k = np.arange(1, steps + 1)
        return (self.scenario[:, col:col + steps] + self.industry_state[:, col - 1, None] * _CYCLE_RHO**k
                + self.macro_state[col - 1] * _MACRO_RHO**k)


@dataclass(frozen=True)
class _Firms:
    industry: np.ndarray    # (N,) index into NACE_SECTIONS
    size: np.ndarray        # (N,) log annual revenue
    founded: np.ndarray     # (N,) datetime64[D]
    first_trade: np.ndarray  # (N,) datetime64[D]
    first_col: np.ndarray   # (N,) first column exposed to the hazard
    risk: np.ndarray        # (N,) permanent risk a_i

    @property
    def size_z(self) -> np.ndarray:
        return (self.size - np.log(5e6)) / 1.2


@dataclass(frozen=True)
class _Latent:
    cal: _Calendar
    economy: _Economy
    firms: _Firms
    shock: np.ndarray       # (N, T) idiosyncratic AR(1)
    distress: np.ndarray    # (N,) column of distress, -1 if none
    default_day: np.ndarray  # (N,) datetime64[D] as int64 days; _NEVER if no default inside the data

    def risk_at(self, rows: np.ndarray, col: np.ndarray) -> np.ndarray:
        """Latent risk ``r`` (hazard logit without the base) of firms ``rows`` in columns ``col``."""
        f, e = self.firms, self.economy
        ind = f.industry[rows]
        return f.risk[rows] + e.offset[ind] + e.cycle[ind, col] + self.shock[rows, col]

    def q_at(self, rows: np.ndarray, col: np.ndarray) -> np.ndarray:
        """Standardised latent risk: about N(0, 1) over the population, higher is worse."""
        return self.risk_at(rows, col) / _RISK_SD

    def distress_day(self) -> np.ndarray:
        """First day of the month a firm stopped paying, as int64 days; _NEVER if it never did."""
        out = np.full(self.distress.size, _NEVER, dtype=np.int64)
        hit = self.distress >= 0
        out[hit] = self.cal.starts[self.distress[hit]].astype(np.int64)
        return out


def _ar1(rng: np.random.Generator, rows: int, cols: int, rho: float, sd: float) -> np.ndarray:
    """``rows`` stationary AR(1) paths of ``cols`` steps."""
    out = np.empty((rows, cols))
    x = rng.normal(0.0, sd / np.sqrt(1 - rho**2), rows)
    for t in range(cols):
        x = rho * x + rng.normal(0.0, sd, rows)
        out[:, t] = x
    return out


def _calendar(config: GeneratorConfig) -> _Calendar:
    first = pd.Timestamp(config.start).to_period("M").to_timestamp()
    months = 12 * config.years
    starts = pd.date_range(first - pd.DateOffset(months=BURN_IN), periods=months + BURN_IN + 1, freq="MS")
    return _Calendar(starts.to_numpy().astype("datetime64[D]"), months)


def _downturn(cal: _Calendar) -> np.ndarray:
    """Recession strength by column: 0 until the last 12 data months, then rising to 1."""
    month = np.arange(cal.columns) - BURN_IN
    return np.clip((month - (cal.months - 12) + 1) / 12.0, 0.0, 1.0)


def _economy(config: GeneratorConfig, cal: _Calendar, rng: np.random.Generator) -> _Economy:
    n_ind, cols = len(NACE_SECTIONS), cal.columns
    industry_state = _ar1(rng, n_ind, cols, _CYCLE_RHO, _CYCLE_SD)
    macro_state = _ar1(rng, 1, cols, _MACRO_RHO, _MACRO_SD)
    scenario = np.zeros((n_ind, cols))
    cycle = industry_state + macro_state
    trend = rng.normal(0.002, 0.001, (n_ind, 1))
    step = trend - 0.012 * cycle + rng.normal(0.0, 0.004, (n_ind, cols))
    if config.scenario == "recession":
        hit = np.isin(np.array(NACE_SECTIONS), RECESSION_INDUSTRIES)
        ramp = _downturn(cal)
        scenario[hit] = _DOWNTURN * ramp
        cycle[hit] += scenario[hit]
        step[hit] -= _DOWNTURN_GROWTH * ramp
    log_index = np.cumsum(step, axis=1)
    growth = 100.0 * np.exp(log_index - log_index[:, [BURN_IN]])
    offset = np.array([_INDUSTRY_OFFSET[s] for s in NACE_SECTIONS])
    return _Economy(offset, cycle, growth, industry_state, macro_state[0], scenario)


def _firms(config: GeneratorConfig, cal: _Calendar, rng: np.random.Generator) -> _Firms:
    n = config.customers
    weight = np.array([_INDUSTRY_WEIGHT[s] for s in NACE_SECTIONS])
    industry = rng.choice(len(weight), size=n, p=weight / weight.sum())
    size = rng.normal(np.log(5e6), 1.2, n)
    age_years = np.clip(1.0 + rng.gamma(1.5, 10.0, n), 1.0, 60.0)
    start = cal.data_start
    founded = start - (age_years * 365.25).astype(np.int64).astype("timedelta64[D]")
    # 70% were customers before the data start (at most ten years), the rest join during it
    earliest = np.maximum(founded, start - np.timedelta64(3652, "D"))
    before = earliest + (rng.random(n) * (start - earliest).astype(np.int64)).astype(np.int64).astype("timedelta64[D]")
    window = int((cal.data_end - start).astype(np.int64)) - 60
    during = start + rng.integers(0, max(window, 1), n).astype("timedelta64[D]")
    first_trade = np.where(rng.random(n) < 0.7, before, during)
    size_z = (size - np.log(5e6)) / 1.2
    age_z = (np.log(age_years) - 2.6) / 0.8
    risk = rng.normal(0.0, _FIRM_RISK_SD, n) - 0.2 * size_z - 0.2 * age_z
    first_col = np.maximum(cal.column_of(first_trade), BURN_IN - LAG)
    return _Firms(industry, size, founded, first_trade, first_col, risk)


def _distress(firms: _Firms, economy: _Economy, shock: np.ndarray, cal: _Calendar,
              rng: np.random.Generator) -> np.ndarray:
    """Column of each firm's first distress month (-1: none). Exposure starts ``LAG`` months before
    the data so that defaults are recorded from its first month."""
    n = firms.risk.size
    distress = np.full(n, -1)
    fixed = _BASE_LOGIT + firms.risk + economy.offset[firms.industry]
    for col in range(BURN_IN - LAG, cal.columns):
        u = rng.random(n)  # drawn for every firm and month: common random numbers across scenarios
        hazard = expit(fixed + economy.cycle[firms.industry, col] + shock[:, col])
        hit = (distress < 0) & (firms.first_col <= col) & (u < hazard)
        distress[hit] = col
    return distress


def _default_days(distress: np.ndarray, cal: _Calendar, rng: np.random.Generator) -> np.ndarray:
    """Default day (int64 days) ``LAG`` months after distress, never on the 1st (a quarter start),
    so a default is strictly after the as-of date it is predicted from; _NEVER past the data."""
    col = np.where(distress >= 0, distress + LAG, cal.columns)
    recorded = col < cal.columns
    safe = np.minimum(col, cal.columns - 1)
    day = 1 + (rng.random(col.size) * (cal.days_in(safe) - 1)).astype(np.int64)
    out = cal.starts[safe].astype(np.int64) + day
    return np.where(recorded, out, _NEVER)


def _latent(config: GeneratorConfig, rng: np.random.Generator) -> _Latent:
    cal = _calendar(config)
    economy_rng, firm_rng, shock_rng, hazard_rng, day_rng = rng.spawn(5)
    economy = _economy(config, cal, economy_rng)
    firms = _firms(config, cal, firm_rng)
    shock = _ar1(shock_rng, config.customers, cal.columns, _SHOCK_RHO, _SHOCK_SD)
    distress = _distress(firms, economy, shock, cal, hazard_rng)
    return _Latent(cal, economy, firms, shock, distress, _default_days(distress, cal, day_rng))


# -- the tables ------------------------------------------------------------------------------

def _ns(days: np.ndarray) -> np.ndarray:
    """datetime64[D] (or int64 days) as datetime64[ns]."""
    return np.asarray(days).astype("datetime64[D]").astype("datetime64[ns]")


def _customer_ids(n: int) -> np.ndarray:
    width = max(6, len(str(n)))
    return np.array([f"C{i:0{width}d}" for i in range(1, n + 1)], dtype=object)


def _customers(lat: _Latent, ids: np.ndarray, rng: np.random.Generator) -> pd.DataFrame:
    n = ids.size
    countries = np.array(list(_COUNTRY_WEIGHT))
    weight = np.array(list(_COUNTRY_WEIGHT.values()), dtype=float)
    country = rng.choice(countries, size=n, p=weight / weight.sum())
    stem = rng.integers(0, len(_NAME_STEMS), n)
    tail = rng.integers(0, len(_NAME_TAILS), n)
    names = [f"{_NAME_STEMS[s]}{_NAME_TAILS[t]} {_SECTOR_WORD[NACE_SECTIONS[j]]} {_LEGAL_FORM[c]}"
             for s, t, j, c in zip(stem, tail, lat.firms.industry, country)]
    return pd.DataFrame({
        "customer_id": ids,
        "name": np.array(names, dtype=object),
        "industry": np.array(NACE_SECTIONS, dtype=object)[lat.firms.industry],
        "country": country.astype(object),
        "founded": _ns(lat.firms.founded),
        "first_trade_date": _ns(lat.firms.first_trade),
    })


def _defaults(lat: _Latent, ids: np.ndarray, rng: np.random.Generator) -> pd.DataFrame:
    kind = np.where(rng.random(ids.size) < 0.4, "bankruptcy", "90dpd").astype(object)
    rows = np.flatnonzero(lat.default_day != _NEVER)
    return pd.DataFrame({"customer_id": ids[rows], "default_date": _ns(lat.default_day[rows]), "kind": kind[rows]})


def _statement_values(lat: _Latent, rows: np.ndarray, col: int, trend: np.ndarray,
                      rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One year's accounts of firms ``rows``: noisy functions of their risk at the period end,
    their size, own log growth ``trend`` and their industry's activity. Money in whole units;
    the balance sheet and current assets add up exactly."""
    k = rows.size
    q = lat.q_at(rows, np.full(k, col))
    f = lat.firms
    growth = lat.economy.growth[f.industry[rows], col] / 100.0
    revenue = np.round(np.exp(f.size[rows] + trend - 0.05 * q + rng.normal(0, 0.08, k)) * growth)
    assets = np.round(revenue / np.exp(rng.normal(np.log(1.2), 0.3, k)))
    leverage = 0.2 + 1.1 * expit(-0.3 + 1.0 * q + rng.normal(0, 0.35, k))
    liabilities = np.round(leverage * assets)
    current_assets = np.round(assets * rng.uniform(0.3, 0.7, k))
    cash = np.round(current_assets * np.clip(expit(-1.4 - 0.6 * q + rng.normal(0, 0.4, k)), 0.01, 0.8))
    receivables = np.round((current_assets - cash) * rng.uniform(0.35, 0.75, k))
    ebit = np.round(revenue * (0.08 - 0.05 * q + rng.normal(0, 0.03, k)))
    interest = np.round(liabilities * np.clip(rng.normal(0.025 + 0.006 * q, 0.006), 0.002, 0.12))
    pre_tax = ebit - interest
    net_income = np.where(pre_tax > 0, np.round(0.75 * pre_tax), pre_tax)
    equity = assets - liabilities
    return {
        "revenue": revenue,
        "cogs": np.round(revenue * (1 - np.clip(rng.normal(0.3 - 0.03 * q, 0.08), 0.03, 0.7))),
        "ebit": ebit, "interest_expense": interest, "net_income": net_income,
        "total_assets": assets, "current_assets": current_assets, "cash": cash, "receivables": receivables,
        "inventory": current_assets - cash - receivables,
        "current_liabilities": np.round(liabilities * np.clip(rng.normal(0.55 + 0.05 * q, 0.12), 0.2, 0.95)),
        "total_liabilities": liabilities, "equity": equity,
        "retained_earnings": np.round(equity * rng.uniform(0.3, 0.9, k) + revenue * rng.normal(0, 0.01, k)),
        "operating_cash_flow": np.round(net_income + assets * rng.uniform(0.03, 0.05, k)
                                        + revenue * rng.normal(-0.01 * q, 0.03)),
    }


def _statements(lat: _Latent, ids: np.ndarray, rng: np.random.Generator) -> pd.DataFrame:
    """Annual accounts for every Dec 31 from two years before the data while the firm is alive,
    kept if filed (60-180 days later, later for risky and small firms) inside the data and
    before any default. About 20% of firms, mostly small, never file; some skip a year."""
    cal, f = lat.cal, lat.firms
    n = ids.size
    every = np.arange(n)
    files = rng.random(n) >= expit(-1.6 - 0.9 * f.size_z)
    own_growth = rng.normal(0.02, 0.04, n)  # log revenue growth a year, beyond the industry's
    start_year = pd.Timestamp(cal.data_start).year
    last_year = pd.Timestamp(cal.data_end).year
    parts = []
    for year in range(start_year - 2, last_year + 1):
        period_end = np.datetime64(f"{year}-12-31", "D")
        col = int(cal.column_of(np.array([period_end]))[0])
        if period_end < cal.starts[0] or period_end > cal.data_end:
            continue
        skip = rng.random(n) < 0.05
        q = lat.q_at(every, np.full(n, col))
        filed = period_end.astype(np.int64) + np.clip(rng.normal(105 + 20 * q - 12 * f.size_z, 25), 60, 180).astype(np.int64)
        values = _statement_values(lat, every, col, own_growth * (col - BURN_IN) / 12, rng)
        related = (f.founded < period_end) & (period_end >= f.first_trade - np.timedelta64(730, "D"))
        known = (filed <= cal.data_end.astype(np.int64)) & (filed < lat.default_day)  # alive until filing
        rows = np.flatnonzero(files & ~skip & related & known)
        parts.append(pd.DataFrame({
            "customer_id": ids[rows],
            "period_end": _ns(np.full(rows.size, period_end)),
            "filed_date": _ns(filed[rows]),
            **{name: v[rows] for name, v in values.items()},
        }))
    out = pd.concat(parts, ignore_index=True)
    return out.sort_values(["customer_id", "period_end"], kind="stable").reset_index(drop=True)


@dataclass(frozen=True)
class _Terms:
    """Per-customer invoicing habits and the days that bound them (int64 days)."""

    rate: np.ndarray        # invoices per month
    median_amount: np.ndarray
    terms: np.ndarray       # days
    first_day: np.ndarray
    stop_paying: np.ndarray  # first day of distress; _NEVER if none


def _terms(lat: _Latent, rng: np.random.Generator) -> _Terms:
    size_z = lat.firms.size_z
    n = size_z.size
    rate = np.clip(np.exp(np.log(1.2) + 0.35 * size_z + rng.normal(0, 0.25, n)), 0.6, 3.0)
    monthly_revenue = np.exp(lat.firms.size) / 12
    median_amount = 0.03 * monthly_revenue / rate   # we supply ~3% of what the customer buys
    terms = rng.choice(np.array([30, 60, 90]), size=n, p=[0.55, 0.30, 0.15])
    first = lat.firms.first_trade
    return _Terms(rate, median_amount, terms, first.astype(np.int64), lat.distress_day())


def _payment_delay(q: np.ndarray, disputed: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Days paid after the due date (negative: early): risky firms are late more often and by more;
    disputed invoices are always late, by weeks more."""
    k = q.size
    late = (rng.random(k) < expit(-1.0 + 1.2 * q)) | disputed
    days_late = np.ceil(rng.exponential(1.0, k) * (5 + 12 * np.logaddexp(0, q))) + disputed * np.ceil(rng.exponential(25.0, k))
    days_early = -np.floor(rng.exponential(2.0, k))
    return np.where(late, np.maximum(days_late, 1), days_early).astype(np.int64)


def _paid_after(day: int, issue: np.ndarray, due: np.ndarray, q: np.ndarray, disputed: np.ndarray) -> np.ndarray:
    """P(the payment day ``_invoice_month`` draws is later than ``day``), in closed form: the
    chance that a firm still paying would have left the invoice open on ``day``."""
    k = (day - due + 1).astype(float)             # paid after ``day`` <=> delay >= k
    s = 5 + 12 * np.logaddexp(0, q)
    ra, rb = np.exp(-1 / s), np.exp(-1 / 25.0)    # P(ceil(E s) >= a + 1) = ra ** a
    n = np.maximum(k - 2, 0)
    undisputed = np.exp(-np.maximum(k - 1, 0) / s)
    # ceil(E s) + ceil(E 25) >= k: a sum of two geometric variables
    close = np.abs(rb - ra) < 1e-9
    spread = np.where(close, 1.0, rb - ra)
    convolved = np.where(close, (1 - ra) * n * ra**n, (1 - ra) * rb * (rb**n - ra**n) / spread)
    late = np.where(disputed, np.where(k <= 1, 1.0, ra**n + convolved), undisputed)
    early = np.where(k <= 0, -np.expm1(-(1 - k) / 2), 0.0)  # -floor(E 2) >= k
    p_late = np.where(disputed, 1.0, expit(-1.0 + 1.2 * q))
    return np.where(issue + 7 > day, 1.0, p_late * late + (1 - p_late) * early)


def _invoice_month(lat: _Latent, habits: _Terms, t: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Invoices issued in data month ``t``, sorted by issue day then customer. Behaviour follows
    the latent state at the start of the month; nothing is paid after a firm's distress begins."""
    cal = lat.cal
    col = t + BURN_IN
    # every firm draws, trading or not, so the streams do not depend on who defaulted
    rows = np.repeat(np.arange(habits.rate.size), rng.poisson(habits.rate))
    k = rows.size
    issue = cal.starts[col].astype(np.int64) + rng.integers(0, int(cal.days_in(np.array([col]))[0]), k)
    q = lat.q_at(rows, np.full(k, col - 1))
    amount = np.maximum(np.round(habits.median_amount[rows] * np.exp(rng.normal(0, 0.7, k)), 2), 50.0)
    disputed = rng.random(k) < expit(-3.9 + 0.6 * q)
    due = issue + habits.terms[rows]
    paid = np.maximum(due + _payment_delay(q, disputed, rng), issue + 7)
    # drawn to keep the streams as they were; a payment settles the invoice in full (a part
    # payment would leave the rest open, which this world's firms do not do)
    rng.random(k), rng.uniform(0.5, 0.95, k)
    paid_amount = amount
    unpaid = (paid > cal.data_end.astype(np.int64)) | (paid > habits.stop_paying[rows])
    keep = (issue >= habits.first_day[rows]) & (issue < lat.default_day[rows])
    order = np.lexsort((rows, issue))
    order = order[keep[order]]
    return {
        "row": rows[order], "issue": issue[order], "due": due[order], "amount": amount[order],
        "paid": np.where(unpaid, _NEVER, paid)[order], "paid_amount": np.where(unpaid, np.nan, paid_amount)[order],
        "disputed": disputed[order], "q": q[order],
    }


def _invoice_width(config: GeneratorConfig) -> int:
    """Digits of the invoice numbers, fixed before any is drawn so that months can be written
    as they are made: a customer orders at most 3 times a month on average (Poisson)."""
    return max(8, len(str(config.customers * 12 * config.years * 4)))


def _invoices(lat: _Latent, ids: np.ndarray, width: int, rng: np.random.Generator,
              progress: Progress) -> Iterator[tuple[dict[str, np.ndarray], pd.DataFrame]]:
    """The invoices, one month at a time (numbered on across months), so a large book never
    holds them all at once; each month's draws come with its table."""
    habits_rng, month_rng = rng.spawn(2)
    habits = _terms(lat, habits_rng)
    months = lat.cal.months
    number = 1
    for t in range(months):
        cols = _invoice_month(lat, habits, t, month_rng)
        k = cols["row"].size
        paid = cols["paid"]
        open_ = paid == _NEVER
        yield cols, pd.DataFrame({
            "invoice_id": pd.array([f"INV{i:0{width}d}" for i in range(number, number + k)], dtype=ARROW_STRING),
            "customer_id": pd.array(ids[cols["row"]], dtype=ARROW_STRING),
            "issue_date": _ns(cols["issue"]),
            "due_date": _ns(cols["due"]),
            "amount": cols["amount"],
            "paid_date": np.where(open_, np.datetime64("NaT", "ns"), _ns(np.where(open_, 0, paid))),
            "paid_amount": cols["paid_amount"],
            "disputed": cols["disputed"].astype(bool),
            # in this world a dispute is over the goods an invoice came with: raised on issue
            "dispute_date": np.where(cols["disputed"], _ns(cols["issue"]), np.datetime64("NaT", "ns")),
        })
        number += k
        if progress and ((t + 1) % 6 == 0 or t + 1 == months):
            progress(f"invoices {t + 1}/{months} months: {number - 1:,}")


def _industry_signals(lat: _Latent, rng: np.random.Generator) -> pd.DataFrame:
    """Per section and month: the annualised default rate expected in the section's whole
    population (defaults follow distress by ``LAG`` months), with reporting noise, and the
    activity index. Both come from the industry path alone, not from this book's customers."""
    econ, cal = lat.economy, lat.cal
    months = cal.months
    cols = np.arange(BURN_IN, BURN_IN + months)
    # population of firms: permanent risk and stationary shock, integrated on a fixed grid
    spread = np.sqrt(_FIRM_RISK_SD**2 + _SHOCK_SD**2 / (1 - _SHOCK_RHO**2))
    grid = spread * ndtri((np.arange(64) + 0.5) / 64)
    logit = _BASE_LOGIT + econ.offset[:, None] + econ.cycle[:, cols - LAG]
    monthly = expit(logit[..., None] + grid).mean(axis=-1)
    annual = 1 - (1 - monthly) ** 12
    rate = np.clip(annual * np.exp(rng.normal(0, 0.08, annual.shape)), 0.0, 1.0)
    n_ind = len(NACE_SECTIONS)
    return pd.DataFrame({
        "industry": np.repeat(np.array(NACE_SECTIONS, dtype=object), months),
        "month": np.tile(lat.cal.month_starts().to_numpy(), n_ind),
        "default_rate": rate.ravel(),
        "growth_index": econ.growth[:, cols].ravel(),
    })


def _future_shocks(rng: np.random.Generator, steps: int, rho: float = _SHOCK_RHO, sd: float = _SHOCK_SD) -> np.ndarray:
    """Future AR(1) paths from a zero state, ``(_MC_PATHS, steps)``; half are the others negated."""
    half = _MC_PATHS // 2
    eps = rng.normal(0.0, sd, (half, steps))
    x = np.zeros(half)
    out = np.empty((half, steps))
    for t in range(steps):
        x = rho * x + eps[:, t]
        out[:, t] = x
    return np.vstack([out, -out])


def _survival(lat: _Latent, rows: np.ndarray, col: int, cycle: np.ndarray, exp_future: np.ndarray) -> np.ndarray:
    """P(no distress in columns ``col .. col+h-1``) for firms ``rows`` under the industry
    ``cycle`` (J, h), averaged over the paths ``exp_future`` (J, paths, h) of what is not known."""
    h = cycle.shape[1]
    f, e = lat.firms, lat.economy
    ind = f.industry[rows]
    known = (_BASE_LOGIT + f.risk[rows, None] + e.offset[ind, None] + cycle[ind]
             + lat.shock[rows, col - 1, None] * _SHOCK_RHO ** np.arange(1, h + 1))
    odds = np.exp(known)
    out = np.empty(rows.size)
    for j in np.unique(ind):  # one industry at a time: its paths broadcast, no gather
        sub = ind == j
        inverse = np.ones((int(sub.sum()), exp_future.shape[1]))
        for t in range(h):  # survival of a path = prod 1 / (1 + odds * exp(future))
            inverse *= 1.0 + odds[sub, t, None] * exp_future[j, None, :, t]
        out[sub] = (1.0 / inverse).mean(axis=1)
    return out


class _Truth:
    """True PD on every calendar quarter start with a full 12-month horizon inside the data.

    A default in ``(as_of, as_of + 12m]`` means distress in the months ``as_of - LAG ..
    as_of + 11 - LAG``. Distress in the last ``LAG`` months has happened but may not show yet:
    it shows only through this supplier's invoices (nothing is paid after it begins). The true
    PD (``pd_12m``) is what knowing the latent state and reading the ledger gives: each of
    those months' distress, weighed by Bayes against the invoices still open and the last
    payment on ``as_of``, plus the future hazard integrated by Monte Carlo over the firm's
    shocks and the industry and macro cycles from their state on ``as_of`` (the scenario's
    downturn is known). No model can know more, so it is the ceiling. ``pd_12m_hindsight``
    also knows the distress that has not shown yet (1 for those firms) and the cycle's path.

    Fed the invoices month by month; a date's part is ready once its month is in."""

    def __init__(self, lat: _Latent, ids: np.ndarray, rng: np.random.Generator, progress: Progress) -> None:
        self.lat, self.ids, self.progress = lat, ids, progress
        h = 12 - LAG
        firm = _future_shocks(rng, h)
        n_ind = lat.economy.offset.size
        sections = np.stack([_future_shocks(rng, h, _CYCLE_RHO, _CYCLE_SD) for _ in range(n_ind)])
        macro = _future_shocks(rng, h, _MACRO_RHO, _MACRO_SD)
        self.horizon = h
        self.hindsight_paths = np.broadcast_to(np.exp(firm), (n_ind, *firm.shape))
        self.paths = np.exp(firm[None] + sections + macro[None])
        starts = lat.cal.month_starts()
        self.months = [t for t in range(12, lat.cal.months - 12 + 1) if (starts[t].month - 1) % 3 == 0]
        self._open: dict[int, _Evidence] = {}

    def after_month(self, t: int, invoices: dict[str, np.ndarray]) -> Iterator[pd.DataFrame]:
        """Take the invoices of data month ``t``; yield the part of a date whose month it was."""
        for month in self.months:
            if month - _LOOKBACK <= t <= month:
                if month not in self._open:
                    self._open[month] = _Evidence(self.lat, month + BURN_IN)
                self._open[month].add(invoices)
        if t in self.months:
            yield self._part(self._open.pop(t))

    def _part(self, ev: _Evidence) -> pd.DataFrame:
        lat, col = self.lat, ev.col
        f, e = lat.firms, lat.economy
        as_of = lat.cal.starts[col]
        rows = np.flatnonzero((f.first_trade <= as_of) & (lat.default_day > as_of.astype(np.int64)))
        def survival(cycle: np.ndarray, paths: np.ndarray) -> np.ndarray:
            return np.concatenate([_survival(lat, rows[i:i + _CHUNK], col, cycle, paths)
                                   for i in range(0, rows.size, _CHUNK)] or [np.empty(0)])

        surv = survival(e.cycle_ahead(col, self.horizon), self.paths)
        surv_hindsight = survival(e.cycle[:, col:col + self.horizon], self.hindsight_paths)
        # the months since as_of - LAG: survived, or distress began in one of them (and shows, or not yet)
        ind = f.industry[rows]
        log_alive = np.zeros(rows.size)
        log_w = np.empty((LAG + 1, rows.size))
        with np.errstate(divide="ignore"):
            for k, m in enumerate(range(col - LAG, col)):
                risk = _BASE_LOGIT + f.risk[rows] + e.offset[ind] + e.cycle[ind, m] + lat.shock[rows, m]
                exposed = f.first_col[rows] <= m
                consistent = exposed & (ev.last_paid[rows] <= lat.cal.starts[m].astype(np.int64))
                log_w[k] = np.where(consistent, log_alive + _log_expit(risk) + ev.log_ratio[k, rows], -np.inf)
                log_alive += np.where(exposed, _log_expit(-risk), 0.0)
        log_w[LAG] = log_alive
        distressed = np.exp(logsumexp(log_w[:LAG], axis=0) - logsumexp(log_w, axis=0))
        healthy = (lat.distress[rows] < 0) | (lat.distress[rows] >= col)
        if self.progress:
            self.progress(f"true PD as of {as_of}: {rows.size:,} customers")
        return pd.DataFrame({"customer_id": self.ids[rows], "as_of": _ns(np.full(rows.size, as_of)),
                             "pd_12m": np.clip(distressed + (1 - distressed) * (1 - surv), 0.0, 1.0),
                             "pd_12m_hindsight": np.clip(np.where(healthy, 1 - surv_hindsight, 1.0), 0.0, 1.0)})


class _Evidence:
    """What a supplier's ledger says on one date about distress in each of the ``LAG`` months
    before it: the day of the last payment (distress before it is ruled out) and, per month,
    the log likelihood ratio of the invoices still open, distress from that month against a
    firm still paying."""

    def __init__(self, lat: _Latent, col: int) -> None:
        self.col = col
        self.day = int(lat.cal.starts[col].astype(np.int64))
        self.starts = lat.cal.starts[col - LAG:col].astype(np.int64)
        n = lat.firms.risk.size
        self.last_paid = np.full(n, np.iinfo(np.int64).min, dtype=np.int64)
        self.log_ratio = np.zeros((LAG, n))

    def add(self, inv: dict[str, np.ndarray]) -> None:
        known = inv["issue"] <= self.day
        paid = known & (inv["paid"] <= self.day)
        np.maximum.at(self.last_paid, inv["row"][paid], inv["paid"][paid])
        open_ = known & (inv["paid"] > self.day)
        row = inv["row"][open_]
        args = (inv["issue"][open_], inv["due"][open_], inv["q"][open_], inv["disputed"][open_])
        with np.errstate(divide="ignore"):
            still_paying = np.log(_paid_after(self.day, *args))
            for k, start in enumerate(self.starts):
                ratio = np.log(_paid_after(int(start), *args)) - still_paying
                self.log_ratio[k] += np.bincount(row, ratio, minlength=self.log_ratio.shape[1])


def _log_expit(x: np.ndarray) -> np.ndarray:
    return -np.logaddexp(0.0, -x)


def book_parts(config: GeneratorConfig, progress: Progress = None) -> Iterator[tuple[str, pd.DataFrame]]:
    """The book as ``(table name, part)`` pairs: every table in one part except ``invoices``
    (one part a month) and ``truth`` (one a quarter). Concatenated per table, the parts are
    the book; written as they come, memory stays bounded by a month of invoices."""
    latent_rng, customer_rng, default_rng, statement_rng, invoice_rng, signal_rng, truth_rng = \
        np.random.default_rng(config.seed).spawn(7)
    lat = _latent(config, latent_rng)
    ids = _customer_ids(config.customers)
    defaults = _defaults(lat, ids, default_rng)
    if progress:
        progress(f"latent credit quality of {config.customers:,} firms over {lat.cal.months} months: "
                 f"{len(defaults):,} defaults")
    yield "customers", _customers(lat, ids, customer_rng)
    yield "defaults", defaults
    statements = _statements(lat, ids, statement_rng)
    if progress:
        progress(f"financial statements: {len(statements):,}")
    yield "financial_statements", statements
    del statements
    truth = _Truth(lat, ids, truth_rng, progress)
    for t, (invoices, part) in enumerate(_invoices(lat, ids, _invoice_width(config), invoice_rng, progress)):
        yield "invoices", part
        for truth_part in truth.after_month(t, invoices):
            yield "truth", truth_part
    yield "industry_signals", _industry_signals(lat, signal_rng)


def generate_book(config: GeneratorConfig, progress: Progress = None) -> RawTables:
    """The five raw tables and ``truth`` for ``config``, in memory; the same config gives the
    same book. For large books use ``write_book``."""
    parts: dict[str, list[pd.DataFrame]] = {}
    for name, part in book_parts(config, progress):
        parts.setdefault(name, []).append(part)
    return RawTables(**{name: pd.concat(p, ignore_index=True) if len(p) > 1 else p[0]
                        for name, p in parts.items()})


def write_book(config: GeneratorConfig, directory: str | Path, progress: Progress = None) -> dict[str, tuple[Path, int]]:
    """Generate the book straight into ``directory`` as Parquet, part by part: the memory of
    a month of invoices, not of the book. Each file appears only once complete.
    Returns table name -> (path, rows)."""
    directory = Path(directory)
    written: dict[str, tuple[Path, int]] = {}
    with ExitStack() as stack:
        writers: dict[str, ParquetParts] = {}
        for name, part in book_parts(config, progress):
            if name not in writers:
                writers[name] = stack.enter_context(ParquetParts(directory / f"{name}.parquet"))
            writers[name].append(part)
        for name, w in writers.items():
            written[name] = (w.path, w.rows)
    return written


#: the synthetic book's seller: the book is its credit sales, half its turnover (the other half
#: is cash sales), and 10% of its revenue comes back as operating cash flow
SELLER_CREDIT_SHARE = 0.5
SELLER_CASH_MARGIN = 0.10


def book_seller(invoices: pd.DataFrame, as_of: pd.Timestamp) -> dict[str, float]:
    """The ``[seller]`` figures of the company whose ledger the book is: its annual revenue
    from what it invoiced over the 12 months to ``as_of``, and its monthly operating cash flow."""
    as_of = pd.Timestamp(as_of)
    year = (invoices["issue_date"] > as_of - pd.DateOffset(months=12)) & (invoices["issue_date"] <= as_of)
    revenue = float(invoices.loc[year, "amount"].sum()) / SELLER_CREDIT_SHARE
    return {"annual_revenue": round(revenue, 2), "monthly_operating_cash_flow": round(SELLER_CASH_MARGIN * revenue / 12, 2)}


def book_insurance(invoices: pd.DataFrame, as_of: pd.Timestamp, *, months_of_purchases: float = 2.0,
                   cover_share: float = 0.9, waiting_days: float = 180.0) -> pd.DataFrame:
    """The ``credit_insurance`` table of the demo's seller: a whole-turnover policy taken out a
    year before ``as_of``, whose insurer set each buyer that traded in the 12 months before its
    start an insured limit of ``months_of_purchases`` of those purchases (in thousands), paying
    ``cover_share`` of a loss after ``waiting_days`` of protracted default."""
    as_of = pd.Timestamp(as_of)
    start = as_of - pd.DateOffset(months=12)
    year = (invoices["issue_date"] > start - pd.DateOffset(months=12)) & (invoices["issue_date"] <= start)
    bought = invoices.loc[year].groupby("customer_id", observed=True)["amount"].sum()
    limit = (np.floor(bought * months_of_purchases / 12 / 1_000) * 1_000)
    limit = limit[limit > 0]
    return pd.DataFrame({"customer_id": limit.index.astype(str), "insurer": "the demo's credit insurer",
                         "insured_limit": limit.to_numpy(dtype=float), "cover_share": cover_share,
                         "waiting_days": waiting_days, "valid_from": start, "valid_to": pd.NaT})
