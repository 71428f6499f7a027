"""Deployable models: ONNX towers plus the preprocessing and tokenizer files to feed them, without torch.

`onnx_export` (torch side) writes an export directory; `runtime.OnnxClip` (numpy, PIL, onnxruntime and
tokenizers only) embeds images and texts from it.
"""
