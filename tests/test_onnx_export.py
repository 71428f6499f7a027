"""ONNX export: towers, preprocess.json and tokenizer reproduce the torch model; index and search on it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import open_clip
import pytest
import torch
from helpers.hf_tokenizer import shard_captions
from helpers.python_subprocess import run_python
from helpers.search_index import load_tiny
from helpers.tiny_model import TINY, save_tiny_weights, save_trained_lora_tiny
from open_clip.transform import PreprocessCfg, image_transform_v2
from PIL import Image

from fashion_clip.deploy.export import export_onnx_directory
from fashion_clip.deploy.export_files import FINGERPRINT_KEY, PREPROCESS_FILE, encoder_file, read_export
from fashion_clip.deploy.image_preprocess import preprocess
from fashion_clip.deploy.model_loader import load_clip
from fashion_clip.deploy.onnx_bundle import OnnxTowers, onnx_bundle
from fashion_clip.deploy.onnx_export import ExportError, preprocess_settings, refuse_existing_export
from fashion_clip.deploy.runtime import OnnxClip
from fashion_clip.deploy.text_tokenizer import CLEANERS, TextTokenizer
from fashion_clip.deploy.tokenizer_export import export_tokenizer
from fashion_clip.errors import ConfigError, UserError
from fashion_clip.evaluation.full import full_protocol
from fashion_clip.models.factory import create_tokenizer
from fashion_clip.models.identity import weights_fingerprint
from fashion_clip.models.lora import LoraSettings
from fashion_clip.retrieval.embedding import embed_catalogue
from fashion_clip.retrieval.index_file import build_index, open_catalogue
from fashion_clip.retrieval.query_model import build_query_model
from fashion_clip.retrieval.search import encode_text_query, search

TRICKY_TEXTS = [
    "Black leather ankle boots",
    "  RED   dress,   with <b>lace</b> &amp; pockets!! ",
    "Ça va? naïve café 123 4.5cm",
    "it's a don't they're",
    "word " * 60,
    "",
    "émoji 👗 dress",
    "â€™ mojibake",
]
PARITY_TOLERANCE = 1e-4
TIE = 1e-6


def rgb_image(width: int, height: int, seed: int, mode: str = "RGB") -> Image.Image:
    """Random pixels in any size and colour mode, to reach every branch of the resize arithmetic."""
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, channels), dtype=np.uint8)
    return Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels, mode)


@pytest.mark.parametrize(
    "cfg",
    [
        PreprocessCfg(size=64, resize_mode="shortest", interpolation="bicubic"),
        PreprocessCfg(size=(48, 64), resize_mode="shortest", interpolation="bilinear"),
        PreprocessCfg(size=(64, 64), resize_mode="squash", interpolation="bilinear", mean=(0.5,) * 3),
        PreprocessCfg(size=(64, 48), resize_mode="longest", interpolation="bicubic", fill_color=128),
        PreprocessCfg(size=224, resize_mode="shortest", interpolation="bilinear"),
    ],
    ids=["shortest", "shortest-nonsquare", "squash", "longest-pad", "upscale"],
)
@pytest.mark.parametrize(
    "size", [(96, 96), (300, 97), (41, 203), (20, 30), (65, 64)], ids=lambda s: f"{s[0]}x{s[1]}"
)
def test_pil_numpy_preprocessing_equals_open_clips_eval_transform(cfg: PreprocessCfg, size) -> None:
    transform = image_transform_v2(cfg, is_train=False)
    for seed, mode in enumerate(("RGB", "RGBA", "L")):
        image = rgb_image(*size, seed=seed, mode=mode)
        expected = transform(image).numpy()
        got = preprocess(image, preprocess_settings(cfg))
        assert got.dtype == np.float32 and got.shape == expected.shape
        np.testing.assert_allclose(got, expected, atol=1e-6, rtol=0)


def readme_snippet() -> str:
    """The PIL + numpy preprocessing the deployment guide shows, as code."""
    text = (Path(__file__).parents[1] / "docs" / "deployment.md").read_text(encoding="utf-8")
    start = text.index("```python\n# preprocess.json -> the image encoder's input")
    return text[start + len("```python\n") : text.index("```", start + 10)]


@pytest.mark.parametrize("resize_mode", ["shortest", "squash"])
def test_readme_snippet_reproduces_the_eval_transform(resize_mode: str) -> None:
    namespace: dict = {}
    exec(readme_snippet(), namespace)  # noqa: S102 - our own README, checked so it stays true
    cfg = PreprocessCfg(size=64, resize_mode=resize_mode, interpolation="bicubic")
    spec = preprocess_settings(cfg)
    for seed, size in enumerate([(300, 97), (41, 203), (64, 64)]):
        image = rgb_image(*size, seed=seed)
        expected = image_transform_v2(cfg, is_train=False)(image).numpy()
        np.testing.assert_allclose(namespace["preprocess"](image, spec)[0], expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", list(CLEANERS))
def test_cleaning_equals_open_clips(name: str) -> None:
    reference = open_clip.tokenizer.get_clean_fn(name)
    assert [CLEANERS[name](t) for t in TRICKY_TEXTS] == [reference(t) for t in TRICKY_TEXTS]


@pytest.mark.parametrize("name", [TINY, "ViT-B-32"])
def test_bpe_tokenizer_file_gives_open_clips_token_ids(
    name: str, small_catalogue: Path, tmp_path: Path
) -> None:
    reference = create_tokenizer(name)
    spec = export_tokenizer(reference, tmp_path)
    texts = TRICKY_TEXTS + list(shard_captions(small_catalogue / "demo" / "test"))
    got = TextTokenizer(tmp_path / spec["file"], spec)(texts)
    assert got.dtype == np.int64 and got.shape == (len(texts), spec["context_length"])
    np.testing.assert_array_equal(got, reference(texts).numpy())


@pytest.mark.parametrize("clean", ["canonicalize", "whitespace"])
def test_hugging_face_tokenizer_file_gives_open_clips_token_ids(
    clean: str, stand_in_tokenizer: Path, small_catalogue: Path, tmp_path: Path
) -> None:
    reference = open_clip.tokenizer.HFTokenizer(str(stand_in_tokenizer), context_length=16, clean=clean)
    spec = export_tokenizer(reference, tmp_path)
    assert spec["kind"] == "huggingface" and spec["clean"] == clean
    texts = TRICKY_TEXTS + list(shard_captions(small_catalogue / "demo" / "test"))
    np.testing.assert_array_equal(
        TextTokenizer(tmp_path / spec["file"], spec)(texts), reference(texts).numpy()
    )


def test_existing_out_is_kept_and_only_an_export_is_replaced(tmp_path: Path) -> None:
    mine = tmp_path / "notes"
    mine.mkdir()
    (mine / "todo.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="already exists"):
        refuse_existing_export(mine, overwrite=False)
    with pytest.raises(ConfigError, match="not an ONNX export"):
        refuse_existing_export(mine, overwrite=True)
    assert (mine / "todo.txt").read_text() == "keep me"


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A random-init tiny model's weights and their ONNX export directory."""
    root = tmp_path_factory.mktemp("onnx")
    ckpt = save_tiny_weights(root / "tiny.pt", seed=0)
    return ckpt, export_onnx_directory(TINY, ckpt, root / "exported")


@pytest.mark.slow
def test_export_writes_checked_files_that_describe_the_model(exported: tuple[Path, Path]) -> None:
    ckpt, out = exported
    assert sorted(p.name for p in out.iterdir()) == [
        "image_encoder.onnx",
        "model.json",
        "preprocess.json",
        "text_encoder.onnx",
        "tokenizer.json",
    ]
    manifest = json.loads((out / "model.json").read_text())
    bundle, identity = load_tiny(ckpt)
    assert manifest["model"] == TINY and manifest["embed_dim"] == 128
    assert manifest["fingerprint"] == identity.fingerprint  # an index of the torch model accepts it
    assert manifest["tokenizer"] | {"file": None} == {
        "file": None,
        "kind": "open_clip_bpe",
        "context_length": 32,
        "clean": "lower",
        "pad_id": 0,
    }
    spec = json.loads((out / PREPROCESS_FILE).read_text())
    assert preprocess_settings(PreprocessCfg(**bundle.model.visual.preprocess_cfg)).items() <= spec.items()
    for tower in ("image", "text"):
        model = onnx.load(str(out / encoder_file(tower)))
        onnx.checker.check_model(model, full_check=True)
        assert {p.key: p.value for p in model.metadata_props}[FINGERPRINT_KEY] == identity.fingerprint
        assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # a named, dynamic batch axis


@pytest.mark.slow
def test_onnxruntime_matches_torch_and_ranks_the_demo_split_identically(
    exported: tuple[Path, Path], small_catalogue: Path
) -> None:
    ckpt, out = exported
    torch_bundle, _ = load_tiny(ckpt)
    split = small_catalogue / "demo" / "train"
    embedded = {
        name: embed_catalogue(b.model, b.tokenizer, open_catalogue(str(split), b.val_transform), 32, 0)
        for name, b in (("torch", torch_bundle), ("onnx", onnx_bundle(out)))
    }
    ref, got = embedded["torch"], embedded["onnx"]
    assert len(got.images) > 100 and len(got.captions) > 50
    assert (got.image_features - ref.image_features).abs().max() <= PARITY_TOLERANCE
    assert (got.caption_features - ref.caption_features).abs().max() <= PARITY_TOLERANCE
    assert full_protocol(got) == full_protocol(ref)
    t2i = ref.caption_features @ ref.image_features.T
    for reference, onnx_scores in ((t2i, got.caption_features @ got.image_features.T), (t2i.T, None)):
        onnx_scores = got.image_features @ got.caption_features.T if onnx_scores is None else onnx_scores
        expected, ranked = (s.argsort(dim=1, descending=True) for s in (reference, onnx_scores))
        assert torch.equal(ranked[:, :10], expected[:, :10])
        # beyond the top 10, the orders differ only where two items tie within float32 noise
        assert torch.allclose(reference.gather(1, ranked), reference.gather(1, expected), atol=TIE, rtol=0)


@pytest.mark.slow
def test_runtime_embeds_without_torch(exported: tuple[Path, Path], tmp_path: Path) -> None:
    ckpt, out = exported
    bundle, _ = load_tiny(ckpt)
    image = rgb_image(80, 120, seed=3)
    image.save(tmp_path / "query.png")
    with torch.no_grad():
        expected_image = bundle.model.encode_image(bundle.val_transform(image)[None], normalize=True)
        expected_text = bundle.model.encode_text(bundle.tokenizer(["red wool coat"]), normalize=True)
    script = f"""
import sys
class NoTorch:
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] == "torch":
            raise ImportError("torch is not installed here")
sys.meta_path.insert(0, NoTorch())
import numpy as np
from PIL import Image
from fashion_clip.deploy.runtime import OnnxClip
clip = OnnxClip({str(out)!r})
np.save({str(tmp_path / "image.npy")!r}, clip.embed_images([Image.open({str(tmp_path / "query.png")!r})]))
np.save({str(tmp_path / "text.npy")!r}, clip.embed_texts(["red wool coat"]))
assert not any(m.split(".")[0] == "torch" for m in sys.modules)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    np.testing.assert_allclose(np.load(tmp_path / "image.npy"), expected_image.numpy(), atol=PARITY_TOLERANCE)
    np.testing.assert_allclose(np.load(tmp_path / "text.npy"), expected_text.numpy(), atol=PARITY_TOLERANCE)


@pytest.mark.slow
def test_files_of_another_export_are_refused(exported: tuple[Path, Path], tmp_path: Path) -> None:
    _, out = exported
    mixed = shutil.copytree(out, tmp_path / "mixed")
    spec = json.loads((mixed / PREPROCESS_FILE).read_text())
    (mixed / PREPROCESS_FILE).write_text(json.dumps(spec | {"fingerprint": "f" * 64}))
    with pytest.raises(UserError, match="preprocess.json' belongs to weights ffffffffffff"):
        read_export(mixed)
    shutil.copy(out / PREPROCESS_FILE, mixed / PREPROCESS_FILE)
    text = onnx.load(str(mixed / encoder_file("text")))
    next(p for p in text.metadata_props if p.key == FINGERPRINT_KEY).value = "0" * 64
    onnx.save(text, str(mixed / encoder_file("text")))
    with pytest.raises(UserError, match="text_encoder.onnx' belongs to weights 000000000000"):
        OnnxClip(mixed)


@pytest.mark.slow
def test_index_and_search_run_on_the_export_and_match_torch(
    exported: tuple[Path, Path], small_catalogue: Path, tmp_path: Path
) -> None:
    ckpt, out = exported
    torch_bundle, identity = load_tiny(ckpt)
    source = small_catalogue / "demo" / "test"
    torch_index = build_index(
        torch_bundle, open_catalogue(str(source), torch_bundle.val_transform), identity, str(source), 16, 0
    )
    query_model = build_query_model(torch_index.model, onnx=str(out))  # fingerprints agree: accepted
    query = encode_text_query(query_model, "black leather ankle boots")
    expected = encode_text_query(torch_bundle, "black leather ankle boots")
    assert (query - expected).abs().max() <= PARITY_TOLERANCE
    hits, reference = search(torch_index, query, 5), search(torch_index, expected, 5)
    assert [h.record.product_id for h in hits] == [h.record.product_id for h in reference]

    other = save_tiny_weights(tmp_path / "other.pt", seed=1)
    other_bundle, other_identity = load_tiny(other)
    other_index = build_index(
        other_bundle,
        open_catalogue(str(source), other_bundle.val_transform),
        other_identity,
        str(source),
        16,
        0,
    )
    with pytest.raises(ConfigError, match=r"onnx="):
        build_query_model(other_index.model, onnx=str(out))


@pytest.mark.slow
def test_the_loader_opens_an_export_under_the_identity_of_the_weights_it_came_from(
    exported: tuple[Path, Path], tmp_path: Path
) -> None:
    ckpt, out = exported
    _, torch_identity = load_tiny(ckpt)
    relative = load_clip(onnx=out.name, root=out.parent)  # an `onnx=` path is read from the launch dir
    assert isinstance(relative.bundle.model, OnnxTowers) and relative.ckpt_path is None
    assert relative.identity.fingerprint == torch_identity.fingerprint
    assert relative.identity.config == {"name": TINY, "onnx": str(out.resolve())}
    assert relative.identity.embed_dim == torch_identity.embed_dim
    tokens = relative.bundle.tokenizer(["red dress"])
    assert relative.bundle.model.encode_text(tokens).shape == (1, torch_identity.embed_dim)


@pytest.mark.slow
def test_index_cli_with_onnx_then_search_cli_uses_it(
    exported: tuple[Path, Path], small_catalogue: Path, tmp_path: Path
) -> None:
    ckpt, out = exported
    made = run_python(
        "-m",
        "fashion_clip.index",
        f"source={small_catalogue / 'demo' / 'test'}",
        f"onnx={out}",
        "out=index.pt",
        "evaluation.num_workers=0",
        f"hydra.run.dir={tmp_path / 'run'}",
        cwd=tmp_path,
    )
    assert made.returncode == 0, made.stderr
    found = run_python(
        "-m", "fashion_clip.search", "red dress", "--index", "index.pt", "--k", "3", cwd=tmp_path
    )
    assert found.returncode == 0, found.stderr
    assert f"onnx={out}" in found.stdout.replace("\n", "") and found.stdout.count("demo-") >= 3
    with pytest.raises(ConfigError, match="give onnx= or ckpt_path=, not both"):
        load_clip(None, ckpt, onnx=out)


@pytest.mark.slow
def test_an_operator_without_onnx_translation_is_named_with_the_model(tmp_path: Path) -> None:
    @torch.library.custom_op("fashion_clip_test::mystery_norm", mutates_args=())
    def mystery_norm(x: torch.Tensor) -> torch.Tensor:
        return x.clone()

    mystery_norm.register_fake(lambda x: torch.empty_like(x))
    ckpt = save_tiny_weights(tmp_path / "tiny.pt", seed=0)
    original = open_clip.CLIP.encode_image

    def encode_image(self, image, normalize=False):
        return mystery_norm(original(self, image, normalize))

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(open_clip.CLIP, "encode_image", encode_image)
        with pytest.raises(
            ExportError, match=r"image tower of FashionCLIP-Tiny.*fashion_clip_test\.mystery_norm"
        ):
            export_onnx_directory(TINY, ckpt, tmp_path / "exported")
    assert not (tmp_path / "exported").exists() and not list(tmp_path.glob(".exported*"))


@pytest.mark.slow
def test_a_lora_checkpoint_is_merged_and_keeps_the_fingerprint_its_index_records(tmp_path: Path) -> None:
    lora = LoraSettings(enabled=True, targets=("mlp.c_fc", "mlp.c_proj"))
    adapted, ckpt = save_trained_lora_tiny(tmp_path / "lora.pt", lora)
    clip = OnnxClip(export_onnx_directory(TINY, ckpt, tmp_path / "exported", lora=lora))
    assert clip.manifest.fingerprint == weights_fingerprint(adapted)
    image = rgb_image(64, 64, seed=5)
    tokenizer = create_tokenizer(TINY)
    with torch.no_grad():
        expected_image = adapted.encode_image(torch.from_numpy(clip.preprocess(image))[None], normalize=True)
        expected_text = adapted.encode_text(tokenizer(["blue denim jacket"]), normalize=True)
    np.testing.assert_allclose(clip.embed_images([image]), expected_image.numpy(), atol=PARITY_TOLERANCE)
    np.testing.assert_allclose(
        clip.embed_texts(["blue denim jacket"]), expected_text.numpy(), atol=PARITY_TOLERANCE
    )
