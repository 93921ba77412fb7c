"""Pipit's benchmarks: each scenario is one command, run from the repository root, that
writes `bench/results/<scenario>.json` and `bench/results/<scenario>.png`.

    python -m bench.ingest      # events/s through streaming, unary and HTTP at 1/4/16
                                # clients beside the engine's raw insert; peak ingest RSS
    python -m bench.freshness   # acknowledgement → visible in test_summary, p50/p99
    python -m bench.query       # p50/p95/p99 of every endpoint at 1 M and 10 M
                                # events beside the same SQL direct; throughput at 1/8/32

Services run as real `pipit` processes (as in production), so their CPU and memory are
their own; the benchmark process is only the clients. Not part of the test suite:
`tests/test_bench_smoke.py` runs each scenario at a tiny scale to keep them working."""
