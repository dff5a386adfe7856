"""hyperframe with the listener's patches: frames parse, serialize and check flags as before."""

from __future__ import annotations

import pytest
from hyperframe.frame import DataFrame, Frame, HeadersFrame, SettingsFrame

import provider_api.h2_protocol  # noqa: F401  (installs the patches)


def test_frames_round_trip_with_their_flags() -> None:
    for frame in (
        HeadersFrame(1, b"\x82", flags=["END_HEADERS", "END_STREAM"]),
        DataFrame(3, b"body", flags=["PADDED"]),
    ):
        wire = frame.serialize()
        parsed, length = Frame.parse_frame_header(memoryview(wire[:9]))
        parsed.parse_body(memoryview(wire[9 : 9 + length]))
        assert type(parsed) is type(frame) and parsed.stream_id == frame.stream_id
        assert set(parsed.flags) == set(frame.flags) and parsed.data == frame.data


def test_each_frame_type_keeps_its_own_valid_flags() -> None:
    HeadersFrame(1).flags.add("PRIORITY")
    with pytest.raises(ValueError, match="Unexpected flag"):
        DataFrame(1).flags.add("PRIORITY")  # a HEADERS flag, not a DATA flag
    with pytest.raises(ValueError, match="Unexpected flag"):
        SettingsFrame(0).flags.add("END_STREAM")
    a, b = DataFrame(1), DataFrame(3)
    a.flags.add("END_STREAM")
    assert "END_STREAM" not in b.flags  # the flags themselves are per frame


def test_frame_repr_is_short() -> None:
    assert repr(HeadersFrame(5, b"x" * 1000)) == "HeadersFrame(stream_id=5)"
