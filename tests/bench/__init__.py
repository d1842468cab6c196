"""The benchmark harness, run in its quick mode as a smoke test."""
