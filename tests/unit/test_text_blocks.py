"""Blocks of whole lines: every line comes out once, in order, intact unless longer than a block (then cut to its
head and named in ``long_lines``), whether read straight from a file or regrouped from gzip pieces."""

from __future__ import annotations

import gzip
import tempfile
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smartmarket.data import text_blocks
from smartmarket.data.text_blocks import BOM, RAW_TEXT_LIMIT, Block, blocks, file_blocks, raw_pieces

BLOCK = 4096


def _lines_of(found: list[Block]) -> tuple[list[bytes], list[int]]:
    """Every line of the blocks (line ends dropped) and the file-wide indices of the cut ones."""
    lines: list[bytes] = []
    cut: list[int] = []
    for block in found:
        text = block.text()
        assert text.endswith(b"\n") and block.end == len(text)
        assert block.count_lines() == text.count(b"\n")
        cut += [len(lines) + i for i in block.long_lines]
        lines += text[:-1].split(b"\n")
    return lines, cut


def _check(found: list[Block], lines: list[bytes]) -> None:
    got, cut = _lines_of(found)
    assert len(got) == len(lines)
    for i, (mine, theirs) in enumerate(zip(got, lines, strict=True)):
        if i in cut:  # longer than a block: its head only
            assert len(theirs) >= BLOCK and mine == theirs[: RAW_TEXT_LIMIT + 1]
        else:
            assert mine == theirs
    assert all(len(lines[i]) >= BLOCK for i in cut)
    assert all(i in cut for i, line in enumerate(lines) if len(line) >= 2 * BLOCK)


line_text = st.one_of(
    st.binary(max_size=60).map(lambda b: b.replace(b"\n", b"")),
    st.integers(min_value=BLOCK - 2, max_value=3 * BLOCK).map(lambda n: b"9" * n),  # about a block or more
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(line_text, min_size=1, max_size=300), bom=st.booleans(), final_newline=st.booleans())
def test_every_line_once_in_order_from_a_file_and_from_gzip(
    monkeypatch: pytest.MonkeyPatch, lines: list[bytes], bom: bool, final_newline: bool
) -> None:
    monkeypatch.setattr(text_blocks, "BLOCK_BYTES", BLOCK)
    monkeypatch.setattr(text_blocks, "READ_BYTES", 700)
    content = (BOM if bom else b"") + b"\n".join(lines) + (b"\n" if final_newline else b"")
    text = content[len(BOM) :] if content.startswith(BOM) else content  # a BOM opening the file is dropped
    expected = text.split(b"\n")[:-1] if text.endswith(b"\n") else text.split(b"\n")
    with tempfile.TemporaryDirectory() as tmp:
        plain, packed = Path(tmp) / "x.csv", Path(tmp) / "x.csv.gz"
        plain.write_bytes(content)
        packed.write_bytes(gzip.compress(content))
        if text:
            _check(list(file_blocks(plain, None)), expected)
            _check(list(blocks(raw_pieces(packed, "gzip", None))), expected)
        else:
            assert list(file_blocks(plain, None)) == list(blocks(raw_pieces(packed, "gzip", None))) == []


def test_a_block_ends_at_its_last_line_end_and_the_rest_is_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(text_blocks, "BLOCK_BYTES", 10)
    path = tmp_path / "x.csv"
    path.write_bytes(b"1234\n5678\n9\n")
    found = list(file_blocks(path, None))
    assert [b.text() for b in found] == [b"1234\n5678\n", b"9\n"]
    assert found[0].data == b"1234\n5678\n"  # a whole read: nothing after end


def test_gzip_is_inflated_by_isal_when_installed_and_by_zlib_otherwise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("isal")
    assert text_blocks._inflate.__name__.endswith("isal_zlib")  # the dependency is what makes gzip ingest fast
    path = tmp_path / "x.csv.gz"
    body = b"".join(b"%d,1,2,0.5,1.5,10\n" % i for i in range(50_000))
    path.write_bytes(gzip.compress(body[:300_000]) + gzip.compress(body[300_000:]))  # two gzip members
    fast = b"".join(raw_pieces(path, "gzip", None))
    monkeypatch.setattr(text_blocks, "_inflate", zlib)
    assert b"".join(raw_pieces(path, "gzip", None)) == fast == body


def test_truncated_or_corrupt_gzip_raises_a_read_error(tmp_path: Path) -> None:
    data = gzip.compress(b"1,2,3,4,5,6\n" * 10_000)
    for name, content in (("cut.csv.gz", data[: len(data) // 2]), ("bad.csv.gz", data[:20] + b"\x00" * 200)):
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(text_blocks.READ_ERRORS):
            b"".join(raw_pieces(path, "gzip", None))
