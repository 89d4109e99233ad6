"""A synthetic trade-credit book whose defaults are caused by a latent credit quality.

Each firm's monthly default hazard is ``sigmoid(z)`` with
``z = base + firm risk + industry offset + industry cycle + AR(1) firm shock``. The same
latent risk drives its financial ratios and how late it pays, so features carry real signal,
and the true 12-month PD of every customer on every quarter start is known (``truth``):
the hazard path integrated over the firm's future shocks, with the industry path taken as
the scenario.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
from scipy.special import expit

from riskcast.config import GeneratorConfig

from .io import RawTables
from .schema import NACE_SECTIONS

Progress = Callable[[str], None] | None

# NACE sections: common ones for trade-credit customers weigh more
_INDUSTRY_WEIGHTS = dict(zip(NACE_SECTIONS, [
    2, 1, 18, 1, 1, 12, 22, 8, 5, 4, 1, 3, 8, 4, 1, 1, 2, 1, 2, 1, 1]))
RECESSION_INDUSTRIES = ("C", "F", "G", "H")
_COUNTRIES = ["DE", "FR", "PL", "NL", "IT", "ES", "BE", "AT", "CZ", "SE"]
_SUFFIX = {"DE": "GmbH", "AT": "GmbH", "FR": "SARL", "PL": "Sp. z o.o.", "NL": "B.V.", "BE": "BV",
           "IT": "S.r.l.", "ES": "S.L.", "CZ": "s.r.o.", "SE": "AB"}
_BASE_LOGIT = -7.35     # monthly hazard of an average firm in a neutral cycle
_SHOCK_RHO, _SHOCK_SD = 0.95, 0.25
_FIRM_RISK_SD = 1.1      # spread of permanent firm risk: true-PD AUC ~0.82
_MC_PATHS = 256


@dataclass(frozen=True)
class _Latent:
    months: pd.DatetimeIndex
    industry: np.ndarray      # (N,) index into NACE_SECTIONS
    firm_risk: np.ndarray     # (N,)
    size: np.ndarray          # (N,) log revenue
    ind_offset: np.ndarray    # (21,)
    cycle: np.ndarray         # (21, M)
    shock: np.ndarray         # (N, M)
    start_month: np.ndarray   # (N,) first month of trade (may be negative: before the data)
    default_month: np.ndarray  # (N,) month of default, -1 if none

    def z(self) -> np.ndarray:
        return (_BASE_LOGIT + self.firm_risk[:, None] + self.ind_offset[self.industry][:, None]
                + self.cycle[self.industry] + self.shock)


def _ar1(rng: np.random.Generator, shape: tuple[int, ...], rho: float, sd: float) -> np.ndarray:
    out = np.empty(shape)
    x = rng.normal(0, sd / np.sqrt(1 - rho**2), shape[:-1])
    for t in range(shape[-1]):
        x = rho * x + rng.normal(0, sd, shape[:-1])
        out[..., t] = x
    return out


def _latent(cfg: GeneratorConfig, rng: np.random.Generator) -> _Latent:
    n, m = cfg.customers, 12 * cfg.years
    months = pd.date_range(pd.Timestamp(cfg.start).to_period("M").to_timestamp(), periods=m, freq="MS")
    w = np.array(list(_INDUSTRY_WEIGHTS.values()), dtype=float)
    industry = rng.choice(len(w), size=n, p=w / w.sum())
    ind_offset = rng.normal(0, 0.3, len(w))
    ind_offset[NACE_SECTIONS.index("F")] += 0.35   # construction is riskier
    ind_offset[NACE_SECTIONS.index("K")] -= 0.3
    cycle = _ar1(rng, (len(w), m), 0.92, 0.06) + _ar1(rng, (1, m), 0.95, 0.05)
    if cfg.scenario == "recession":
        ramp = np.clip((np.arange(m) - (m - 13)) / 9.0, 0, 1)
        for code in RECESSION_INDUSTRIES:
            cycle[NACE_SECTIONS.index(code)] += 1.0 * ramp
    size = rng.normal(np.log(5e6), 1.2, n)
    size_z = (size - np.log(5e6)) / 1.2
    age = rng.uniform(1, 60, n)
    firm_risk = rng.normal(0, _FIRM_RISK_SD, n) - 0.25 * size_z + 0.35 * (age < 5)
    old = rng.random(n) < 0.7
    start_month = np.where(old, -rng.integers(1, 120, n), rng.integers(0, max(m - 6, 1), n))
    start_month = np.maximum(start_month, -np.floor(age * 12).astype(int))
    shock = _ar1(rng, (n, m), _SHOCK_RHO, _SHOCK_SD)
    lat = _Latent(months, industry, firm_risk, size, ind_offset, cycle, shock, start_month, np.full(n, -1))
    hazard = expit(lat.z())
    exposed = np.arange(m)[None, :] >= start_month[:, None]
    hit = (rng.random((n, m)) < hazard) & exposed
    default_month = np.where(hit.any(axis=1), hit.argmax(axis=1), -1)
    return _Latent(months, industry, firm_risk, size, ind_offset, cycle, shock, start_month, default_month)


def _standard_risk(lat: _Latent, month_idx: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Latent risk of firms ``rows`` at months ``month_idx`` (clipped to the window), standardised."""
    mi = np.clip(month_idx, 0, len(lat.months) - 1)
    z = (lat.firm_risk[rows] + lat.ind_offset[lat.industry[rows]] + lat.cycle[lat.industry[rows], mi]
         + lat.shock[rows, mi])
    return z / 0.95


def _customers(cfg: GeneratorConfig, lat: _Latent, rng: np.random.Generator) -> pd.DataFrame:
    n = cfg.customers
    country = rng.choice(_COUNTRIES, size=n, p=np.array([30, 15, 12, 10, 9, 8, 5, 4, 4, 3]) / 100)
    ids = np.char.add("C", np.char.zfill(np.arange(1, n + 1).astype(str), 6))
    start = lat.months[0]
    first_trade = start + pd.to_timedelta(lat.start_month * 30.4375 + rng.integers(0, 28, n), unit="D")
    age_days = (rng.uniform(0, 1, n) * 40 * 365 + 365).astype(int)
    founded = first_trade - pd.to_timedelta(age_days, unit="D")
    return pd.DataFrame({
        "customer_id": ids,
        "name": [f"Firm {i:06d} {_SUFFIX[c]}" for i, c in zip(range(1, n + 1), country)],
        "industry": np.array(NACE_SECTIONS)[lat.industry],
        "country": country,
        "founded": founded.normalize().astype("datetime64[ns]"),
        "first_trade_date": first_trade.normalize().astype("datetime64[ns]"),
    })


def _defaults(customers: pd.DataFrame, lat: _Latent, rng: np.random.Generator) -> pd.DataFrame:
    rows = np.flatnonzero(lat.default_month >= 0)
    day = rng.integers(1, 27, rows.size)  # never the 1st: a default is after the quarter-start as_of
    date = lat.months[lat.default_month[rows]] + pd.to_timedelta(day, unit="D")
    first = customers["first_trade_date"].to_numpy()[rows]
    date = np.maximum(date.to_numpy(), first + np.timedelta64(1, "D"))
    kind = np.where(rng.random(rows.size) < 0.4, "bankruptcy", "90dpd")
    return pd.DataFrame({"customer_id": customers["customer_id"].to_numpy()[rows],
                         "default_date": pd.to_datetime(date).astype("datetime64[ns]"), "kind": kind})


def _statements(customers: pd.DataFrame, lat: _Latent, default_date: np.ndarray, rng: np.random.Generator,
                data_end: pd.Timestamp) -> pd.DataFrame:
    n = len(customers)
    size_z = (lat.size - np.log(5e6)) / 1.2
    files = rng.random(n) >= np.clip(0.2 - 0.12 * size_z, 0.02, 0.6)  # ~20% never file, mostly small
    first_year, last_year = lat.months[0].year - 1, data_end.year - 1
    parts = []
    for year in range(first_year, last_year + 1):
        period_end = pd.Timestamp(year=year, month=12, day=31)
        m_idx = (year - lat.months[0].year) * 12 + 11
        alive = (np.isnan(default_date) | (default_date > period_end.value)) & files
        alive &= lat.start_month <= m_idx + 24
        alive &= rng.random(n) > 0.05  # some years are skipped
        rows = np.flatnonzero(alive)
        if rows.size == 0:
            continue
        q = _standard_risk(lat, np.full(rows.size, m_idx), rows)
        k = rows.size
        delay = np.clip(rng.normal(110 + 25 * q - 15 * size_z[rows], 25), 60, 180).astype(int)
        filed = period_end + pd.to_timedelta(delay, unit="D")
        revenue = np.exp(lat.size[rows] + 0.04 * (year - first_year) + rng.normal(0, 0.1, k)) * np.exp(-0.05 * q)
        assets = revenue / np.exp(rng.normal(np.log(1.2), 0.3, k))
        lev = np.clip(1.3 * expit(-0.5 + 0.8 * q + rng.normal(0, 0.35, k)), 0.05, 1.6)
        liabilities = lev * assets
        current_assets = assets * np.clip(rng.normal(0.5, 0.12, k), 0.15, 0.9)
        cash_share = np.clip(expit(-1.3 - 0.6 * q + rng.normal(0, 0.4, k)), 0.01, 0.8)
        cash = current_assets * cash_share
        receivables = (current_assets - cash) * rng.uniform(0.35, 0.65, k)
        inventory = current_assets - cash - receivables
        current_liabilities = liabilities * np.clip(rng.normal(0.55 + 0.05 * q, 0.12, k), 0.2, 0.95)
        ebit = revenue * (0.07 - 0.045 * q + rng.normal(0, 0.03, k))
        interest = liabilities * 0.6 * np.clip(rng.normal(0.045 + 0.01 * q, 0.01, k), 0.005, 0.15)
        pre_tax = ebit - interest
        net_income = np.where(pre_tax > 0, 0.75 * pre_tax, pre_tax)
        equity = assets - liabilities
        parts.append(pd.DataFrame({
            "customer_id": customers["customer_id"].to_numpy()[rows],
            "period_end": period_end, "filed_date": filed,
            "revenue": revenue, "cogs": revenue * np.clip(rng.normal(0.7, 0.08, k), 0.3, 0.98),
            "ebit": ebit, "interest_expense": interest, "net_income": net_income,
            "total_assets": assets, "current_assets": current_assets, "cash": cash,
            "receivables": receivables, "inventory": inventory,
            "current_liabilities": current_liabilities, "total_liabilities": liabilities,
            "equity": equity, "retained_earnings": equity * rng.uniform(0.2, 0.9, k),
            "operating_cash_flow": net_income + 0.04 * assets - 0.02 * q * revenue + rng.normal(0, 0.02, k) * revenue,
            "_default": default_date[rows],
        }))
    st = pd.concat(parts, ignore_index=True)
    known = (st["filed_date"] <= data_end) & (np.isnan(st["_default"]) | (st["filed_date"].astype("int64") < st["_default"]))
    st = st[known].drop(columns="_default")
    for c in ("period_end", "filed_date"):
        st[c] = st[c].astype("datetime64[ns]")
    return st.reset_index(drop=True)


def _invoices(customers: pd.DataFrame, lat: _Latent, default_date: np.ndarray, rng: np.random.Generator,
              data_end: pd.Timestamp, progress: Progress) -> pd.DataFrame:
    n, m = len(customers), len(lat.months)
    size_z = (lat.size - np.log(5e6)) / 1.2
    rate = np.clip(np.exp(0.15 + 0.35 * size_z + rng.normal(0, 0.3, n)), 0.3, 4.0)
    terms = rng.choice([30, 60, 90], size=n, p=[0.55, 0.30, 0.15])
    first_trade = customers["first_trade_date"].to_numpy().astype("datetime64[D]")
    dd = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
    has_default = ~np.isnan(default_date)
    dd[has_default] = default_date[has_default].astype(np.int64)
    parts = []
    for t in range(m):
        month = lat.months[t]
        count = rng.poisson(rate)
        count[lat.start_month > t] = 0
        count[(lat.default_month >= 0) & (lat.default_month < t)] = 0
        rows = np.repeat(np.arange(n), count)
        if rows.size == 0:
            continue
        k = rows.size
        issue = (np.datetime64(month.date(), "D") + rng.integers(0, month.days_in_month, k)).astype("datetime64[D]")
        keep = (issue >= first_trade[rows]) & (issue.astype("datetime64[ns]").astype(np.int64) < dd[rows])
        rows, issue, k = rows[keep], issue[keep], int(keep.sum())
        q = _standard_risk(lat, np.full(k, t), rows)
        amount = np.round(np.exp(lat.size[rows] - np.log(12) + np.log(0.01) - np.log(rate[rows]) + rng.normal(0, 0.5, k)), 2)
        due = issue + terms[rows].astype("timedelta64[D]")
        disputed = rng.random(k) < expit(-3.9 + 0.5 * q)
        late = rng.random(k) < expit(-0.8 + 1.3 * q)
        late_days = rng.exponential(4 + 14 * np.logaddexp(0, 1.2 * q)) + disputed * rng.exponential(20, k)
        early = -rng.uniform(0, 0.3, k) * terms[rows]
        pay_delay = np.where(late, np.ceil(late_days), np.floor(early)).astype("timedelta64[D]")
        paid = due + pay_delay
        paid = np.maximum(paid, issue)
        paid_ns = paid.astype("datetime64[ns]").astype(np.int64)
        # a firm in default stops paying: nothing due within 90 days of default is ever paid
        unpaid = (paid_ns >= dd[rows]) | (dd[rows] - issue.astype("datetime64[ns]").astype(np.int64) < 90 * 86_400 * 10**9)
        unpaid |= paid > np.datetime64(data_end.date(), "D")
        partial = rng.random(k) < 0.03
        paid_amount = np.where(partial, np.round(amount * rng.uniform(0.5, 0.95, k), 2), amount)
        parts.append(pd.DataFrame({
            "customer_id": customers["customer_id"].to_numpy()[rows],
            "issue_date": issue.astype("datetime64[ns]"), "due_date": due.astype("datetime64[ns]"),
            "amount": amount,
            "paid_date": np.where(unpaid, np.datetime64("NaT"), paid).astype("datetime64[ns]"),
            "paid_amount": np.where(unpaid, np.nan, paid_amount),
            "disputed": disputed,
        }))
        if progress and (t + 1) % 12 == 0:
            progress(f"invoices {t + 1}/{m} months")
    inv = pd.concat(parts, ignore_index=True)
    inv = inv[inv["issue_date"] <= data_end].sort_values(["issue_date", "customer_id"], kind="stable").reset_index(drop=True)
    inv.insert(0, "invoice_id", np.char.add("INV", np.char.zfill(np.arange(1, len(inv) + 1).astype(str), 9)))
    return inv


def _industry_signals(lat: _Latent, rng: np.random.Generator, scenario: str) -> pd.DataFrame:
    n_ind, m = lat.cycle.shape
    monthly = expit(_BASE_LOGIT + 0.7 + lat.ind_offset[:, None] + lat.cycle)
    annual = 1 - (1 - monthly) ** 12
    rate = np.clip(annual * np.exp(rng.normal(0, 0.08, annual.shape)), 0, 1)
    step = 0.003 - 0.03 * np.diff(lat.cycle, axis=1, prepend=lat.cycle[:, :1]) - 0.004 * lat.cycle
    step = step + rng.normal(0, 0.003, step.shape)
    if scenario == "recession":
        for code in RECESSION_INDUSTRIES:
            step[NACE_SECTIONS.index(code), m - 12:] -= 0.012
    growth = 100 * np.exp(np.cumsum(step, axis=1))
    return pd.DataFrame({
        "industry": np.repeat(np.array(NACE_SECTIONS), m),
        "month": np.tile(lat.months.to_numpy(), n_ind).astype("datetime64[ns]"),
        "default_rate": rate.ravel(),
        "growth_index": growth.ravel(),
    })


def _truth(customers: pd.DataFrame, lat: _Latent, rng: np.random.Generator, data_end: pd.Timestamp,
           default_date: np.ndarray, progress: Progress) -> pd.DataFrame:
    """True 12-month PD on every quarter start with a full horizon: the firm's future shocks are
    integrated by Monte Carlo over common standardised paths (the same for every firm)."""
    m = len(lat.months)
    future = _ar1_paths(rng, _MC_PATHS, 12)
    decay = _SHOCK_RHO ** np.arange(1, 13)
    first_trade = customers["first_trade_date"].to_numpy()
    parts = []
    for k in range(12, m - 11, 3):
        as_of = lat.months[k]
        active = (first_trade <= as_of.to_datetime64()) & (np.isnan(default_date) | (default_date > as_of.value))
        rows = np.flatnonzero(active)
        pd_ = np.empty(rows.size)
        for lo in range(0, rows.size, 2048):
            r = rows[lo:lo + 2048]
            base = (_BASE_LOGIT + lat.firm_risk[r, None] + lat.ind_offset[lat.industry[r]][:, None]
                    + lat.cycle[lat.industry[r], k:k + 12] + lat.shock[r, k - 1, None] * decay[None, :])
            survive = np.prod(1 - expit(base[:, None, :] + future[None, :, :]), axis=2)
            pd_[lo:lo + 2048] = 1 - survive.mean(axis=1)
        parts.append(pd.DataFrame({"customer_id": customers["customer_id"].to_numpy()[rows],
                                   "as_of": as_of, "pd_12m": pd_}))
        if progress:
            progress(f"true PD as of {as_of.date()}")
    out = pd.concat(parts, ignore_index=True)
    out["as_of"] = out["as_of"].astype("datetime64[ns]")
    return out


def _ar1_paths(rng: np.random.Generator, paths: int, steps: int) -> np.ndarray:
    """Future shock innovations from a known state: x_t = rho x_{t-1} + eps, x_{-1} = 0."""
    out = np.empty((paths, steps))
    x = np.zeros(paths)
    for t in range(steps):
        x = _SHOCK_RHO * x + rng.normal(0, _SHOCK_SD, paths)
        out[:, t] = x
    return out


def generate_book(cfg: GeneratorConfig, progress: Progress = None) -> RawTables:
    """The five raw tables and ``truth`` for ``cfg``; the same config gives the same book."""
    streams = np.random.default_rng(cfg.seed).spawn(7)
    lat = _latent(cfg, streams[0])
    data_end = lat.months[-1] + pd.offsets.MonthEnd(0)
    customers = _customers(cfg, lat, streams[1])
    defaults = _defaults(customers, lat, streams[2])
    by_customer = defaults.set_index("customer_id")["default_date"]
    default_date = customers["customer_id"].map(by_customer).astype("datetime64[ns]").astype("int64").to_numpy().astype(float)
    default_date[customers["customer_id"].map(by_customer).isna().to_numpy()] = np.nan
    if progress:
        progress(f"latent credit quality of {cfg.customers:,} firms over {len(lat.months)} months: {len(defaults):,} defaults")
    statements = _statements(customers, lat, default_date, streams[3], data_end)
    invoices = _invoices(customers, lat, default_date, streams[4], data_end, progress)
    signals = _industry_signals(lat, streams[5], cfg.scenario)
    truth = _truth(customers, lat, streams[6], data_end, default_date, progress)
    return RawTables(customers, statements, invoices, signals, defaults, truth)
