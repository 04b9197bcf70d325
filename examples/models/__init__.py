"""Model definitions used by the examples, tests and benchmarks."""
