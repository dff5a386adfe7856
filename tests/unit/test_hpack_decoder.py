"""FastDecoder decodes exactly what hpack's Decoder decodes, and refuses what it refuses."""

from __future__ import annotations

import random

import pytest
from hpack import Decoder, Encoder, HPACKDecodingError, NeverIndexedHeaderTuple
from hpack.exceptions import InvalidTableIndex, InvalidTableSizeError, OversizedHeaderListError

from provider_api.hpack_decoder import FastDecoder


def _request(rng: random.Random, i: int) -> list[tuple[bytes, bytes] | NeverIndexedHeaderTuple]:
    token = rng.randbytes(32).hex().encode()
    headers: list[tuple[bytes, bytes] | NeverIndexedHeaderTuple] = [
        (b":method", b"POST"),
        (b":scheme", rng.choice([b"https", b"http"])),
        (b":path", b"/3/device/" + token),
        (b":authority", b"api.push.example"),
        NeverIndexedHeaderTuple(b"authorization", b"bearer " + rng.randbytes(90).hex().encode()),
        (b"apns-topic", rng.choice([b"com.example.app", b"com.example.app.voip"])),
        (b"apns-push-type", rng.choice([b"alert", b"voip", b"background"])),
        (b"apns-id", rng.randbytes(16).hex().encode()),
        (b"content-length", str(rng.randint(0, 4096)).encode()),
        (b"x-" + str(i % 7).encode(), rng.randbytes(rng.randint(0, 300))),  # odd bytes, long values
    ]
    rng.shuffle(headers[4:])
    return headers


@pytest.mark.parametrize("huffman", [True, False])
@pytest.mark.parametrize("table_size", [4096, 256, 0])
def test_same_headers_as_hpack_over_a_connection(huffman: bool, table_size: int) -> None:
    """Many blocks through one encoder: the dynamic table fills, evicts and is resized."""
    rng = random.Random(table_size + huffman)
    encoder, slow, fast = Encoder(), Decoder(), FastDecoder()
    for i in range(300):
        if i == 100:
            encoder.header_table_size = table_size  # a size update at the start of the next block
        block = encoder.encode(_request(rng, i), huffman=huffman)
        expected = [(bytes(n), bytes(v)) for n, v in slow.decode(block, raw=True)]
        assert fast.decode(block, raw=True) == expected
        assert list(fast.header_table.dynamic_entries) == list(slow.header_table.dynamic_entries)


def _both_raise(block: bytes, exc: type[Exception], **settings: int) -> None:
    for decoder in (Decoder(), FastDecoder()):
        for name, value in settings.items():
            setattr(decoder, name, value)
        with pytest.raises(exc):
            decoder.decode(block, raw=True)


@pytest.mark.parametrize(
    ("block", "exc"),
    [
        (b"\x80", InvalidTableIndex),  # index 0
        (b"\xff\x80\x01", InvalidTableIndex),  # index beyond both tables
        (b"\xbe", InvalidTableIndex),  # first dynamic entry of an empty table
        (b"\x7f", HPACKDecodingError),  # truncated integer
        (b"\x00\x05ab", HPACKDecodingError),  # name shorter than its length
        (b"\x00\x01a", HPACKDecodingError),  # no value at all
        (b"\x00\x01a\x05ab", HPACKDecodingError),  # value shorter than its length
        (b"\x82\x20", HPACKDecodingError),  # table size update after a field
        (b"\x3f\xe1\x3f", InvalidTableSizeError),  # size update above the allowed maximum
        (b"\x00\x81\xff", HPACKDecodingError),  # Huffman string of EOS padding bits
        (b"\x1f\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", HPACKDecodingError),  # integer far too long
    ],
)
def test_malformed_blocks_are_refused_like_hpack(block: bytes, exc: type[Exception]) -> None:
    _both_raise(block, exc)


def test_oversized_header_list_is_refused() -> None:
    block = Encoder().encode([(b"x-big", b"v" * 200)] * 10)
    _both_raise(block, OversizedHeaderListError, max_header_list_size=1000)
    assert len(FastDecoder().decode(block, raw=True)) == 10


def test_never_indexed_literal_decodes_to_its_name_and_value() -> None:
    block = Encoder().encode([NeverIndexedHeaderTuple(b"authorization", b"bearer x")], huffman=False)
    assert FastDecoder().decode(block, raw=True) == [(b"authorization", b"bearer x")]
