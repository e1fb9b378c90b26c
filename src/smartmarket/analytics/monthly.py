"""Calendar-month returns of an equity curve (UTC).

A month's return is its month-end equity (the last value whose index timestamp falls in that UTC month)
over the previous month-end equity, minus one; the first month is measured from the curve's starting
equity (its first value). Months without any bar (a data gap covering a whole month) are absent, and the
next month is measured from the last month-end before the gap. As in ``metrics``, a month that starts at
zero or negative equity has return 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from smartmarket.analytics.metrics import validate_equity

MONTH_NAMES: tuple[str, ...] = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
YEAR_COLUMN = "Year"


@dataclass(frozen=True)
class MonthlyReturns:
    """Returns per calendar month: ``returns`` is a float Series indexed by ``"YYYY-MM"`` strings, ascending."""

    returns: pd.Series

    def table(self) -> pd.DataFrame:
        """Year × month DataFrame (columns ``Jan`` … ``Dec`` then ``Year``); NaN where a month has no data.

        ``Year`` compounds that year's months: ``prod(1 + r) - 1`` (equal to year-end over previous
        year-end equity)."""
        columns = [*MONTH_NAMES, YEAR_COLUMN]
        if self.returns.empty:
            return pd.DataFrame(columns=columns, dtype=np.float64)
        years = sorted({int(key[:4]) for key in self.returns.index})
        table = pd.DataFrame(np.nan, index=pd.Index(years, name="year"), columns=columns, dtype=np.float64)
        for key, value in self.returns.items():
            year, month = int(str(key)[:4]), int(str(key)[5:7])
            table.loc[year, MONTH_NAMES[month - 1]] = float(value)
        for year in years:
            months = table.loc[year, list(MONTH_NAMES)].dropna()
            table.loc[year, YEAR_COLUMN] = float(np.prod(1.0 + months.to_numpy()) - 1.0)
        return table

    def to_records(self) -> list[dict[str, str | float]]:
        """JSON-friendly list: ``[{"month": "2024-01", "return": 0.0123}, …]``."""
        return [{"month": str(k), "return": float(v)} for k, v in self.returns.items()]


def monthly_returns(equity: pd.Series) -> MonthlyReturns:
    """Monthly returns of an equity curve indexed by int64 UTC epoch ms (see module docstring)."""
    curve = validate_equity(equity)
    stamps = pd.to_datetime(curve.index.to_numpy(dtype=np.int64), unit="ms", utc=True)
    keys = pd.Index(stamps.strftime("%Y-%m"), name="month")
    month_end = pd.Series(curve.to_numpy(), index=keys).groupby(level=0, sort=True).last()
    ends = month_end.to_numpy(dtype=np.float64)
    starts = np.concatenate([[float(curve.iloc[0])], ends[:-1]])
    alive = starts > 0
    values = np.where(alive, ends / np.where(alive, starts, 1.0) - 1.0, 0.0)
    return MonthlyReturns(pd.Series(values, index=month_end.index, name="return", dtype=np.float64))


__all__ = ["MONTH_NAMES", "YEAR_COLUMN", "MonthlyReturns", "monthly_returns"]
