"""A cache of Huffman-decoded HPACK strings for the HTTP/2 listener.

APNs clients send the same long header values on every request without
letting HPACK index them: h2 (aioapns) and nghttp2 mark ``authorization``
never-indexed, so the ~200-byte provider JWT arrives as a fresh Huffman
literal on each request, as does ``:path`` with the device token.  The
``hpack`` package decodes Huffman strings nibble by nibble in Python; under
h2load that was ~12% of an API process's CPU (py-spy, see BENCHMARKS.md).

``decode_huffman`` is a pure function of its input, so a bounded dict turns
each repeat into one lookup.  ``install()`` swaps the cached version into
``hpack.hpack``, where the decoder looks the function up at call time; it
applies to every hpack decoder of the process, which is harmless because
the answers are identical.

Bounded memory: at most ``MAX_ENTRIES`` strings of at most ``MAX_LEN``
encoded bytes (~5 MiB worst case); when full the cache is emptied, so a
client sending random values costs a refill, never growth.  Invalid input
raises as before and is not cached.
"""

from __future__ import annotations

import hpack.hpack as _hpack
from hpack.huffman_table import decode_huffman as _decode_huffman

MAX_ENTRIES = 4096
MAX_LEN = 512  # encoded bytes: a JWT (~150 after Huffman) and a path fit

_cache: dict[bytes, bytes] = {}


def cached_decode_huffman(data: bytes | bytearray | memoryview | None) -> bytes:
    if not data:
        return b""
    if len(data) > MAX_LEN:
        return _decode_huffman(data)
    key = bytes(data)  # the decoder passes bytes: no copy then
    hit = _cache.get(key)
    if hit is None:
        hit = _decode_huffman(key)
        if len(_cache) >= MAX_ENTRIES:
            _cache.clear()
        _cache[key] = hit
    return hit


def install() -> None:
    """Make hpack's decoder use the cache (idempotent)."""
    _hpack.decode_huffman = cached_decode_huffman  # type: ignore[assignment]
