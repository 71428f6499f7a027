"""Evaluation: embed a split once, then score it under named protocols (full, sample100, zeroshot)."""
