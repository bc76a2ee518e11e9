"""Accuracy next to speed: perplexity, KL divergence and top-1 agreement against a
reference, and task accuracy through lm-evaluation-harness."""
