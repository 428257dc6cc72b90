"""Speed and memory benchmarks: each script prints its figures and the ratio against the naive path."""
