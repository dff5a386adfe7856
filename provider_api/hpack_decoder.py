"""A leaner HPACK header-block decoder for the HTTP/2 listener (RFC 7541).

``hpack.Decoder.decode`` was ~15% of an API process's CPU under h2load
(py-spy, BENCHMARKS.md): per header it slices memoryviews, builds a
``HeaderTuple``, logs at debug level, and at the end copies every name and
value once more (``_unicode_if_needed``, even when h2 asks for raw bytes).
``FastDecoder`` decodes the same wire format in one pass over ``bytes``
and returns plain ``(name, value)`` byte tuples, which is all h2 and
``h2_protocol`` read.  The server therefore loses the never-indexed flag of
a header; it only matters to an encoder, and we never re-encode a request.

What stays hpack's: the dynamic table (``HeaderTable``: indexing, eviction,
size updates), its exceptions (h2 turns them into a COMPRESSION_ERROR
connection error), the ``max_header_list_size`` and table-size limits as
h2 sets them, and Huffman decoding (through ``hpack_cache``).  A test
(tests/unit/test_hpack_decoder.py) decodes the same blocks with both.
"""

from __future__ import annotations

from hpack import Decoder
from hpack.exceptions import HPACKDecodingError, InvalidTableSizeError, OversizedHeaderListError

from provider_api.hpack_cache import cached_decode_huffman

#: Longer integer encodings are refused (hpack allows 10 continuation bytes;
#: no header index or length in a valid block needs more than 4).
_MAX_CONTINUATION = 4


def _integer(data: bytes, pos: int, prefix_max: int) -> tuple[int, int]:
    """The integer whose prefix byte is at ``pos`` (RFC 7541 5.1); returns it and the next position."""
    value = data[pos] & prefix_max
    pos += 1
    if value < prefix_max:
        return value, pos
    shift = 0
    while True:
        if pos >= len(data):
            raise HPACKDecodingError("truncated integer")
        byte = data[pos]
        pos += 1
        value += (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
        if shift > 7 * _MAX_CONTINUATION:
            raise HPACKDecodingError("integer representation too long")


def _string(data: bytes, pos: int) -> tuple[bytes, int]:
    """The string literal at ``pos`` (RFC 7541 5.2), Huffman-decoded if flagged."""
    if pos >= len(data):
        raise HPACKDecodingError("truncated header block")
    huffman = data[pos] & 0x80
    length, pos = _integer(data, pos, 0x7F)
    end = pos + length
    if end > len(data):
        raise HPACKDecodingError("truncated header block")
    raw = data[pos:end]
    return (cached_decode_huffman(raw) if huffman else raw), end


class FastDecoder(Decoder):
    """``hpack.Decoder`` with a one-pass ``decode`` (see module doc)."""

    def decode(self, data: bytes, raw: bool = False) -> list[tuple[bytes, bytes]]:  # type: ignore[override]
        if not raw:  # h2 always asks for bytes; anything else gets hpack's own
            return super().decode(data, raw)  # type: ignore[return-value]
        data = bytes(data)
        table = self.header_table
        get = table.get_by_index
        limit = self.max_header_list_size
        headers: list[tuple[bytes, bytes]] = []
        size = 0
        pos, end = 0, len(data)
        while pos < end:
            first = data[pos]
            if first & 0x80:  # indexed field
                index, pos = _integer(data, pos, 0x7F)
                name, value = get(index)
            elif first & 0x40:  # literal with incremental indexing
                index, pos = _integer(data, pos, 0x3F)
                if index:
                    name = get(index)[0]
                else:
                    name, pos = _string(data, pos)
                value, pos = _string(data, pos)
                table.add(name, value)
            elif first & 0x20:  # dynamic table size update: only before the first field
                if headers:
                    raise HPACKDecodingError("Table size update not at the start of the block")
                new_size, pos = _integer(data, pos, 0x1F)
                if new_size > self.max_allowed_table_size:
                    raise InvalidTableSizeError("Encoder exceeded max allowable table size")
                table.maxsize = new_size
                continue
            else:  # literal without indexing, or never indexed
                index, pos = _integer(data, pos, 0x0F)
                if index:
                    name = get(index)[0]
                else:
                    name, pos = _string(data, pos)
                value, pos = _string(data, pos)
            headers.append((name, value))
            size += 32 + len(name) + len(value)
            if size > limit:
                raise OversizedHeaderListError(f"A header list larger than {limit} has been received")
        if table.maxsize > self.max_allowed_table_size:
            raise InvalidTableSizeError("Encoder did not shrink table size to within the max")
        return headers
