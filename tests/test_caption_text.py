"""Caption bytes from real catalogues: UTF-8, windows-1252 leftovers, padding and whitespace."""

from __future__ import annotations

from fashion_clip.ingest.items import caption_list, clean_captions, decode_text


def test_utf8_is_kept_and_legacy_bytes_fall_back() -> None:
    assert decode_text("Café".encode()) == ("Café", False)
    assert decode_text(b"\x93soft\x94 caf\xe9\x00\x00") == ("“soft” café", True)
    assert decode_text(b"undefined \x81 byte") == ("undefined \x81 byte", True)
    assert decode_text("already text") == ("already text", False)


def test_captions_are_cleaned_deduplicated_and_ordered() -> None:
    assert clean_captions(["  Red\tshirt ", "", "   ", "Red shirt", "Blue  shirt"]) == (
        "Red shirt",
        "Blue shirt",
    )
    assert caption_list(["a", None, 3]) == ["a", "3"]
    assert caption_list(None) == []
    assert caption_list("one") == ["one"]
