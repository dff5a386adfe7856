"""Device protocol frames: strict, bounded decoding and byte-exact payloads."""

from __future__ import annotations

import msgspec
import pytest

from connection_server import frames as f


def test_push_round_trip_keeps_payload_bytes() -> None:
    raw = b'{"aps":{"alert":"h\\u00e9"},"k":[1,2.50]}'
    frame = f.Push(id=3, apns_id="a", token="ab", topic="t", payload=msgspec.Raw(raw), collapse_id="c")
    data = f.encode(frame)
    assert raw in data and b"expiration" not in data  # omitted defaults stay off the wire
    back = f.decode_server(data)
    assert isinstance(back, f.Push) and bytes(back.payload) == raw and back.collapse_id == "c"


@pytest.mark.parametrize(
    "data",
    [
        b'{"type":"nope"}',
        b'{"type":"ack","ids":["x"]}',
        b'{"type":"hello","device_id":"","secret":"s"}',
        b'{"type":"hello","device_id":"' + b"d" * 65 + b'","secret":"s"}',
        b'{"type":"register","topic":"t","environment":"staging"}',
        b'{"type":"unregister","token":"XYZ"}',
        b"[]",
        b"",
    ],
)
def test_bad_client_frames_raise_frame_error(data: bytes) -> None:
    with pytest.raises(f.FrameError):
        f.decode_client(data)


def test_hello_ignores_unknown_fields_for_forward_compatibility() -> None:
    frame = f.decode_client(b'{"type":"hello","device_id":"d","secret":"s","app_version":"2.0"}')
    assert frame == f.Hello(device_id="d", secret="s")
