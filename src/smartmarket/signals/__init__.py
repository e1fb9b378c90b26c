"""Signal quality: calibrated members, a skill-weighted ensemble, calibrated confidence, strength classes, monitoring.

Every weight, threshold and calibration map is learned from outcomes known at the decision bar (``outcomes``)::

    samples = SignalSamples.build(t, t1, y, {"transformer": p_tf, "smc": p_smc}, regimes)
    system = SignalSystem().fit(samples.known_before(bar), bar)        # calibrate, weight, choose confidence
    system.signals(samples.take(rows_at_or_after_bar))                  # Signal records with reasons
    run = walk_forward_signals(samples, refit_every=500, first_decision_bar=5000)  # causal backtest signals
"""

from smartmarket.signals.calibration import (
    Calibrator,
    IsotonicCalibrator,
    PlattCalibrator,
    ReliabilityDiagram,
    TemperatureCalibrator,
    brier_score,
    calibration_report,
    expected_calibration_error,
    fit_calibrator,
    log_loss,
    reliability_diagram,
)
from smartmarket.signals.confidence import (
    ConfidenceChoice,
    ConfidenceModel,
    known_hit_rate,
    signal_direction,
    signal_hit,
)
from smartmarket.signals.ensemble import EnsembleModel, SkillWeightedEnsemble, StackingEnsemble, make_ensemble
from smartmarket.signals.monitor import Alarm, MonitorConfig, MonitorSummary, SignalMonitor, WindowStats
from smartmarket.signals.outcomes import (
    FitBlock,
    OutcomeQueue,
    SignalSamples,
    causal_fit_indices,
    chronological_slices,
    fit_blocks,
    known_mask,
    outcome_known_at,
)
from smartmarket.signals.strength import (
    Direction,
    RegimeFilter,
    Signal,
    SignalSystem,
    SignalSystemConfig,
    Strength,
    StrengthThresholds,
    WalkForwardSignals,
    build_signals,
    fit_regime_filter,
    fit_strength_thresholds,
    walk_forward_signals,
)

__all__ = [
    "Alarm",
    "Calibrator",
    "ConfidenceChoice",
    "ConfidenceModel",
    "Direction",
    "EnsembleModel",
    "FitBlock",
    "IsotonicCalibrator",
    "MonitorConfig",
    "MonitorSummary",
    "OutcomeQueue",
    "PlattCalibrator",
    "RegimeFilter",
    "ReliabilityDiagram",
    "Signal",
    "SignalMonitor",
    "SignalSamples",
    "SignalSystem",
    "SignalSystemConfig",
    "SkillWeightedEnsemble",
    "StackingEnsemble",
    "Strength",
    "StrengthThresholds",
    "TemperatureCalibrator",
    "WalkForwardSignals",
    "WindowStats",
    "brier_score",
    "build_signals",
    "calibration_report",
    "causal_fit_indices",
    "chronological_slices",
    "expected_calibration_error",
    "fit_blocks",
    "fit_calibrator",
    "fit_regime_filter",
    "fit_strength_thresholds",
    "known_hit_rate",
    "known_mask",
    "log_loss",
    "make_ensemble",
    "outcome_known_at",
    "reliability_diagram",
    "signal_direction",
    "signal_hit",
    "walk_forward_signals",
]
