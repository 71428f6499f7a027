"""Data: shard specs, manifests, the WebDataset data module and the embedded demo catalogue."""
