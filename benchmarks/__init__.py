"""Throughput and latency benchmarks and the load test (``make bench``, ``make loadtest``)."""
