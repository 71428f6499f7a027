"""Catalogue importers: each reads one source format and hands items to the shared shard writer."""
