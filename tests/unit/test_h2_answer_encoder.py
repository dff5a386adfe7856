"""The HTTP/2 listener's fast HPACK path for "200 + apns-id" decodes like hpack's own."""

from __future__ import annotations

from hpack import Decoder

from provider_api.h2_protocol import _AnswerEncoder

ID = b"0a9c1a5e-5c2f-4d1e-9a47-7f3b2c1d0e9f"


def test_answers_and_other_blocks_interleaved_decode_in_step() -> None:
    enc, dec = _AnswerEncoder(), Decoder()
    blocks = [
        [(b":status", b"200"), (b"apns-id", ID)],
        [(b":status", b"400"), (b"apns-id", ID), (b"content-type", b"application/json")],
        [(b":status", b"200"), (b"apns-id", ID.upper())],
        [(b":status", b"400"), (b"apns-id", ID), (b"content-type", b"application/json")],  # from the table now
    ]
    for headers in blocks:
        assert dec.decode(enc.encode(list(headers)), raw=True) == headers
    assert enc.encode([(b":status", b"200"), (b"apns-id", ID)]) == b"\x88\x00\x07apns-id\x24" + ID


def test_a_pending_table_size_update_is_still_sent() -> None:
    enc, dec = _AnswerEncoder(), Decoder()
    dec.decode(enc.encode([(b":status", b"400"), (b"content-type", b"application/json")]), raw=True)
    enc.header_table_size = 0  # the peer's SETTINGS_HEADER_TABLE_SIZE changed
    block = enc.encode([(b":status", b"200"), (b"apns-id", ID)])
    assert block[:1] == b"\x20"  # dynamic table size update to 0 comes first
    assert dec.decode(block, raw=True) == [(b":status", b"200"), (b"apns-id", ID)]
    assert len(dec.header_table.dynamic_entries) == 0
