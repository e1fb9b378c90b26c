"""Benchmarks run by ``smartmarket bench …``: each measures SmartMarket against a baseline in the same run."""
