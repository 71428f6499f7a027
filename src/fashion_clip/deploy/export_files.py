"""The export directory's files and the manifest that ties them to one set of weights.

`model.json` names the files and the weights fingerprint; `preprocess.json` and both `.onnx` files carry
the same fingerprint (the ONNX files as metadata), so files from two exports are never used together.
Torch-free: a service reads these with json and onnxruntime only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fashion_clip.deploy.image_preprocess import INTERPOLATIONS, RESIZE_MODES
from fashion_clip.deploy.text_tokenizer import CLEANERS
from fashion_clip.errors import MissingInputError, UserError
from fashion_clip.utils.files import plain_file_name

FORMAT_NAME = "fashion-clip-onnx"
FORMAT_VERSION = 1
MANIFEST_FILE = "model.json"
PREPROCESS_FILE = "preprocess.json"
FINGERPRINT_KEY = "fashion_clip.fingerprint"
TOWER_KEY = "fashion_clip.tower"
TOWERS = ("image", "text")
PREPROCESS_KEYS = ("size", "mode", "resize_mode", "interpolation", "mean", "std", "fill_color", "fingerprint")
# where model.json names the export's files (dotted keys); each must be a plain file name in the directory
FILE_KEYS = ("image_encoder.file", "text_encoder.file", "preprocess", "tokenizer.file")
REEXPORT = "export the model again with `python -m fashion_clip.export format=onnx`"


def encoder_file(tower: str) -> str:
    """`image_encoder.onnx` or `text_encoder.onnx`."""
    return f"{tower}_encoder.onnx"


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Indented, key order kept: people read these files."""
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from the export, or an error naming the file."""
    if not path.is_file():
        raise MissingInputError(
            f"'{path}' is missing: export the model with `python -m fashion_clip.export format=onnx`"
        )
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"cannot read '{path}' ({e}): re-export the model") from e
    if not isinstance(payload, dict):
        raise UserError(f"'{path}' does not hold a JSON object: re-export the model")
    return payload


def is_export(directory: Path) -> bool:
    """Whether `directory` holds an export this code wrote (safe to replace with overwrite=true)."""
    try:
        return read_json(directory / MANIFEST_FILE).get("format") == FORMAT_NAME
    except UserError:
        return False


def check_preprocess(spec: dict[str, Any], path: Path) -> dict[str, Any]:
    """The spec if every key the reference preprocessing needs is there with a value it knows."""
    missing = [key for key in PREPROCESS_KEYS if key not in spec]
    if missing:
        raise UserError(f"'{path}' lacks {', '.join(missing)}: re-export the model")
    if spec["resize_mode"] not in RESIZE_MODES:
        raise UserError(
            f"'{path}': resize_mode={spec['resize_mode']!r} is not one of {', '.join(RESIZE_MODES)}"
        )
    if spec["interpolation"] not in INTERPOLATIONS:
        raise UserError(
            f"'{path}': interpolation={spec['interpolation']!r} is not one of {', '.join(INTERPOLATIONS)}"
        )
    return spec


@dataclass(frozen=True)
class ExportManifest:
    """What `model.json` says, checked: the model, its weights fingerprint and the files beside it."""

    directory: Path
    name: str
    embed_dim: int
    fingerprint: str
    tokenizer: dict[str, Any]
    preprocess: dict[str, Any]
    files: dict[str, str]  # FILE_KEYS -> plain file name in `directory`

    def file_path(self, key: str) -> Path:
        """Where the file model.json names at `key` (one of FILE_KEYS) lies."""
        return self.directory / self.files[key]

    def encoder_path(self, tower: str) -> Path:
        """Where the tower's ONNX file lies."""
        return self.file_path(f"{tower}_encoder.file")


def named_file(manifest: dict[str, Any], key: str, path: Path) -> str:
    """The file name model.json (at `path`) gives at dotted `key`, refused unless a plain name beside it."""
    value: Any = manifest
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return plain_file_name(value, path, key, REEXPORT)


def read_export(directory: str | Path) -> ExportManifest:
    """An export directory's manifest and preprocessing spec, refused when they belong to other weights."""
    directory = Path(directory).expanduser()
    if not directory.is_dir():
        raise MissingInputError(
            f"ONNX export '{directory}' is not a directory: write one with "
            f"`python -m fashion_clip.export format=onnx out={directory}`"
        )
    manifest = read_json(directory / MANIFEST_FILE)
    if manifest.get("format") != FORMAT_NAME or manifest.get("version") != FORMAT_VERSION:
        raise UserError(
            f"'{directory / MANIFEST_FILE}' is not a {FORMAT_NAME} manifest version {FORMAT_VERSION}: "
            f"re-export with this fashion-clip"
        )
    files = {key: named_file(manifest, key, directory / MANIFEST_FILE) for key in FILE_KEYS}
    preprocess_path = directory / files["preprocess"]
    preprocess = check_preprocess(read_json(preprocess_path), preprocess_path)
    check_fingerprint(manifest["fingerprint"], preprocess["fingerprint"], preprocess_path)
    tokenizer = manifest["tokenizer"]
    if tokenizer.get("clean") not in CLEANERS:
        raise UserError(
            f"'{directory / MANIFEST_FILE}': tokenizer.clean={tokenizer.get('clean')!r} is unknown"
        )
    return ExportManifest(
        directory,
        manifest["model"],
        int(manifest["embed_dim"]),
        manifest["fingerprint"],
        tokenizer,
        preprocess,
        files,
    )


def check_fingerprint(expected: str, found: str | None, path: Path) -> None:
    """Refuse a file written for other weights than the manifest's: its embeddings would not match."""
    if found != expected:
        raise UserError(
            f"'{path}' belongs to weights {str(found)[:12]}, {MANIFEST_FILE} to {expected[:12]}: "
            f"the files come from different exports; export the model again into an empty directory"
        )
