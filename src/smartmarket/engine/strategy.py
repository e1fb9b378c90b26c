"""The strategy interface and what a strategy may see: :class:`BarContext`.

A strategy declares its features (objects following :class:`~smartmarket.features.base.Feature`) and answers
``on_bar(ctx) -> Decision | None`` once per closed bar. The context holds the current closed bar, the
feature values at this bar, the strategy's position and a read-only view of the last bars up to and
including this one. Nothing in it leads to a later bar: the kernel is fed one closed candle at a time and
the history is a bounded buffer it appends to, so at bar t no later bar exists anywhere the strategy can
reach through its inputs. A context is immutable; one kept from an earlier bar still describes that bar.

``None`` means "no opinion, keep what you have".
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, ClassVar, NamedTuple, overload

from smartmarket.core.types import Candle, Direction
from smartmarket.execution.orders import Decision
from smartmarket.features.base import Feature

Bar = Candle
"""The kernel's bar is the one candle type (``core.types.Candle``); this name stays for older imports."""


class BarHistory:
    """Read-only view of the most recent bars of one symbol, oldest first; ``history[-1]`` is the current bar.

    Holds at most ``maxlen`` bars. Indexing past the newest bar raises ``IndexError``: there is nothing there.
    """

    __slots__ = ("_bars",)

    def __init__(self, bars: deque[Candle]) -> None:
        self._bars = bars

    def __len__(self) -> int:
        return len(self._bars)

    def __iter__(self) -> Iterator[Candle]:
        return iter(tuple(self._bars))

    @overload
    def __getitem__(self, index: int) -> Candle: ...
    @overload
    def __getitem__(self, index: slice) -> list[Candle]: ...
    def __getitem__(self, index: int | slice) -> Candle | list[Candle]:
        if isinstance(index, slice):
            return list(self._bars)[index]
        return self._bars[index]

    @property
    def maxlen(self) -> int:
        return self._bars.maxlen or 0

    def closes(self, n: int | None = None) -> list[float]:
        """The last ``n`` closes (all kept ones when ``n`` is None), oldest first."""
        bars = self._bars
        count = len(bars) if n is None else min(n, len(bars))
        return [bars[i].close for i in range(len(bars) - count, len(bars))]

    def column(self, name: str, n: int | None = None) -> list[float]:
        """The last ``n`` values of one OHLCV field (``"open"``, ``"high"``, …), oldest first."""
        field = Candle._fields.index(name)
        bars = self._bars
        count = len(bars) if n is None else min(n, len(bars))
        return [bars[i][field] for i in range(len(bars) - count, len(bars))]


class BarContext(NamedTuple):
    """Everything a strategy sees at one closed bar (immutable)."""

    symbol: str
    bar_index: int  # this symbol's bar counter, 0 for its first bar
    bar: Candle
    position: float  # signed quantity held (negative = short)
    entry_price: float  # average entry price, NaN when flat
    history: BarHistory
    feature_values: tuple[float, ...]
    feature_index: Mapping[str, int]  # column name → position in feature_values

    @property
    def ts(self) -> int:
        return self.bar.ts

    @property
    def open(self) -> float:
        return self.bar.open

    @property
    def high(self) -> float:
        return self.bar.high

    @property
    def low(self) -> float:
        return self.bar.low

    @property
    def close(self) -> float:
        return self.bar.close

    @property
    def volume(self) -> float:
        return self.bar.volume

    @property
    def direction(self) -> Direction:
        """The side of the position held: long, short or flat."""
        return Direction.LONG if self.position > 0 else Direction.SHORT if self.position < 0 else Direction.FLAT

    def feature(self, column: str) -> float:
        """Value of one feature column at this bar (NaN while it warms up)."""
        try:
            return self.feature_values[self.feature_index[column]]
        except KeyError:
            known = ", ".join(self.feature_index) or "none"
            raise KeyError(f"feature column {column!r} is not declared by the strategy (declared: {known})") from None

    @property
    def features(self) -> dict[str, float]:
        """All feature values at this bar, by column name."""
        values = self.feature_values
        return {name: values[i] for name, i in self.feature_index.items()}


class Strategy(ABC):
    """Base class of every strategy. One instance serves one symbol (the kernel builds one per symbol)."""

    name: ClassVar[str] = "strategy"
    history_size: int = 2  # bars kept in ``ctx.history``

    def features(self) -> Sequence[Feature]:
        """Fresh feature objects this strategy reads through ``ctx.feature``; called once per symbol."""
        return ()

    @abstractmethod
    def on_bar(self, ctx: BarContext) -> Decision | None:
        """React to one closed bar: a target position, or None to keep the current one."""

    def params(self) -> dict[str, Any]:
        """The strategy's parameters (recorded in results)."""
        return {}

    def warmup_bars(self) -> int:
        """Bars needed before decisions are meaningful (features' ``warmup`` when they declare one)."""
        feature_warmup = max((int(getattr(f, "warmup", 0)) for f in self.features()), default=0)
        return max(feature_warmup + 1, self.history_size)


StrategyFactory = Callable[[str], Strategy]
"""Builds the strategy instance for one symbol."""


def is_missing(value: float) -> bool:
    """True for NaN (a feature still warming up)."""
    return math.isnan(value)


__all__ = ["Bar", "BarContext", "BarHistory", "Strategy", "StrategyFactory", "is_missing"]
