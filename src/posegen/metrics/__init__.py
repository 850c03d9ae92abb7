"""Usage metrics: the rollup queries, summaries, and Prometheus series."""
