"""Benchmarks (not shipped with the packages): each prints ratios and growth taken in one run.

    python -m bench.core        # the fast path against the one-call-per-token reference, per length
    python -m bench.job         # the scoring job (1 and 2 actors) against in-process scoring
    python -m bench.aggregate   # the aggregator against a plain NumPy read-and-sum pass
    python -m bench.scale       # a store's costs from 10^3 to 10^5 examples, locally and on a local S3 server

Each takes `--quick`: a small run of every code path that the test suite runs (tests/bench), so a
benchmark that no longer runs is a red test, not a surprise.
"""
