"""The capped gzip inflater shared by our gateway and the ingest service, against hostile
bodies: several members, empty members, headers with every optional field, truncation, bytes
after the last member, bombs of one member and of many, and bytes arriving one at a time."""

from __future__ import annotations

import gzip
import random
import struct
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.gzip_inflater import BodyTooLarge, GzipError, GzipInflater, inflate

LIMIT = 64 * 1024
A = b'{"n": 1}\n' * 50
B = b'{"n": 2}\n' * 70


def _member_with_every_header_field(payload: bytes) -> bytes:
    """A gzip member with FEXTRA, FNAME, FCOMMENT and FHCRC set, which gzip.compress never
    writes (RFC 1952, 2.3)."""
    flags = 0x04 | 0x08 | 0x10 | 0x02  # FEXTRA, FNAME, FCOMMENT, FHCRC
    header = b"\x1f\x8b\x08" + bytes([flags]) + struct.pack("<I", 0) + b"\x00\xff"
    extra = b"AB" + struct.pack("<H", 3) + b"xyz"
    header += struct.pack("<H", len(extra)) + extra + b"events.ndjson\x00" + b"a comment\x00"
    header += struct.pack("<H", zlib.crc32(header) & 0xFFFF)
    deflate = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    body = deflate.compress(payload) + deflate.flush()
    return header + body + struct.pack("<II", zlib.crc32(payload), len(payload) & 0xFFFFFFFF)


def _trickled(data: bytes, limit: int = LIMIT) -> bytes:
    inflater = GzipInflater(limit)
    out = b"".join(inflater.feed(data[i : i + 1]) for i in range(len(data)))
    inflater.finish()
    return out


VALID = {
    "one member": (gzip.compress(A), A),
    "two members (cat a.gz b.gz)": (gzip.compress(A) + gzip.compress(B), A + B),
    "three members, one empty": (
        gzip.compress(A) + gzip.compress(b"") + gzip.compress(B),
        A + B,
    ),
    "an empty member first": (gzip.compress(b"") + gzip.compress(A), A),
    "only an empty member": (gzip.compress(b""), b""),
    "no bytes at all": (b"", b""),
    "every optional header field": (_member_with_every_header_field(A), A),
    "optional header fields on the second member": (
        gzip.compress(A) + _member_with_every_header_field(B),
        A + B,
    ),
    "exactly at the limit": (gzip.compress(b"x" * LIMIT), b"x" * LIMIT),
}


@pytest.mark.parametrize("case", list(VALID))
def test_every_member_is_kept_whole_or_trickled(case: str) -> None:
    body, expected = VALID[case]
    assert inflate(body, LIMIT) == expected
    assert _trickled(body) == expected


@given(st.lists(st.integers(min_value=1, max_value=200), max_size=30))
def test_any_split_of_the_bytes_inflates_alike(cuts: list[int]) -> None:
    body = gzip.compress(A) + _member_with_every_header_field(B) + gzip.compress(A)
    inflater = GzipInflater(LIMIT)
    out, at = [], 0
    for size in cuts:
        out.append(inflater.feed(body[at : at + size]))
        at += size
    out.append(inflater.feed(body[at:]))
    inflater.finish()
    assert b"".join(out) == A + B + A


MEMBER = gzip.compress(A)
CORRUPT = {
    "not gzip at all": b"this is not gzip",
    "garbage after a member": MEMBER + b"garbage",
    "zero padding after a member": MEMBER + b"\0" * 8,
    "one stray byte after a member": MEMBER + b"x",
    "a magic number, then garbage": MEMBER + b"\x1f\x8b" + b"garbage-garbage",
    "a bad checksum": MEMBER[:-8] + bytes([MEMBER[-8] ^ 0xFF]) + MEMBER[-7:],
    "a wrong length in the trailer": MEMBER[:-4] + struct.pack("<I", len(A) + 1),
}
TRUNCATED = {
    "cut inside the header": MEMBER[:5],
    "cut inside the data": MEMBER[: len(MEMBER) // 2],
    "cut inside the trailer": MEMBER[:-1],
    "one byte of a second member": MEMBER + b"\x1f",
    "half a second member": MEMBER + MEMBER[: len(MEMBER) // 2],
}


@pytest.mark.parametrize("case", list(CORRUPT))
def test_anything_that_is_not_a_member_is_refused(case: str) -> None:
    with pytest.raises(GzipError):
        inflate(CORRUPT[case], LIMIT)
    with pytest.raises(GzipError):
        _trickled(CORRUPT[case])


@pytest.mark.parametrize("case", list(TRUNCATED))
def test_a_truncated_body_is_refused_at_its_end(case: str) -> None:
    inflater = GzipInflater(LIMIT)
    inflater.feed(TRUNCATED[case])  # nothing wrong yet: more may come
    with pytest.raises(GzipError, match="truncated"):
        inflater.finish()


def test_trailing_garbage_is_refused_when_it_starts_not_when_it_ends() -> None:
    inflater = GzipInflater(LIMIT)
    assert inflater.feed(MEMBER) == A
    # The first stray byte is enough: nothing after it needs to arrive.
    with pytest.raises(GzipError, match="not another member"):
        inflater.feed(b"G")


def test_the_first_error_names_what_zlib_found() -> None:
    with pytest.raises(GzipError) as caught:
        inflate(b"this is not gzip", LIMIT)
    assert str(caught.value) == (
        "request body is not valid gzip: Error -3 while decompressing data: incorrect header check"
    )


def test_a_bomb_is_cut_off_one_byte_past_the_limit() -> None:
    bomb = gzip.compress(b"\0" * (LIMIT * 1000))
    inflater = GzipInflater(LIMIT)
    with pytest.raises(BodyTooLarge) as caught:
        inflater.feed(bomb)
    assert inflater.inflated == LIMIT + 1
    assert str(caught.value) == f"request body exceeds the limit of {LIMIT} bytes"


def test_a_bomb_of_many_members_is_cut_off_too() -> None:
    half = gzip.compress(b"\0" * (LIMIT // 2))
    assert inflate(half * 2, LIMIT) == b"\0" * LIMIT
    with pytest.raises(BodyTooLarge):
        inflate(half * 3, LIMIT)


def test_one_byte_over_the_limit_is_too_large() -> None:
    with pytest.raises(BodyTooLarge):
        _trickled(gzip.compress(b"x" * (LIMIT + 1)))


def test_the_compressed_size_is_capped_even_when_it_inflates_to_little() -> None:
    # Random bytes grow under gzip; empty members inflate to nothing at all.
    noise = gzip.compress(random.Random(1).randbytes(LIMIT))
    empties = gzip.compress(b"") * (LIMIT // len(gzip.compress(b"")) + 1)
    for body in (noise, empties):
        assert len(body) > LIMIT
        inflater = GzipInflater(LIMIT)
        with pytest.raises(BodyTooLarge):
            inflater.feed(body)
        assert inflater.inflated < LIMIT
