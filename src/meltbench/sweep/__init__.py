"""Experiments: matrices of runs from a YAML file or llama-bench-style lists."""
