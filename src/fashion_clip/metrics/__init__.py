"""Evaluation metrics that stay correct when a catalogue has several images per product."""

from fashion_clip.metrics.retrieval_recall import RetrievalRecall, recall_at_k

__all__ = ["RetrievalRecall", "recall_at_k"]
