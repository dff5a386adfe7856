"""Property-based tests of the device protocol decoder and session (hypothesis).

Whatever a device sends, ``frames.decode_client`` returns a frame or raises
``FrameError`` (nothing else), and ``Session.receive`` never raises: a bad
frame closes only that socket with a documented code (docs/protocol.md,
"Close codes"), a good one yields only the actions the driver knows.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from connection_server import frames as f
from connection_server import session as s
from tests.fault.sizes import fuzz_examples

TAGS = ["hello", "ack", "register", "unregister", "state", "welcome", "push", "", "HELLO", "x" * 300]
FIELDS = ["type", "device_id", "secret", "v", "awake", "ids", "topic", "environment", "rid", "token", "extra"]
#: What a frame from a device may close its socket with (never 1011/4001/4003-4005: those are the server's).
FRAME_CLOSE_CODES = {f.Close.BAD_FRAME, f.Close.UNSUPPORTED_VERSION}
BUNDLE = "com.example.app"

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=False),
    st.text(max_size=40),
    st.sampled_from(["production", "sandbox", BUNDLE, BUNDLE + ".voip", "ab" * 32, "dev1", "s3cret"]),
)
json_values = st.recursive(
    json_scalars,
    lambda kids: st.lists(kids, max_size=5) | st.dictionaries(st.text(max_size=10), kids, max_size=5),
    max_leaves=20,
)
#: Objects that look like frames: a known or odd tag and fields of any JSON type.
frame_like = st.builds(
    lambda tag, fields: {"type": tag, **fields},
    st.sampled_from(TAGS),
    st.dictionaries(st.sampled_from(FIELDS), json_values | st.lists(st.integers(-(2**70), 2**70), max_size=30)),
)


def _encode(obj: Any) -> bytes:
    return json.dumps(obj).encode()


raw_frames = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=200),
    frame_like.map(_encode),
    json_values.map(_encode),
)


@settings(max_examples=fuzz_examples(200), deadline=None)
@given(raw_frames)
def test_decoder_returns_a_frame_or_raises_frame_error(data: bytes | str) -> None:
    try:
        frame = f.decode_client(data)
    except f.FrameError as exc:
        assert str(exc)
        return
    assert isinstance(frame, f.Hello | f.Ack | f.Register | f.Unregister | f.State)
    if isinstance(frame, f.Ack):
        assert len(frame.ids) <= f.MAX_ACK_IDS
        # Ack ids end up in a BIGINT column: anything the decoder lets through must fit.
        assert all(1 <= i < 2**63 for i in frame.ids)


def _check_actions(actions: list[s.Action], sess: s.Session) -> None:
    for a in actions:
        assert isinstance(a, s.Action.__args__)  # type: ignore[attr-defined]
        if isinstance(a, s.CloseConn):
            assert a.code in FRAME_CLOSE_CODES, a
            assert len(a.reason.encode()) <= 123
            assert sess.phase == s.Phase.CLOSING
        if isinstance(a, s.IssueToken):
            assert s.topic_allowed(a.topic, BUNDLE), a  # a device only registers its own app's topics
        if isinstance(a, s.Send):
            f.decode_server(a.data)  # the server only sends frames of its own protocol


@settings(max_examples=fuzz_examples(100), deadline=None)
@given(st.lists(raw_frames, min_size=1, max_size=12), st.booleans())
def test_session_survives_any_frame_sequence(frames: list[bytes | str], authenticate: bool) -> None:
    sess = s.Session(window=8)
    hello = _encode({"type": "hello", "device_id": "dev1", "secret": "s3cret"})
    if authenticate:
        assert sess.receive(hello) == [s.Authenticate("dev1", "s3cret")]
        _check_actions(sess.authenticated(BUNDLE, 1, 60.0, 16384, 0), sess)
    for data in frames:
        before = sess.phase
        actions = sess.receive(data)
        _check_actions(actions, sess)
        if before >= s.Phase.CLOSING:
            assert actions == [], "nothing happens after the close"
        assert len(sess.inflight) <= sess.window


@settings(max_examples=fuzz_examples(100), deadline=None)
@given(st.lists(st.integers(min_value=-(2**64), max_value=2**64), max_size=40))
def test_ack_ids_outside_bigint_close_the_socket(ids: list[int]) -> None:
    sess = s.Session(window=8)
    sess.receive(_encode({"type": "hello", "device_id": "dev1", "secret": "s3cret"}))
    sess.authenticated(BUNDLE, 1, 60.0, 16384, 0)
    actions = sess.receive(_encode({"type": "ack", "ids": ids}))
    if all(1 <= i < 2**63 for i in ids):
        assert not any(isinstance(a, s.CloseConn) for a in actions)
        assert sess.take_acks() == ids
    else:
        assert actions == [s.CloseConn(f.Close.BAD_FRAME, actions[0].reason)]  # type: ignore[union-attr]
        assert sess.take_acks() == [], "an out-of-range id never reaches the store"
