"""Two per-frame costs of hyperframe that the HTTP/2 listener removes.

Both were found with py-spy under h2load (BENCHMARKS.md, provider section)
and both are process-wide patches of hyperframe, applied by ``install()``
when ``provider_api.h2_protocol`` is imported.  Neither changes what a
frame contains or how it is parsed or serialized.

* ``Frame.__repr__``: h2 formats every frame it receives for a trace-level
  log call that its default logger drops (``_receive_frame``:
  ``logger.trace("Received frame: %s", repr(frame))``), i.e. the sorted
  flags and a hex dump of the body, ~4% of the listener's CPU.  Frames now
  print as type and stream id.
* ``Flags.__init__``: every frame builds the set of its type's valid flag
  names from the class's ``defined_flags`` list (~4% of the CPU: a HEADERS
  and a DATA frame per request).  The set is only read (``Flags.add``
  checks membership), so one frozen set per frame type is shared.
"""

from __future__ import annotations

from collections.abc import Sequence

from hyperframe.flags import Flag, Flags
from hyperframe.frame import Frame

# id(defined_flags list) -> (the list itself, kept alive so its id stays unique; its names)
_VALID: dict[int, tuple[Sequence[Flag], frozenset[str]]] = {}


def _short_repr(frame: Frame) -> str:
    return f"{type(frame).__name__}(stream_id={frame.stream_id})"


def _flags_init(self: Flags, defined_flags: Sequence[Flag]) -> None:
    entry = _VALID.get(id(defined_flags))
    if entry is None or entry[0] is not defined_flags:
        entry = _VALID[id(defined_flags)] = (defined_flags, frozenset(flag.name for flag in defined_flags))
    self._valid_flags = entry[1]  # type: ignore[assignment]
    self._flags = set()


def install() -> None:
    """Apply both patches (idempotent)."""
    Frame.__repr__ = _short_repr  # type: ignore[method-assign]
    Flags.__init__ = _flags_init  # type: ignore[method-assign,assignment]
