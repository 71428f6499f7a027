"""`trainer.precision`'s automatic choice: bf16 only where the CPU runs it natively."""

from __future__ import annotations

import pytest
import torch

from fashion_clip.config import auto_precision


@pytest.mark.parametrize(
    ("avx512_bf16", "amx", "expected"),
    [(False, False, "32-true"), (True, False, "bf16-mixed"), (False, True, "bf16-mixed")],
)
def test_cpu_precision_follows_native_bf16(monkeypatch, avx512_bf16: bool, amx: bool, expected: str) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)  # plain AVX-512 says so
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    assert auto_precision("auto") == expected
    assert auto_precision("cpu") == expected


def test_a_gpu_trains_in_16_mixed() -> None:
    assert auto_precision("gpu") == "16-mixed"
