"""Reading shards for training and evaluation: specs, manifests, decoding, batching and the data module."""
