"""The REST API fuzzed against its own OpenAPI document (schemathesis).

A real `pushgw serve` publishes /openapi.json; schemathesis generates
requests for every operation in it -- valid ones, and invalid ones in
negative mode -- and checks each answer with its default checks: no 5xx, a
status the document lists, the documented content type, a body matching the
documented schema.  Every operation is fuzzed and every failure collected
before the test fails, so one report names all disagreements.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from tests.abuse.served import Served
from tests.fault.sizes import fuzz_examples


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    srv = Served(tmp_path_factory.mktemp("schemathesis"))
    srv.provision()
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


#: The document describes shapes, not business rules (a token must be one this
#: app registered, a topic one of its bundle's, batch items are answered one by
#: one inside a 200): a shape-valid request may be refused with a documented
#: 4xx and a shape-invalid item may be answered per item (docs/design.md,
#: Decisions).  Every other default check applies.
SEMANTIC = [positive_data_acceptance, negative_data_rejection]


def _fuzz(srv: Served, mode: GenerationMode, examples: int) -> list[str]:
    schema = schemathesis.openapi.from_url(f"{srv.base}/openapi.json")
    failures: list[str] = []
    operations = [r.ok() for r in schema.get_all_operations()]
    assert len(operations) >= 10, "the document lists the REST operations"
    for op in operations:

        @given(case=op.as_strategy(generation_mode=mode))
        @settings(max_examples=examples, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))  # fmt: skip
        def run(case: schemathesis.Case) -> None:
            case.call_and_validate(base_url=srv.base, headers={"X-API-Key": srv.api_key}, excluded_checks=SEMANTIC)

        try:
            run()
        except (Exception, BaseExceptionGroup) as exc:  # collect: one report for every operation
            failures.append(f"{op.method.upper()} {op.path} [{mode.value}]: {str(exc)[:1500]}")
    return failures


def test_valid_requests_get_documented_answers(served: Served) -> None:
    failures = _fuzz(served, GenerationMode.POSITIVE, fuzz_examples(4))
    assert not failures, "\n\n".join(failures)


def test_invalid_requests_get_documented_errors(served: Served) -> None:
    failures = _fuzz(served, GenerationMode.NEGATIVE, fuzz_examples(4))
    assert not failures, "\n\n".join(failures)
