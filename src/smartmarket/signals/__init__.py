"""Signal quality: calibrated members, a skill-weighted ensemble, calibrated confidence, strength classes, monitoring.

Every weight, threshold and calibration map is learned from outcomes known at the decision bar (``outcomes``)::

    samples = SignalSamples.build(t, t1, y, {"transformer": p_tf, "smc": p_smc}, regimes)
    system = SignalSystem().fit(samples.known_before(bar), bar)        # calibrate, weight, choose confidence
    system.signals(samples.take(rows_at_or_after_bar))                  # Signal records with reasons
    run = walk_forward_signals(samples, refit_every=500, first_decision_bar=5000)  # causal backtest signals
"""

# The package root imports nothing: calibration, confidence, the engine and fitted artifacts load torch,
# LightGBM and scikit-learn, so a caller imports the module it needs (``smartmarket.signals.engine``, ``.fit``, …).
__all__: list[str] = []
