"""Index entry point: `python -m fashion_clip.index model=tiny source=data/demo/test out=index.pt`.

Add `ckpt_path=...` to index with fine-tuned weights, or `onnx=DIR` to embed with an ONNX export
(onnxruntime, `python -m fashion_clip.export format=onnx`); the index records which weights built it.
"""

from __future__ import annotations

from fashion_clip.config import hydra_entry

main = hydra_entry("index", "fashion_clip.retrieval.index_file.index_catalogue")

if __name__ == "__main__":
    main()
