"""The benchmark page: a section is replaced in place, others are kept."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import __main__ as page


def test_section_replaced_others_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(page, "PAGE", tmp_path / "BENCHMARKS.md")
    page.write_section("eif", "first eif")
    page.write_section("copy", "copy figures")
    page.write_section("eif", "second eif")
    text = (tmp_path / "BENCHMARKS.md").read_text()

    assert "second eif" in text
    assert "first eif" not in text
    assert "copy figures" in text
    assert text.count("<!-- bench:eif -->") == 1
