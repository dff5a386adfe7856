"""Property-based tests of schemas.apns / schemas.payload with hypothesis.

The listener turns any PushgwError into an APNs answer and any other
exception into a 500 and a log line, so the validator must never raise
anything else, whatever bytes a client sends.  ``make bench-faults`` runs
more examples (``PUSHGW_FAULT_SCALE``).
"""

from __future__ import annotations

import json
import string

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from schemas import errors
from schemas.apns import ApnsHeaders, validate_headers, validate_request
from schemas.payload import validate_aps_payload
from schemas.push_types import PAYLOAD_LIMIT, PRIORITIES, PUSH_TYPES, TOPIC_SUFFIX
from tests.fault.sizes import fuzz_examples

KNOWN_NAMES = [
    "apns-id",
    "apns-topic",
    "apns-priority",
    "apns-push-type",
    "apns-expiration",
    "apns-collapse-id",
    "authorization",
    "pushgw-deliver-at",
    "content-type",
]

# Values that sit near the rules: valid ones, edge cases and junk.
interesting_values = st.one_of(
    st.text(max_size=80),
    st.sampled_from(["10", "5", "1", "0", "-1", "05", "+5", "1_0", " 5", "\u0665", "9" * 30, "", "alert", "voip"]),
    st.sampled_from(sorted(PUSH_TYPES)),
    st.uuids().map(str),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.sampled_from(["com.example.app", "com.example.app.voip", "a..b", ".voip", "x" * 300]),
)
header_names = st.one_of(st.sampled_from(KNOWN_NAMES), st.text(max_size=20))
header_lists = st.lists(st.tuples(header_names, interesting_values), max_size=12)

paths = st.one_of(
    st.text(max_size=60),
    st.text(alphabet="0123456789abcdefABCDEFxyz/?", max_size=240).map(lambda s: "/3/device/" + s),
    st.sampled_from(["/3/device/", "/3/device", "/", ""]),
)
methods = st.one_of(st.sampled_from(["POST", "GET", "PUT", "post", ""]), st.text(max_size=10))

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
APS_KEYS = ["alert", "badge", "sound", "content-available", "event", "relevance-score", "content-state", "x"]
aps_objects = st.dictionaries(st.sampled_from(APS_KEYS), json_values, max_size=5)
json_bodies = st.one_of(
    json_values.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(st.text(max_size=10), json_values, max_size=5).map(lambda d: json.dumps(d).encode()),
    aps_objects.map(lambda aps: json.dumps({"aps": aps}).encode()),
)
bodies = st.one_of(st.binary(max_size=6000), json_bodies)


@settings(max_examples=fuzz_examples(500))
@given(method=methods, path=paths, headers=header_lists, body=bodies)
def test_validator_returns_or_raises_only_pushgw_errors(
    method: str, path: str, headers: list[tuple[str, str]], body: bytes
) -> None:
    try:
        parsed, returned = validate_request(method, path, headers, body)
    except errors.PushgwError as exc:
        assert exc.status in {400, 404, 405, 413}
        assert type(exc).__subclasses__() == []  # always a leaf, never a bare BadRequest
        return
    # Whatever got through satisfies every invariant the rest of pushgw relies on.
    assert returned is body
    assert method == "POST"
    assert parsed.push_type in PUSH_TYPES
    assert parsed.priority in PRIORITIES
    assert parsed.topic.endswith(TOPIC_SUFFIX[parsed.push_type])
    assert len(body) <= PAYLOAD_LIMIT[parsed.push_type]
    assert parsed.token == parsed.token.lower()
    assert len(parsed.token) % 2 == 0
    assert set(parsed.token) <= set(string.hexdigits.lower())
    assert parsed.apns_id is None or parsed.apns_id == parsed.apns_id.lower()
    assert parsed.expiration is None or parsed.expiration >= 0
    assert parsed.collapse_id is None or len(parsed.collapse_id.encode("utf-8", "surrogatepass")) <= 64


@settings(max_examples=fuzz_examples(300))
@given(body=bodies, limit=st.integers(min_value=0, max_value=6000))
def test_payload_validator_never_raises_foreign_exceptions(body: bytes, limit: int) -> None:
    try:
        assert validate_aps_payload(body, limit) is body
    except (errors.PayloadEmpty, errors.PayloadTooLarge, errors.BadPayload):
        pass


# --- generated valid requests ------------------------------------------------

bundles = st.from_regex(r"[a-z][a-z0-9-]{0,10}(\.[A-Za-z0-9-]{1,10}){1,3}", fullmatch=True)
tokens = st.integers(min_value=1, max_value=100).flatmap(lambda n: st.binary(min_size=n, max_size=n)).map(bytes.hex)


@st.composite
def valid_requests(draw: st.DrawFn) -> tuple[str, list[tuple[str, str]], dict[str, object]]:
    push_type = draw(st.sampled_from(sorted(PUSH_TYPES)))
    topic = draw(bundles) + TOPIC_SUFFIX[push_type]
    token = draw(tokens)
    priority = draw(st.sampled_from([5] if push_type == "background" else [10, 5, 1]))
    apns_id = str(draw(st.uuids()))
    expiration = draw(st.integers(min_value=0, max_value=2**63 - 1))
    collapse_id = draw(st.text(min_size=1, max_size=16))
    headers = [
        ("apns-topic", topic),
        ("apns-push-type", push_type),
        ("apns-priority", str(priority)),
        ("apns-id", apns_id.upper()),
        ("apns-expiration", str(expiration)),
        ("apns-collapse-id", collapse_id),
    ]
    headers = draw(st.permutations(headers))
    expected = {
        "token": token,
        "topic": topic,
        "push_type": push_type,
        "priority": priority,
        "apns_id": apns_id,
        "expiration": expiration,
        "collapse_id": collapse_id,
    }
    return token.upper(), headers, expected


@settings(max_examples=fuzz_examples(300))
@given(request=valid_requests())
def test_valid_requests_in_any_header_order_are_accepted(
    request: tuple[str, list[tuple[str, str]], dict[str, object]],
) -> None:
    token, headers, expected = request
    parsed = validate_headers("POST", "/3/device/" + token, headers)
    assert {name: getattr(parsed, name) for name in expected} == expected


@settings(max_examples=fuzz_examples(200))
@given(request=valid_requests(), data=st.data())
def test_repeating_any_header_is_duplicate_headers(
    request: tuple[str, list[tuple[str, str]], dict[str, object]], data: st.DataObject
) -> None:
    token, headers, _ = request
    repeated = data.draw(st.sampled_from(headers))
    position = data.draw(st.integers(min_value=0, max_value=len(headers)))
    with_duplicate = [*headers[:position], repeated, *headers[position:]]
    try:
        validate_headers("POST", "/3/device/" + token, with_duplicate)
    except errors.DuplicateHeaders:
        return
    raise AssertionError(f"{repeated[0]} repeated was accepted")


@settings(max_examples=fuzz_examples(200))
@given(custom=st.dictionaries(st.text(max_size=12).filter(lambda k: k != "aps"), json_values, max_size=6))
def test_custom_top_level_keys_are_never_inspected(custom: dict[str, object]) -> None:
    body = json.dumps({"aps": {"alert": "hi"}, **custom}, ensure_ascii=False).encode()
    assume(len(body) <= PAYLOAD_LIMIT["alert"])
    assert validate_request("POST", "/3/device/00", [("apns-topic", "com.example.app")], body)[1] is body


@settings(max_examples=fuzz_examples(300))
@given(request=valid_requests(), data=st.data())
def test_mutating_one_header_of_a_valid_request_never_escapes_the_hierarchy(
    request: tuple[str, list[tuple[str, str]], dict[str, object]], data: st.DataObject
) -> None:
    # Starting from a valid request reaches the checks deep in the order,
    # which random header lists rarely get past.
    token, headers, _ = request
    index = data.draw(st.integers(min_value=0, max_value=len(headers) - 1))
    mutated = list(headers)
    mutated[index] = (headers[index][0], data.draw(interesting_values))
    path = data.draw(st.one_of(st.just("/3/device/" + token), paths))
    try:
        parsed = validate_headers("POST", path, mutated)
    except errors.PushgwError:
        return
    assert isinstance(parsed, ApnsHeaders)
    assert parsed.topic.endswith(TOPIC_SUFFIX[parsed.push_type])
