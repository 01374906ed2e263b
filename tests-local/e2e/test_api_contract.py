"""schemathesis against the local stack's API, from docs/api/openapi.yaml: requests made from
the document (its examples, boundary and negative cases of every parameter and body, then
random ones), each answer checked for a server error and against the document (status,
media type, headers, body schema).

Bounded: at most ``MAX_EXAMPLES`` random cases per operation beside the examples and the
boundary cases, deterministic (a fixed seed). It calls as a label of its own, added to the
token secret for the run, so the studies it declares count against no other caller's
MaxOpenStudies. The figures (requests, server errors, violations, seconds) are printed at
the end of the run and kept in ``.local/schemathesis.json``.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from api_contract import SPEC_PATH
from conftest import SUMMARY, Deployment, aws
from hypothesis import settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

pytestmark = pytest.mark.e2e

MAX_EXAMPLES = 100
"""Random cases per operation (schemathesis' fuzzing phase), beside its examples and
boundary (coverage) cases: about 3 minutes for the whole API on 2 cores."""
STATEFUL_SCENARIOS = 40
"""Scenarios of at most 4 calls along the links (declare, then status and renewal)."""
TOKEN_CACHE_SECONDS = 5
"""``TokenCacheSeconds`` of the local deployment (Makefile, DEPLOY_PARAMETERS)."""
LABEL = "schemathesis"
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]
FIGURES = Path(__file__).resolve().parents[2] / ".local" / "schemathesis.json"

config = schemathesis.Config.from_dict({
    "seed": 20261207,
    "generation": {"max-examples": MAX_EXAMPLES, "mode": "all", "database": "none"},
    "phases": {"examples": {"enabled": True}, "coverage": {"enabled": True},
               "fuzzing": {"enabled": True}, "stateful": {"enabled": True}},
})
schema = schemathesis.openapi.from_path(SPEC_PATH, config=config)
counts: Counter[str] = Counter()
statuses: Counter[str] = Counter()
"""Answers by operation and status, to show what the run reached (201s, 404s, 400s...)."""


@pytest.fixture(scope="module")
def token(deployment: Deployment) -> Iterator[str]:
    """A bearer token of this run's own label, in the token secret while the module runs."""
    secrets = aws("secretsmanager")
    arn = deployment.outputs["ApiTokensSecretArn"]
    before = secrets.get_secret_value(SecretId=arn)["SecretString"]
    value = uuid.uuid4().hex + uuid.uuid4().hex
    secrets.put_secret_value(SecretId=arn,
                             SecretString=json.dumps({**json.loads(before), LABEL: value}))
    time.sleep(TOKEN_CACHE_SECONDS + 1)
    started = time.monotonic()
    yield value
    secrets.put_secret_value(SecretId=arn, SecretString=before)
    figures = {"requests": counts["requests"], "server_errors": counts["server_errors"],
               "violations": counts["violations"],
               "seconds": round(time.monotonic() - started, 1),
               "max_examples": MAX_EXAMPLES, "answers": dict(sorted(statuses.items()))}
    FIGURES.parent.mkdir(exist_ok=True)
    FIGURES.write_text(json.dumps(figures, indent=2) + "\n")
    SUMMARY.append("schemathesis: " + ", ".join(f"{k} {v}" for k, v in figures.items()
                                                if k != "answers"))


@pytest.fixture(scope="module")
def target(deployment: Deployment, token: str) -> None:
    """Where the stateful workflow calls, and as whom (a state machine takes no fixtures)."""
    TARGET.update(base_url=deployment.api.api_base, token=token)


TARGET: dict[str, str] = {}


class Workflow(schema.as_state_machine()):  # type: ignore[misc]
    """Scenarios along the document's links: a study declared, then its status read and its
    form renewed, so that the 200s of both are reached with real studies."""

    def before_call(self, case: Any) -> None:
        """A fresh ``client_token`` in each declaration that has one, so that every one is
        a first declaration (201): what a token sent again is answered (200, 409) depends
        on what was declared before, and hypothesis replays a scenario's prefix expecting
        the answers, and so the links, it had. The cases of
        :func:`test_every_answer_conforms_and_none_is_a_server_error` keep their tokens."""
        if isinstance(case.body, dict) and "client_token" in case.body:
            case.body = {**case.body, "client_token": uuid.uuid4().hex}

    def get_call_kwargs(self, case: Any) -> dict[str, Any]:
        return {"base_url": TARGET["base_url"], "timeout": 30,
                "headers": {"Authorization": f"Bearer {TARGET['token']}"}}

    def validate_response(self, response: Any, case: Any, additional_checks: Any = None,
                          **kwargs: Any) -> None:
        statuses[f"{case.method} {case.path} {response.status_code} (stateful)"] += 1
        counts["requests"] += 1
        counted(response, lambda: case.validate_response(response, checks=CHECKS,
                                                         headers=kwargs["headers"]))


Workflow.TestCase.settings = settings(max_examples=STATEFUL_SCENARIOS, stateful_step_count=4,
                                      deadline=None, derandomize=True, database=None)


@pytest.mark.usefixtures("target")
class TestWorkflow(Workflow.TestCase):  # type: ignore[misc, name-defined]
    """The stateful scenarios, as a test of this module."""


def counted(response: Any, validate: Callable[[], None]) -> None:
    """``validate()`` the answer, counting server errors and violations."""
    if response.status_code >= 500:
        counts["server_errors"] += 1
    try:
        validate()
    except FailureGroup:
        counts["violations"] += 1
        raise


@schema.parametrize()
def test_every_answer_conforms_and_none_is_a_server_error(case: Any, deployment: Deployment,
                                                          token: str) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    counts["requests"] += 1
    response = case.call(base_url=deployment.api.api_base, headers=headers, timeout=30)
    statuses[f"{case.method} {case.path} {response.status_code}"] += 1
    counted(response, lambda: case.validate_response(response, checks=CHECKS, headers=headers))
