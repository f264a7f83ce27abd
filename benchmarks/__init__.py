"""promptvec benchmarks: `python -m benchmarks.run` (or `make bench`) measures and writes BENCHMARKS.md."""
