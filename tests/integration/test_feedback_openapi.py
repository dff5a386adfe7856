"""The feedback and webhook routes answer what /openapi.json documents.

Through the REST fixture (real store, real socket, the routes mounted as
`pushgw provider-api` mounts them): every answer, success or error, is
checked against the published document by ``Rest.call``.
"""

from __future__ import annotations

from tests.integration.test_rest_fixtures import Rest, rest_fixture  # noqa: F401  (fixture)

APNS_TOKEN = "fe" * 32


async def test_feedback_webhook_and_deliveries_match_the_document(rest: Rest) -> None:
    status, hook = await rest.call("PUT", "/api/v1/webhook", {"url": "https://hooks.example.com/pushgw"})
    assert status == 200 and hook["url"] == "https://hooks.example.com/pushgw" and len(hook["secret"]) >= 16
    status, _ = await rest.call("POST", "/api/v1/tokens/apns", {"token": APNS_TOKEN, "topic": rest.a.bundle})
    assert status == 201
    assert (await rest.call("DELETE", f"/api/v1/tokens/{APNS_TOKEN}"))[0] == 204

    status, page = await rest.call("GET", "/api/v1/feedback?since=0&limit=10")
    assert status == 200
    assert [(f["token"], f["reason"]) for f in page["feedback"]] == [(APNS_TOKEN, "Unregistered")]
    assert page["next_after"] is None
    status, deliveries = await rest.call("GET", "/api/v1/webhooks/deliveries?state=pending")
    assert status == 200
    (job,) = deliveries["deliveries"]
    assert job["state"] == "pending" and job["event"]["token"] == APNS_TOKEN

    # B sees none of A's records or deliveries.
    status, other = await rest.call("GET", "/api/v1/feedback", key=rest.b.key)
    assert (status, other["feedback"]) == (200, [])
    assert (await rest.call("GET", "/api/v1/webhooks/deliveries", key=rest.b.key))[1] == {"deliveries": []}


async def test_feedback_routes_refuse_bad_input_with_documented_errors(rest: Rest) -> None:
    for method, path, body in (
        ("GET", "/api/v1/feedback?limit=0", None),
        ("GET", "/api/v1/feedback?since=yesterday", None),
        ("GET", "/api/v1/webhooks/deliveries?state=lost", None),
        ("PUT", "/api/v1/webhook", {"url": "ftp://example.com/x"}),
        ("PUT", "/api/v1/webhook", {"url": "https://example.com/x", "secret": "short"}),
        ("PUT", "/api/v1/webhook", {"secret": "no url here at all"}),
        ("PUT", "/api/v1/webhook", {"url": "http://[::1/x"}),
    ):
        status, err = await rest.call(method, path, body)
        assert (status, err["reason"]) == (400, "BadRequestParams"), (method, path, body, err)
    status, err = await rest.call("GET", "/api/v1/feedback", key="")
    assert status == 403
