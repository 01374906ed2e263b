"""Studies larger than one invocation's share: concurrent arrivals, redelivery, chunked
storage and rejection, paged status, bounded events and answers (handlers on moto)."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pydicom
import pytest
from conftest import STORE, UPLOADS, FakeContext, Stack, api_event, s3_put_event
from corpus_studies import reidentified_study
from crafted import with_several
from pydicom.data import get_testdata_file
from test_pipeline import (
    call_api,
    declare_study,
    deliver_success_events,
    deliver_upload,
    detail_types,
    run_study,
    study_status,
)

from pacs_validator.contract.keys import incoming_prefix
from pacs_validator.dicom.config import build_config
from pacs_validator.dicom.validation import validate_instance
from pacs_validator.flow import judging, storing


def small_chunks(stack: Stack, size: int) -> None:
    for name in ("validator", "descriptor"):
        stack.handler(name).pipeline.services.chunk_instances = size


def get_status_page(stack: Stack, study_id: str, query: dict[str, str]
                    ) -> tuple[int, dict[str, Any]]:
    event = api_event("GET", f"/status/{study_id}", path_parameters={"study_id": study_id})
    event["queryStringParameters"] = query
    response = stack.handler("api").lambda_handler(event, FakeContext())
    return response["statusCode"], json.loads(response["body"])


def all_files(stack: Stack, study_id: str, limit: int) -> list[dict[str, Any]]:
    """Every file entry of ``GET /status``, page after page."""
    files: list[dict[str, Any]] = []
    query = {"limit": str(limit)}
    while True:
        status, body = get_status_page(stack, study_id, query)
        assert status == 200, (query, body)
        assert len(body["files"]) <= limit
        files.extend(body["files"])
        if body["next"] is None:
            return files
        query = {"limit": str(limit), "next": body["next"]}


def metrics_one_thread_at_a_time(handler: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Lambda runs one invocation at a time per environment; threads calling one handler
    module stand for many environments, but share its Powertools metric set, which is not
    made for that (a flush could iterate it while another thread adds to it). Its adds and
    flushes take turns, so the threads share only what environments share: the table, the
    buckets, the bus."""
    provider = handler.metrics.provider
    turn = threading.Lock()

    def in_turn(method: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            with turn:
                return method(*args, **kwargs)
        return call

    for name in ("add_metric", "flush_metrics"):
        monkeypatch.setattr(provider, name, in_turn(getattr(provider, name)))


def test_concurrent_arrivals_keep_every_verdict_and_judge_the_study_once(
        stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    metrics_one_thread_at_a_time(stack.handler("validator"), monkeypatch)
    files = dict(reidentified_study(40, seed="concurrent"))
    body = declare_study(stack, files)
    study_id = body["study_id"]
    for name, data in files.items():
        stack.s3.put_object(Bucket=UPLOADS, Key=incoming_prefix(body["study_id"]) + name, Body=data)

    def arrive(item: tuple[int, str]) -> dict[str, Any]:
        index, name = item
        event = s3_put_event(UPLOADS, incoming_prefix(body["study_id"]) + name, f"{index:04X}")
        result: dict[str, Any] = stack.handler("validator").lambda_handler(event, FakeContext())
        return result

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(arrive, enumerate(files)))
    deliver_success_events(stack)

    assert [r["processed"][0]["status"] for r in results] == [200] * len(files)
    status = study_status(stack, study_id)
    assert status["state"] == "STORED"
    assert status["counts"]["received"] == len(files)
    assert sorted(f["name"] for f in all_files(stack, study_id, 15)) == sorted(files)
    types = detail_types(stack, study_id)
    assert types.count("validation.success") == 1
    assert types.count("study.uploaded") == len(files)


def test_a_redelivered_last_file_judges_the_study_once(stack: Stack) -> None:
    files = dict(reidentified_study(5, seed="redelivered"))
    body = declare_study(stack, files)
    names = list(files)
    for name in names:
        deliver_upload(stack, incoming_prefix(body["study_id"]) + name, files[name], sequencer="01")
    last_key = incoming_prefix(body["study_id"]) + names[-1]
    last = s3_put_event(UPLOADS, last_key, "01", version_id=stack.version_of(UPLOADS, last_key))
    stack.handler("validator").lambda_handler(last, FakeContext())
    again = s3_put_event(UPLOADS, incoming_prefix(body["study_id"]) + names[-1], "02")  # re-upload
    stack.handler("validator").lambda_handler(again, FakeContext())
    deliver_success_events(stack)

    assert study_status(stack, body["study_id"])["state"] == "STORED"
    assert study_status(stack, body["study_id"])["counts"]["received"] == len(files)
    assert detail_types(stack, body["study_id"]).count("validation.success") == 1


def test_a_study_of_many_chunks_is_stored_whole(stack: Stack) -> None:
    small_chunks(stack, 7)
    files = dict(reidentified_study(30, series=3, seed="chunks"))
    study_id = run_study(stack, files)

    status = study_status(stack, study_id)
    assert status["state"] == "STORED", status
    assert status["counts"]["instances"] == 30
    assert len(stack.keys(STORE, f"studies/{study_id}/instances/")) == 30
    metadata = json.loads(stack.s3.get_object(
        Bucket=STORE, Key=f"studies/{study_id}/metadata.json")["Body"].read())
    assert metadata["counts"] == {"series": 3, "instances": 30}
    numbers = [[i["instance_number"] for i in s["instances"]] for s in metadata["series"]]
    assert numbers == [list(range(1, 11))] * 3
    assert metadata["patient"]["id"]
    sidecar = json.loads(stack.s3.get_object(
        Bucket=STORE, Key=f"studies/{study_id}/dicom.json")["Body"].read())
    assert len(sidecar) == 30
    stored = set(stack.keys(STORE, f"studies/{study_id}/instances/"))
    assert {d["7FE00010"]["BulkDataURI"].partition("#")[0] for d in sidecar} == stored
    report = json.loads(stack.s3.get_object(
        Bucket=STORE, Key=f"studies/{study_id}/validation.json")["Body"].read())
    assert len(report["files"]) == 30
    assert report["studies"][0]["valid"] is True


def heavy_study(instances: int, seed: str, loaded_values: int) -> dict[str, bytes]:
    """A valid study whose files each hold ``loaded_values`` private values of 64 KiB,
    loaded when read (they are at pydicom's defer_size): within every limit, and costly to
    describe for their few hundred data elements."""
    files = {}
    for name, data in reidentified_study(instances, series=2, seed=seed):
        dataset = pydicom.dcmread(io.BytesIO(data))
        with_several(loaded_values=loaded_values)(dataset)
        buffer = io.BytesIO()
        dataset.save_as(buffer, enforce_file_format=True)
        files[name] = buffer.getvalue()
    return files


def test_instances_heavy_to_describe_are_stored_in_chunks_within_the_estimated_budget(
        stack: Stack) -> None:
    """A chunk stops at ``CHUNK_ESTIMATED_BYTES`` of estimated cost, whatever
    ``ChunkInstances`` allows: 24 files of nearly 5 MiB of loaded values each (the stack's
    upload cap) are stored in chunks within it, whole. Weighed by their data elements,
    they were one chunk."""
    files = heavy_study(24, seed="estimated", loaded_values=78)
    study_id = run_study(stack, files)

    status = study_status(stack, study_id)
    assert status["state"] == "STORED", status
    chunks = [json.loads(stack.s3.get_object(Bucket=UPLOADS, Key=key)["Body"].read())
              for key in stack.keys(UPLOADS, f"work/{study_id}/chunks/")]
    assert len(chunks) > 1  # one chunk of ChunkInstances without the budget
    assert all(sum(file["estimated_bytes"] for file in chunk) <= judging.CHUNK_ESTIMATED_BYTES
               for chunk in chunks)
    assert sorted(file["name"] for chunk in chunks for file in chunk) == sorted(files)
    metadata = json.loads(stack.s3.get_object(
        Bucket=STORE, Key=f"studies/{study_id}/metadata.json")["Body"].read())
    assert metadata["counts"] == {"series": 2, "instances": 24}
    sidecar = json.loads(stack.s3.get_object(
        Bucket=STORE, Key=f"studies/{study_id}/dicom.json")["Body"].read())
    assert len(sidecar) == 24


def test_a_chunks_threads_describe_at_once_no_more_than_its_memory_budget(
        stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """The descriptor's threads claim each instance's estimated cost while they describe
    it: with room for two of these files, no more than two are described at once, however
    many the chunk holds and threads it has."""
    files = heavy_study(6, seed="threads", loaded_values=78)
    estimate = max(validate_instance(io.BytesIO(data), build_config())[1].estimated_bytes
                   for data in files.values())
    budget = 2 * estimate
    held: list[int] = []

    class Recorded(storing.ByteBudget):
        @contextmanager
        def holding(self, size: int) -> Iterator[None]:
            with super().holding(size):
                if self.limit == budget:
                    held.append(self.held)
                yield

    monkeypatch.setattr(storing, "ByteBudget", Recorded)
    monkeypatch.setattr(storing, "ESTIMATED_BYTES_AT_ONCE", budget)
    study_id = run_study(stack, files)

    assert study_status(stack, study_id)["state"] == "STORED"
    assert len(held) == len(files)  # one chunk: the judge's budget holds them all
    assert max(held) <= budget


def test_a_rejected_study_of_many_chunks_is_copied_whole_to_rejected(stack: Stack) -> None:
    small_chunks(stack, 7)
    files = dict(reidentified_study(20, seed="rejected"))
    files["zz-truncated.dcm"] = Path(get_testdata_file("MR_truncated.dcm")).read_bytes()
    study_id = run_study(stack, files)

    status = study_status(stack, study_id)
    assert (status["state"], status["status"]) == ("REJECTED", 400)
    kept = [name for name in files if name != "zz-truncated.dcm"]  # not DICOM: not kept
    assert stack.keys(STORE, f"rejected/{study_id}/") == sorted(
        f"rejected/{study_id}/{name}" for name in [*kept, "validation.log", "validation.json"])
    assert stack.keys(STORE, f"studies/{study_id}/") == []
    failed = [e for e in stack.published() if e["detail-type"] == "validation.failed"]
    assert "format.truncated" in failed[-1]["detail"]["rules"]


def test_a_file_larger_than_declared_rejects_the_study_with_size_declared(stack: Stack) -> None:
    files = dict(reidentified_study(3, seed="sizes"))
    declared = {name: len(data) for name, data in files.items()}
    first = next(iter(files))
    declared[first] -= 100
    status, body = call_api(stack, "POST", "/upload",
                            {"files": [{"name": n, "size": s} for n, s in declared.items()]})
    assert status == 201
    for name, data in files.items():
        deliver_upload(stack, incoming_prefix(body["study_id"]) + name, data)

    status_body = study_status(stack, body["study_id"])
    assert (status_body["state"], status_body["status"]) == ("REJECTED", 413)
    assert "size.declared" in {f["rule"] for f in status_body["findings"]}


def test_status_pages_through_the_files_and_refuses_bad_page_arguments(stack: Stack) -> None:
    files = dict(reidentified_study(23, seed="pages"))
    study_id = run_study(stack, files)

    assert [f["name"] for f in all_files(stack, study_id, 5)] == sorted(files)
    for query in ({"limit": "0"}, {"limit": "abc"}, {"limit": "100000"},
                  {"next": "%%%"}, {"next": ""}):
        assert get_status_page(stack, study_id, query)[0] == 400


def test_a_file_arriving_after_the_study_was_stored_is_kept_aside(stack: Stack) -> None:
    files = dict(reidentified_study(2, seed="late"))
    study_id = run_study(stack, files)
    extra = dict(reidentified_study(3, seed="late"))
    late_name = list(extra)[-1]
    deliver_upload(stack, f"incoming/{study_id}/{late_name}", extra[late_name], "0L")

    status = study_status(stack, study_id)
    assert status["state"] == "STORED"
    assert {f["name"]: f["late"] for f in status["files"]} == {name: False for name in files}
    assert [(a["name"], a["outcome"]) for a in status["kept_aside"]] == [
        (late_name, "undeclared")]


def test_events_and_answers_stay_small_for_a_large_study(stack: Stack) -> None:
    small_chunks(stack, 50)
    files = dict(reidentified_study(120, seed="bounded"))
    study_id = run_study(stack, files)

    assert study_status(stack, study_id)["state"] == "STORED"
    details = [json.dumps(e["detail"]) for e in stack.published()
               if e["detail"]["study_id"] == study_id]
    assert max(len(d) for d in details) < 1024
    assert len(json.dumps(study_status(stack, study_id))) < 256 * 1024


@pytest.mark.parametrize("name", ["a/b/c.dcm", "x.dcm"])
def test_a_key_below_the_study_prefix_belongs_to_the_study(stack: Stack, name: str) -> None:
    data = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    body = declare_study(stack, {name: data})
    deliver_upload(stack, incoming_prefix(body["study_id"]) + name, data)
    deliver_success_events(stack)

    assert study_status(stack, body["study_id"])["state"] == "STORED"
