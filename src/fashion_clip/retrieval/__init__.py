"""Product search: embed a catalogue once (embedding.py), index its image embeddings (index_file.py), then
query it by text or image (search.py, query_model.py) and show the results as a page (page.py)."""
