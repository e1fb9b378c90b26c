"""Execution: decisions → orders → fills → portfolio (fees, slippage, sizing, risk, a paper broker)."""

from smartmarket.execution.broker import Broker, PaperBrokerAdapter
from smartmarket.execution.fees import NO_FEES, FeeModel
from smartmarket.execution.orders import DIRECTION_SIGN, Decision, ExitReason, Fill, Liquidity, Order, OrderStatus
from smartmarket.execution.paper_broker import PaperBroker
from smartmarket.execution.portfolio import Portfolio, Position
from smartmarket.execution.risk import ProtectiveStops, RiskConfig, stops_for_entry
from smartmarket.execution.risk_checks import (
    AccountState,
    Approved,
    EquityWatermarks,
    OpenOrder,
    OrderIntent,
    Rejected,
    RiskChecks,
    RiskLimits,
    Verdict,
)
from smartmarket.execution.sizing import FixedFraction, RiskPerTrade, Sizer, VolatilityTarget, realised_volatility
from smartmarket.execution.slippage import (
    NO_SLIPPAGE,
    FixedBps,
    SlippageModel,
    SlippageTracker,
    VolatilitySlippage,
    slipped_price,
)

__all__ = [
    "DIRECTION_SIGN",
    "NO_FEES",
    "NO_SLIPPAGE",
    "AccountState",
    "Approved",
    "Broker",
    "Decision",
    "EquityWatermarks",
    "ExitReason",
    "FeeModel",
    "Fill",
    "FixedBps",
    "FixedFraction",
    "Liquidity",
    "OpenOrder",
    "Order",
    "OrderIntent",
    "OrderStatus",
    "PaperBroker",
    "PaperBrokerAdapter",
    "Portfolio",
    "Position",
    "ProtectiveStops",
    "Rejected",
    "RiskChecks",
    "RiskConfig",
    "RiskLimits",
    "RiskPerTrade",
    "Sizer",
    "SlippageModel",
    "SlippageTracker",
    "Verdict",
    "VolatilitySlippage",
    "VolatilityTarget",
    "realised_volatility",
    "slipped_price",
    "stops_for_entry",
]
