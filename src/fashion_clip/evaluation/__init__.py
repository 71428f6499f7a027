"""Evaluation: embed a split once (retrieval/embedding.py), then score it under named protocols, one module
per conf/protocol/*.yaml (full, sample100, zeroshot, attributes, marqo)."""
