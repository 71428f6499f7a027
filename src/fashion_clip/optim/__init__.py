"""Optimisation: AdamW parameter groups, the fused AdamW default and its fallback, the LR schedule."""
