"""Optimisation: AdamW parameter groups and the warmup-cosine schedule."""
