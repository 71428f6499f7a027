"""`python -m fashion_clip.export ckpt_path=... out=model.pt`: a trained checkpoint as a plain open_clip file.

The written file holds only the open_clip model's state dict, so anyone can load it without fashion_clip:
`open_clip.create_model_and_transforms(NAME, pretrained="model.pt")`. With `format=onnx`, `out` is a
directory of both towers as ONNX plus the preprocessing and tokenizer files (`fashion_clip.deploy`).
"""

from __future__ import annotations

from fashion_clip.config import hydra_entry

main = hydra_entry("export", "fashion_clip.deploy.export.export_from_config")

if __name__ == "__main__":
    main()
