"""``bench backtest`` measures the compiled sweep beside the kernel, on the same bars, with the same answer."""

from __future__ import annotations

from smartmarket.backtest.bench import bench_backtest, sweep_param_sets


def test_sweep_figures_beside_the_kernel() -> None:
    res = bench_backtest(5_000, repeat=1, peer=False)
    assert res.sweep is not None and res.sweep_param_sets == 174 == len(sweep_param_sets(10, 30))
    assert res.sweep_final_equity == res.kernel_final_equity  # the (10, 30) set is the kernel's run
    assert res.sweep_bars_per_cpu_s is not None and res.sweep_bars_per_cpu_s > 0
    assert res.sweep_speedup is not None and res.peer is None
    assert bench_backtest(2_000, repeat=1, peer=False, sweep=False).sweep is None
