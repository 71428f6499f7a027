"""Product search: index a catalogue's image embeddings once, then query it by text or image."""
