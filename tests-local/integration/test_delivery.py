"""Redelivery, duplicates, late and missing files, failures, hostile keys, and PHI."""

from __future__ import annotations

import json
import logging
import re
import time
from pathlib import Path
from typing import Any

import pydicom
import pytest
from botocore.exceptions import ClientError
from conftest import STORE, UPLOADS, FakeContext, Stack, s3_put_event
from corpus_studies import reidentified_study
from pydicom.data import get_testdata_file
from test_pipeline import (
    MR_STUDY,
    call_api,
    declare_study,
    deliver_success_events,
    deliver_upload,
    detail_types,
    run_study,
    study_status,
)

from pacs_validator.contract.events import DetailType, Event
from pacs_validator.contract.keys import incoming_prefix
from pacs_validator.flow.ports import DependencyUnavailable, PublishError

CT_SMALL = Path(get_testdata_file("CT_small.dcm"))


def declare(stack: Stack, names: list[str], size: int = CT_SMALL.stat().st_size
            ) -> dict[str, object]:
    status, body = call_api(stack, "POST", "/upload",
                            {"files": [{"name": n, "size": size} for n in names]})
    assert status == 201
    return body


def test_a_redelivered_s3_event_is_processed_once(stack: Stack) -> None:
    body = declare(stack, ["ct.dcm"])
    key = body["uploads"][0]["fields"]["key"]  # type: ignore[index]
    first = deliver_upload(stack, key, CT_SMALL.read_bytes(), sequencer="00AB")
    event = s3_put_event(UPLOADS, key, "00AB", version_id=stack.version_of(UPLOADS, key))
    second = stack.handler("validator").lambda_handler(event, FakeContext())

    assert second == first
    assert detail_types(stack, str(body["study_id"])).count("study.uploaded") == 1
    assert detail_types(stack, str(body["study_id"])).count("validation.success") == 1


def test_the_same_file_twice_is_a_noted_duplicate_and_the_study_is_stored(stack: Stack) -> None:
    data = CT_SMALL.read_bytes()
    study_id = run_study(stack, {"first.dcm": data, "again.dcm": data})

    status = study_status(stack, study_id)
    assert status["state"] == "STORED"
    assert "study.duplicate-instance" in {f["rule"] for f in status["findings"]}
    assert stack.keys(STORE, f"studies/{study_id}/") == sorted(
        f"studies/{study_id}/{leaf}" for leaf in
        ("original.dcm", "metadata.json", "dicom.json", "validation.log", "validation.json",
         f"previews/{pydicom.dcmread(CT_SMALL).SeriesInstanceUID}.png")
    )


def test_one_sop_instance_with_different_bytes_is_a_conflict(stack: Stack, tmp_path: Path) -> None:
    dataset = pydicom.dcmread(CT_SMALL)
    dataset.InstitutionName = "Another Hospital"
    changed = tmp_path / "changed.dcm"
    dataset.save_as(changed)
    study_id = run_study(stack, {"a.dcm": CT_SMALL.read_bytes(), "b.dcm": changed.read_bytes()})

    status = study_status(stack, study_id)
    assert status["state"] == "REJECTED"
    assert status["status"] == 422
    assert "study.instance-conflict" in {f["rule"] for f in status["findings"]}


def test_a_manifest_not_fulfilled_by_its_deadline_ends_incomplete(stack: Stack) -> None:
    body = declare(stack, ["a.dcm", "b.dcm"])
    study_id = str(body["study_id"])
    deliver_upload(stack, f"incoming/{study_id}/a.dcm", CT_SMALL.read_bytes())
    assert study_status(stack, study_id)["state"] == "RECEIVING"

    assert sweep(stack, now=int(time.time())) == {"handed_out": []}
    assert sweep(stack, now=int(time.time()) + 7200) == {"handed_out": [study_id]}
    assert ended_by_batches(stack) == {"incomplete": [study_id], "failed": [], "handed_back": []}

    status = study_status(stack, study_id)
    assert status["state"] == "INCOMPLETE"
    assert status["status"] == 422
    assert "study.manifest-missing" in {f["rule"] for f in status["findings"]}
    assert f"rejected/{study_id}/a.dcm" in stack.keys(STORE, f"rejected/{study_id}/")
    late = deliver_upload(stack, f"incoming/{study_id}/b.dcm", CT_SMALL.read_bytes(), "0B")
    assert late["processed"][0]["status"] == 200
    status = study_status(stack, study_id)
    assert status["state"] == "INCOMPLETE"
    assert {f["name"]: f["late"] for f in status["files"]} == {"a.dcm": False, "b.dcm": True}


def sweep(stack: Stack, now: int) -> dict[str, list[str]]:
    handed_out: dict[str, list[str]] = stack.handler("validator").pipeline.sweep(now=now)
    return handed_out


def ended_by_batches(stack: Stack, context: FakeContext | None = None) -> dict[str, list[str]]:
    """Run each batch of overdue studies handed out (as Lambda would, asynchronously);
    what they ended, all together."""
    ended: dict[str, list[str]] = {"incomplete": [], "failed": [], "handed_back": []}
    batches = [e for e in stack.chunk_events if e["work"] == "sweep"]
    stack.chunk_events[:] = [e for e in stack.chunk_events if e["work"] != "sweep"]
    for batch in batches:
        result = stack.handler("validator").lambda_handler(batch, context or FakeContext())
        for outcome, ids in result.items():
            ended[outcome] += ids
    return ended


def test_the_schedule_runs_the_deadline_sweep(stack: Stack) -> None:
    scheduled = {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {},
                 "id": "1", "account": "123456789012", "region": "us-east-1",
                 "time": "2026-11-27T00:00:00Z", "resources": [], "version": "0"}
    assert stack.handler("validator").lambda_handler(scheduled, FakeContext()) == {
        "handed_out": []}


def test_a_flood_of_overdue_studies_is_handed_out_in_batches_oldest_first(
        stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    from pacs_validator.flow import recovery

    monkeypatch.setattr(recovery, "SWEEP_MOST", 30)
    study_ids = []
    for n in range(45):  # deadlines a second apart, the first study's the earliest
        status, body = call_api(stack, "POST", "/upload", {
            "files": [{"name": "a.dcm", "size": 100}], "deadline_seconds": 600 + n})
        assert status == 201, body
        study_ids.append(body["study_id"])
    now = int(time.time()) + 7200

    assert sweep(stack, now) == {"handed_out": study_ids[:30]}
    batches = [e["study_ids"] for e in stack.chunk_events if e["work"] == "sweep"]
    assert batches == [study_ids[:10], study_ids[10:20], study_ids[20:30]]
    assert ended_by_batches(stack)["incomplete"] == study_ids[:30]
    assert sweep(stack, now) == {"handed_out": study_ids[30:]}


def test_a_batch_short_of_time_hands_the_rest_of_its_studies_out_again(stack: Stack) -> None:
    study_ids = [str(declare(stack, ["a.dcm"])["study_id"]) for _ in range(3)]
    now = int(time.time()) + 7200
    sweep(stack, now)
    short = FakeContext()
    short.remaining_millis = 60_000  # under SWEEP_SECONDS_TO_SPARE
    ended = ended_by_batches(stack, short)
    assert (ended["incomplete"], sorted(ended["handed_back"])) == ([], sorted(study_ids))
    assert sorted(ended_by_batches(stack)["incomplete"]) == sorted(study_ids)
    assert {study_status(stack, i)["state"] for i in study_ids} == {"INCOMPLETE"}


def test_a_storage_outage_is_retried_swept_to_failed_503_and_redriven_to_stored(
    stack: Stack,
) -> None:
    body = declare(stack, ["ct.dcm"])
    study_id = str(body["study_id"])
    deliver_upload(stack, f"incoming/{study_id}/ct.dcm", CT_SMALL.read_bytes())
    success = next(e for e in stack.published() if e["detail-type"] == "validation.success")
    stack.s3.delete_bucket(Bucket=STORE)
    descriptor = stack.handler("descriptor")

    for _attempt in range(3):  # Lambda's first try and its two retries
        with pytest.raises(Exception, match="NoSuchBucket"):
            descriptor.lambda_handler(success, FakeContext())
        assert study_status(stack, study_id)["state"] == "VALID"
    assert stack.s3.get_object(Bucket=UPLOADS, Key=f"incoming/{study_id}/ct.dcm")

    assert sweep(stack, now=int(time.time()) + 7201) == {"handed_out": [study_id]}
    assert ended_by_batches(stack) == {"incomplete": [], "failed": [study_id], "handed_back": []}
    status = study_status(stack, study_id)
    assert (status["state"], status["status"]) == ("FAILED", 503)
    assert "NoSuchBucket" in status["timeline"][-1]["reason"]

    stack.s3.create_bucket(Bucket=STORE)
    descriptor.lambda_handler({**success, "redrive": True}, FakeContext())
    status = study_status(stack, study_id)
    assert status["state"] == "STORED"
    assert [e["state"] for e in status["timeline"]][-3:] == ["FAILED", "VALID", "STORED"]


def test_a_transient_failure_retried_by_lambda_ends_stored_never_failed(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = declare(stack, ["ct.dcm"])
    study_id = str(body["study_id"])
    table = stack.handler("validator").pipeline.services.table
    record_file = table.record_file
    calls = []

    def throttled_once(*args: object, **kwargs: object) -> object:
        calls.append(1)
        if len(calls) == 1:
            raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException",
                                         "Message": "throttled"}}, "UpdateItem")
        return record_file(*args, **kwargs)

    monkeypatch.setattr(table, "record_file", throttled_once)
    with pytest.raises(ClientError):
        deliver_upload(stack, f"incoming/{study_id}/ct.dcm", CT_SMALL.read_bytes(), "0A")
    assert study_status(stack, study_id)["state"] == "AWAITING_UPLOAD"
    stack.handler("validator").lambda_handler(
        s3_put_event(UPLOADS, f"incoming/{study_id}/ct.dcm", "0A"), FakeContext())
    deliver_success_events(stack)

    status = study_status(stack, study_id)
    assert status["state"] == "STORED"
    assert "FAILED" not in [e["state"] for e in status["timeline"]]


@pytest.mark.parametrize(
    "key",
    ["incoming/../../x.dcm", "incoming/a b+c%2F..%2F.dcm", "incoming/écho/ütf.dcm",
     "incoming/" + "0" * 32 + "/unknown-study.dcm"],
)
def test_plain_drops_with_hostile_keys_stay_inside_their_study_prefix(
    stack: Stack, key: str
) -> None:
    result = deliver_upload(stack, key, CT_SMALL.read_bytes())
    study_id = result["processed"][0]["study_id"]
    deliver_success_events(stack)

    assert study_status(stack, study_id)["state"] == "STORED"
    for stored in stack.keys(STORE):
        assert stored.startswith((f"studies/{study_id}/", f"rejected/{study_id}/")) or (
            "/" in stored and stored.split("/")[1] != study_id
        )
    assert all(".." not in k.split("/") for k in stack.keys(STORE))
    assert f"studies/{study_id}/original.dcm" in stack.keys(STORE)


def without_hex_ids(text: str) -> str:
    """Random hexadecimal ids and digests, and epoch times (emitted_at), replaced."""
    return re.sub(r"\b\d{10}\.\d+\b", "<time>", re.sub(r"[0-9a-f]{24,}", "<id>", text))


def test_no_patient_value_reaches_logs_or_events(
    stack: Stack, corpus, capsys: pytest.CaptureFixture[str],  # corpus: the root conftest fixture
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    broken = Path(get_testdata_file("MR_small.dcm")).read_bytes()[:-500]
    studies = {
        "ct": {"ct.dcm": CT_SMALL.read_bytes()},
        "mr": {p.name: p.read_bytes() for p in MR_STUDY},
        "rtplan": {"plan.dcm": Path(get_testdata_file("rtplan.dcm")).read_bytes()},
        "broken": {"broken.dcm": broken},
    }
    for files in studies.values():
        run_study(stack, files)
    values = corpus.whole_patient_values([CT_SMALL, *MR_STUDY,
                                          Path(get_testdata_file("rtplan.dcm")),
                                          Path(get_testdata_file("MR_small.dcm"))])
    assert values, "the corpus files carry patient values"

    captured = capsys.readouterr()
    # hexadecimal ids and digests (study ids, event ids, key digests, signatures) are random,
    # and epoch times change with the clock, so a short numeric value (the MR study's file
    # names are 4-digit numbers) can turn up inside one by chance: they are left out
    logs = without_hex_ids(captured.out + captured.err + caplog.text)
    events = without_hex_ids(json.dumps([e["detail"] for e in stack.published()]))
    statuses = without_hex_ids(json.dumps([study_status(stack, e["detail"]["study_id"])
                                           for e in stack.published()]))
    assert "upload received" in logs
    for name in (name for files in studies.values() for name in files):
        assert name not in events  # file names often hold patient names
    for value in values:
        assert value not in logs
        assert value not in events
        assert value not in statuses


def test_an_announcement_refused_by_eventbridge_is_made_again_by_the_retry(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = declare(stack, ["ct.dcm"])
    study_id = str(body["study_id"])
    publisher = stack.handler("validator").pipeline.services.publisher
    publish = publisher.publish
    refused: list[str] = []

    def partly_failing(study: str, *events: Event) -> list[str]:
        if any(e.detail_type is DetailType.VALIDATION_SUCCESS for e in events) and not refused:
            refused.append(study)
            raise PublishError("EventBridge refused 1 event(s): InternalFailure")
        return publish(study, *events)

    monkeypatch.setattr(publisher, "publish", partly_failing)
    with pytest.raises(PublishError):
        deliver_upload(stack, f"incoming/{study_id}/ct.dcm", CT_SMALL.read_bytes(), "0A")
    assert study_status(stack, study_id)["state"] == "VALID"
    stack.handler("validator").lambda_handler(
        s3_put_event(UPLOADS, f"incoming/{study_id}/ct.dcm", "0A"), FakeContext())
    deliver_success_events(stack)

    assert refused == [study_id]
    assert study_status(stack, study_id)["state"] == "STORED"
    assert detail_types(stack, study_id).count("validation.success") == 1


def test_a_redriven_upload_event_counts_its_file_and_finishes_the_study(stack: Stack) -> None:
    body = declare(stack, ["ct.dcm"])
    study_id = str(body["study_id"])
    key = f"incoming/{study_id}/ct.dcm"
    stack.s3.put_object(Bucket=UPLOADS, Key=key, Body=CT_SMALL.read_bytes())

    event = {**s3_put_event(UPLOADS, key, "0A"), "redrive": True}
    assert stack.handler("validator").lambda_handler(event, FakeContext())["processed"]
    deliver_success_events(stack)
    assert study_status(stack, study_id)["state"] == "STORED"



def test_an_arrival_that_completes_its_study_announces_upload_and_verdict_in_one_call(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = declare(stack, ["ct.dcm"])
    client = stack.handler("validator").pipeline.services.publisher.clients.events()  # type: ignore[attr-defined]
    put_events = client.put_events
    calls: list[list[str]] = []

    def counted(**kwargs: Any) -> Any:
        calls.append([entry["DetailType"] for entry in kwargs["Entries"]])
        return put_events(**kwargs)

    monkeypatch.setattr(client, "put_events", counted)
    deliver_upload(stack, f"incoming/{body['study_id']}/ct.dcm", CT_SMALL.read_bytes())
    assert calls == [["study.uploaded", "validation.success", "study.validated"]]


def test_an_arrival_that_fails_publishes_what_it_announced_and_raises_its_own_error(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = declare(stack, ["ct.dcm"])
    study_id = str(body["study_id"])
    judge = stack.handler("validator").pipeline.judge

    def broken(*_: object, **__: object) -> None:
        raise RuntimeError("judging failed")

    monkeypatch.setattr(judge, "judge_study", broken)
    with pytest.raises(RuntimeError, match="judging failed"):
        deliver_upload(stack, f"incoming/{study_id}/ct.dcm", CT_SMALL.read_bytes())
    assert detail_types(stack, study_id) == ["study.uploaded"]


def declared_study_of_three(stack: Stack, seed: str) -> tuple[str, list[dict[str, Any]]]:
    """A declared study of three real files, each put where the study's form puts it: its id
    and the notification of each file, in order."""
    files = dict(reidentified_study(3, seed=seed))
    body = declare_study(stack, files)
    events = []
    for name, data in files.items():
        key = incoming_prefix(body["study_id"]) + name
        version = stack.s3.put_object(Bucket=UPLOADS, Key=key, Body=data)["VersionId"]
        events.append(s3_put_event(UPLOADS, key, "0A", len(data), version))
    return str(body["study_id"]), events


def test_a_retry_counts_the_file_its_try_left_uncounted(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    study_id, (first, *others) = declared_study_of_three(stack, "uncounted")
    status_items = stack.handler("validator").pipeline.services.table.table
    update_item = status_items.update_item

    def count_refused(**kwargs: Any) -> Any:
        if "ADD received" in kwargs.get("UpdateExpression", ""):
            raise ClientError({"Error": {"Code": "InternalServerError", "Message": "down"}},
                              "UpdateItem")
        return update_item(**kwargs)

    monkeypatch.setattr(status_items, "update_item", count_refused)
    with pytest.raises(DependencyUnavailable):  # the file item is written, not the count
        stack.handler("validator").lambda_handler(first, FakeContext())
    monkeypatch.setattr(status_items, "update_item", update_item)
    for event in others:
        stack.handler("validator").lambda_handler(event, FakeContext())
    assert study_status(stack, study_id)["counts"]["received"] == 2

    stack.handler("validator").lambda_handler(first, FakeContext())  # Lambda's retry
    deliver_success_events(stack)
    status = study_status(stack, study_id)
    assert status["state"] == "STORED"
    assert status["counts"]["instances"] == 3


def test_a_retry_of_a_counted_file_before_the_last_is_judged_when_all_are_in(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    study_id, (first, second, third) = declared_study_of_three(stack, "counted-twice")
    publisher = stack.handler("validator").pipeline.services.publisher
    publish = publisher.publish

    def refused(study: str, *events: Event) -> list[str]:
        raise PublishError("EventBridge refused 1 event(s): InternalFailure")

    monkeypatch.setattr(publisher, "publish", refused)
    with pytest.raises(PublishError):  # counted, then stopped
        stack.handler("validator").lambda_handler(first, FakeContext())
    monkeypatch.setattr(publisher, "publish", publish)
    stack.handler("validator").lambda_handler(first, FakeContext())  # Lambda's retry
    stack.handler("validator").lambda_handler(second, FakeContext())
    status = study_status(stack, study_id)
    assert status["state"] == "RECEIVING"  # counted three times, but a file is missing
    assert "recounted" in [entry.get("reason") for entry in status["timeline"]]

    stack.handler("validator").lambda_handler(third, FakeContext())
    deliver_success_events(stack)
    status = study_status(stack, study_id)
    assert status["state"] == "STORED"
    assert status["counts"]["instances"] == 3
    assert detail_types(stack, study_id).count("validation.success") == 1
