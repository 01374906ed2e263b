"""Property: no API Gateway proxy event, however hostile, makes the API answer a 5xx.

10,000 generated events (derandomised, so every run sends the same ones) with random
methods, paths, headers (content types, Authorization: the valid token seven times in
ten), query strings on ``/status``, bodies (text, binary, Unicode, nested and odd JSON,
huge numbers, wrong types, upload declarations with hostile names) and the base64 flag on
or off, on ``POST /upload``, ``POST /upload/{id}`` (a study taking files, one past
RECEIVING, an unknown one, ids not of our format), ``GET /status/{id}`` and elsewhere.
Each answer must be a status below 500, and every refusal a JSON object carrying a
message; every upload form's key stays under the study's own ``incoming/<id>/`` and the API
stores nothing but manifests. The status counts are printed (``pytest -s`` or ``-rP``).
"""

from __future__ import annotations

import base64
import json
import os
import string
from collections import Counter
from typing import Any

from conftest import API_TOKEN, UPLOADS, FakeContext, Stack, api_event
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

EVENTS = int(os.environ.get("API_FUZZ_EVENTS", "10000"))
STUDY_ID = "0123456789abcdef0123456789abcdef"
OPEN_STUDY = "0123456789abcdef0123456789abc0de"
"""A study the test creates, AWAITING_UPLOAD, declaring :data:`OPEN_STUDY_FILES`: forms for
them can be asked for."""
OPEN_STUDY_FILES = ["a.dcm", "b.dcm"]
STORED_STUDY = "0123456789abcdef0123456789ab0570"
"""A study the test creates and marks STORED: a renewal is refused (409)."""

def mostly(usual: st.SearchStrategy[Any], others: st.SearchStrategy[Any],
           in_ten: int = 6) -> st.SearchStrategy[Any]:
    """``usual`` in ``in_ten`` draws out of ten, else ``others``: most events get past the
    checks before the one the other draws aim at."""
    return st.integers(min_value=0, max_value=9).flatmap(
        lambda n: usual if n < in_ten else others)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=8,
)
declared_file = st.fixed_dictionaries(
    {},
    optional={
        "name": st.text(max_size=100) | st.sampled_from(["../../etc/passwd", "a.dcm", ""])
        | json_values,
        "filename": st.text(max_size=50),
        "size": st.integers(min_value=-2, max_value=2**70) | json_values,
    },
)
good_file = st.fixed_dictionaries({"name": st.text(min_size=1, max_size=80),
                                   "size": st.integers(min_value=1, max_value=10**6)})
hostile_names = st.lists(
    st.sampled_from(OPEN_STUDY_FILES) | st.sampled_from(["../a.dcm", "c.dcm", ""])
    | st.text(max_size=20), max_size=4)
declarations = (
    st.fixed_dictionaries({"files": st.lists(good_file, min_size=1, max_size=3,
                                             unique_by=lambda f: f["name"])})
    | st.fixed_dictionaries({"files": st.lists(declared_file, max_size=4)})
    | declared_file
    | st.fixed_dictionaries({"files": json_values})
)
form_requests = mostly(
    st.fixed_dictionaries({"names": st.lists(st.sampled_from(OPEN_STUDY_FILES), min_size=1,
                                             max_size=3)}),
    st.fixed_dictionaries({"names": hostile_names})
    | st.fixed_dictionaries({}, optional={"names": json_values, "files": json_values}))
text_bodies = st.one_of(
    declarations.map(json.dumps),
    form_requests.map(json.dumps),
    json_values.map(json.dumps),
    st.text(max_size=120),
    st.sampled_from(["not json", "{", "}", "[]", "null", '"x"', "1e999999", "-0", "NaN",
                     "filename=a.dcm&size=1", '{"files": [{"name": "a", "size": 1e400}]}']),
    st.integers(min_value=1, max_value=20_000).map(lambda n: "[" * n),
    st.integers(min_value=1, max_value=5000).map(lambda n: "9" * n),
)
binary_bodies = st.binary(max_size=120)


content_types = mostly(st.just("application/json"), st.one_of(
    st.none(),
    st.sampled_from(["application/json; charset=utf-8", "APPLICATION/JSON",
                     "application/x-www-form-urlencoded", "text/plain", "multipart/form-data",
                     "application/json; charset=latin-1", "application/json;", ";", ""]),
    st.text(max_size=40),
))
authorizations = mostly(st.sampled_from([f"Bearer {API_TOKEN}", f"bearer  {API_TOKEN} "]),
                        st.one_of(
    st.none(), st.text(max_size=60),
    st.sampled_from(["Bearer", "Bearer ", "bearer x", "Basic dXNlcjpwYXNz"]),
    st.text(max_size=60).map(lambda t: f"Bearer {t}"),
), in_ten=7)
status_paths = st.one_of(
    st.just(f"/status/{STUDY_ID}"),
    st.text(alphabet=string.hexdigits, min_size=30, max_size=34).map(lambda t: f"/status/{t}"),
)
other_paths = st.one_of(
    st.sampled_from(["/health", "/status/", "/status", "/", "/upload/x", "/status/" "../upload",
                     f"/status/{STUDY_ID}/x", "//upload"]),
    st.text(max_size=40).map(lambda t: "/" + t),
)
any_method = st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]) \
    | st.text(alphabet=string.ascii_letters, min_size=1, max_size=8)
renew_paths = st.one_of(
    st.sampled_from([OPEN_STUDY, STORED_STUDY, STUDY_ID]),
    st.text(alphabet=string.hexdigits, min_size=30, max_size=34),
    st.text(max_size=40).filter(lambda t: "/" not in t),
).map(lambda study: f"/upload/{study}")
ROUTES = ["upload"] * 5 + ["renew"] + ["status"] * 2 + ["other"] * 2
"""Five events in ten go to POST /upload (where bodies are read), one to POST /upload/{id},
two to GET /status."""


def request_line(draw: st.DrawFn) -> tuple[str, str]:
    route = draw(st.sampled_from(ROUTES))
    if route == "upload":
        return draw(st.sampled_from(["POST"] * 9 + ["PUT"])), "/upload"
    if route == "renew":
        return draw(st.sampled_from(["POST"] * 9 + ["GET"])), draw(renew_paths)
    if route == "status":
        return draw(st.sampled_from(["GET"] * 9 + ["DELETE"])), draw(status_paths)
    return draw(any_method), draw(other_paths)
queries = st.none() | st.fixed_dictionaries({}, optional={
    "limit": st.text(max_size=12) | st.integers(min_value=-5, max_value=10**12).map(str),
    "next": st.text(max_size=40) | st.binary(max_size=40).map(
        lambda b: base64.urlsafe_b64encode(b).decode()),
})
other_headers = st.dictionaries(st.text(string.ascii_letters + "-", min_size=1, max_size=20),
                                st.text(max_size=40), max_size=3)


@st.composite
def hostile_events(draw: st.DrawFn) -> dict[str, Any]:
    headers = draw(other_headers)
    content_type = draw(content_types)
    if content_type is not None:
        headers["Content-Type"] = content_type
    authorization = draw(authorizations)
    if authorization is not None:
        headers["Authorization"] = authorization
    method, path = request_line(draw)
    encoded = draw(st.integers(min_value=0, max_value=9)) < 3
    if encoded:
        raw = draw(st.one_of(
            text_bodies.map(lambda t: base64.b64encode(t.encode("utf-8", "surrogatepass"))
                            .decode()),
            binary_bodies.map(lambda b: base64.b64encode(b).decode()),
            st.text(max_size=100),
        ))
    else:
        usual = form_requests if path.startswith("/upload/") else declarations
        raw = draw(mostly(usual.map(json.dumps), st.none() | text_bodies, in_ten=4))
    event = api_event(method, path, raw_body=raw, headers=headers,
                      base64_encoded=encoded, query=draw(queries), token=None)
    event["body"] = raw
    return event


def test_10000_hostile_events_get_a_4xx_or_better_never_a_5xx(stack: Stack) -> None:
    api = stack.handler("api")
    for study_id in (OPEN_STUDY, STORED_STUDY):
        api.table.create(study_id, expected=len(OPEN_STUDY_FILES), deadline_seconds=3600)
    stack.s3.put_object(Bucket=UPLOADS, Key=f"manifests/{OPEN_STUDY}.json", Body=json.dumps(
        {"files": [{"name": name, "size": 10} for name in OPEN_STUDY_FILES]}))
    api.table.table.update_item(Key={"study_id": STORED_STUDY, "item": "study"},
                                UpdateExpression="SET #state = :stored",
                                ExpressionAttributeNames={"#state": "state"},
                                ExpressionAttributeValues={":stored": "STORED"})
    statuses: Counter[int] = Counter()
    renewed: Counter[int] = Counter()

    @settings(max_examples=EVENTS, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(event=hostile_events())
    def answer_one(event: dict[str, Any]) -> None:
        response = api.lambda_handler(event, FakeContext())
        statuses[response["statusCode"]] += 1
        assert response["statusCode"] < 500, response["body"]
        if event["path"].startswith("/upload/") and event["httpMethod"] == "POST":
            renewed[response["statusCode"]] += 1
        if response["statusCode"] == 200:
            if event["httpMethod"] == "POST":  # forms by name, for the open study only
                body = json.loads(response["body"])
                assert body["study_id"] == OPEN_STUDY and "upload" not in body
                assert {f["fields"]["key"] for f in body["uploads"]} <= {
                    f"incoming/{OPEN_STUDY}/{name}" for name in OPEN_STUDY_FILES}
            return  # else /health, or the HTML upload page at GET /
        body = json.loads(response["body"])
        assert isinstance(body, dict) and (body.get("message") or response["statusCode"] < 300)
        if response["statusCode"] == 201:
            prefix = f"incoming/{body['study_id']}/"
            assert "upload" not in body
            for form in body["uploads"]:
                name = form["fields"]["key"].removeprefix(prefix)
                assert form["fields"]["key"] == prefix + name and name and "/" not in name

    answer_one()
    print(f"\nAPI fuzz: {sum(statuses.values())} events, "
          f"{sum(n for s, n in statuses.items() if s >= 500)} answered 5xx; "
          f"by status {dict(sorted(statuses.items()))}")
    assert sum(statuses.values()) >= EVENTS
    print(f"POST /upload/{{id}}: by status {dict(sorted(renewed.items()))}")
    if EVENTS >= 1000:  # the renewal route was reached, and past its checks
        assert {200, 400, 404, 409} <= set(renewed)
    pages = stack.s3.get_paginator("list_objects_v2").paginate(Bucket=UPLOADS)
    for key in (o["Key"] for page in pages for o in page.get("Contents", [])):
        assert key.startswith("manifests/") and key.count("/") == 1
