"""Ingestion: catalogue importers (`sources/`) and the deterministic, resumable shard writer they share."""
