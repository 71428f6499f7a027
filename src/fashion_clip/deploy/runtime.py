"""Embed images and texts with an ONNX export: numpy, PIL, onnxruntime and tokenizers, no torch.

clip = OnnxClip("exported/")
image_vectors = clip.embed_images([Image.open("boot.jpg")])   # (1, D) unit-norm float32
text_vectors = clip.embed_texts(["black leather ankle boots"])
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

from fashion_clip.deploy.export_files import (
    FINGERPRINT_KEY,
    TOWERS,
    ExportManifest,
    check_fingerprint,
    read_export,
)
from fashion_clip.deploy.image_preprocess import preprocess
from fashion_clip.deploy.text_tokenizer import TextTokenizer


def open_session(path: Path, fingerprint: str, threads: int | None) -> ort.InferenceSession:
    """An onnxruntime CPU session for one tower, refused when the file carries other weights' fingerprint."""
    options = ort.SessionOptions()
    # idle intra-op threads would spin after each run, taking the cores from the top-k search that follows
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    check_fingerprint(fingerprint, session.get_modelmeta().custom_metadata_map.get(FINGERPRINT_KEY), path)
    return session


class OnnxClip:
    """Both towers of one export, with the preprocessing and tokenizer they were exported with."""

    def __init__(self, directory: str | Path, threads: int | None = None):
        self.manifest: ExportManifest = read_export(directory)
        self.sessions = {
            tower: open_session(self.manifest.encoder_path(tower), self.manifest.fingerprint, threads)
            for tower in TOWERS
        }
        self.tokenize = TextTokenizer(self.manifest.file_path("tokenizer.file"), self.manifest.tokenizer)

    def encode(self, tower: str, inputs: np.ndarray) -> np.ndarray:
        """Unit-norm float32 embeddings of a batch of pixel arrays (image) or token ids (text)."""
        session = self.sessions[tower]
        return session.run(None, {session.get_inputs()[0].name: inputs})[0]

    def preprocess(self, image: Image.Image) -> np.ndarray:
        """One image as the image encoder's CHW float32 input (`preprocess.json`)."""
        return preprocess(image, self.manifest.preprocess)

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """(len(images), D) unit-norm embeddings."""
        return self.encode("image", np.stack([self.preprocess(image) for image in images]))

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), D) unit-norm embeddings."""
        return self.encode("text", self.tokenize(list(texts)))
