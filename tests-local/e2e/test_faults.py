"""Faults on the deployed stack: retries, the dead-letter queue, redrive, the deadline sweep."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ROOT, STACK_NAME, Deployment, aws
from pydicom.data import get_testdata_file

from pacs_validator.contract.keys import incoming_prefix
from pacs_validator.transfer.client import PacsClient

pytestmark = pytest.mark.e2e

CT_SMALL = Path(get_testdata_file("CT_small.dcm"))
MR_SMALL = Path(get_testdata_file("MR_small.dcm"))


def wait_for(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what} after {timeout} s")
        time.sleep(1)


def set_environment(function: str, variables: dict[str, str]) -> None:
    """Change the descriptor's environment, and wait until its new version answers, so that
    the events that follow meet the new configuration."""
    client = aws("lambda")
    client.update_function_configuration(FunctionName=function,
                                         Environment={"Variables": variables})
    wait_for(lambda: client.get_function_configuration(FunctionName=function)
             .get("LastUpdateStatus") in ("Successful", None), 60, "the function update")
    probe = (ROOT / "events" / "descriptor-chunk.json").read_bytes()
    wait_for(lambda: "FunctionError" not in client.invoke(FunctionName=function, Payload=probe),
             60, "the updated function to answer")


@pytest.fixture
def descriptor_copying_to_a_missing_bucket(deployment: Deployment) -> Iterator[str]:
    """The descriptor's store bucket points nowhere (every CopyObject fails) until the test
    restores it; yields the function name."""
    function = deployment.outputs["DescriptorFunctionName"]
    variables = aws("lambda").get_function_configuration(
        FunctionName=function)["Environment"]["Variables"]
    set_environment(function, {**variables, "STORE_BUCKET": f"missing-{uuid.uuid4().hex}"})
    try:
        yield function
    finally:
        set_environment(function, variables)


def dead_letters(queue_url: str) -> int:
    attributes = aws("sqs").get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"])


def test_a_failing_copy_is_retried_then_dead_lettered_and_redrive_stores_the_study(
    deployment: Deployment, descriptor_copying_to_a_missing_bucket: str,
) -> None:
    queue = deployment.outputs["DescriptorDeadLetterQueueUrl"]
    before = dead_letters(queue)
    study_id = deployment.api.upload({"ct.dcm": CT_SMALL.read_bytes()})

    wait_for(lambda: dead_letters(queue) > before, 90, "the event in the dead-letter queue")
    status = deployment.api.status(study_id).json()
    assert status["state"] == "VALID"
    assert deployment.keys(deployment.uploads_bucket, f"incoming/{study_id}/") == [
        f"incoming/{study_id}/ct.dcm"]

    set_environment(descriptor_copying_to_a_missing_bucket, {
        **aws("lambda").get_function_configuration(
            FunctionName=descriptor_copying_to_a_missing_bucket)["Environment"]["Variables"],
        "STORE_BUCKET": deployment.store_bucket})
    redriven = subprocess.run([str(ROOT / "local-runtime" / "stack"), "redrive", "--stack",
                               STACK_NAME],
                              capture_output=True, text=True, timeout=120, check=False)
    assert redriven.returncode == 0, redriven.stderr
    assert "replayed" in redriven.stdout
    final = deployment.api.wait(study_id, timeout=120)
    assert final["state"] == "STORED"
    assert deployment.read(deployment.store_bucket, f"studies/{study_id}/original.dcm") == \
        CT_SMALL.read_bytes()


def test_a_study_missing_files_ends_incomplete_and_a_late_file_is_recorded(
    deployment: Deployment,
) -> None:
    client = deployment.api
    response = client.declare({"ct.dcm": CT_SMALL.stat().st_size,
                               "mr.dcm": MR_SMALL.stat().st_size}, deadline_seconds=60)
    study_id = response["study_id"]
    PacsClient.post_file(response["uploads"][0], "ct.dcm", CT_SMALL.read_bytes())

    status = client.wait(study_id, timeout=210, interval=2)  # the sweep runs every minute
    assert (status["state"], status["status"]) == ("INCOMPLETE", 422)
    assert "study.manifest-missing" in {f["rule"] for f in status["findings"]}
    assert f"rejected/{study_id}/ct.dcm" in deployment.keys(deployment.store_bucket,
                                                            f"rejected/{study_id}/")

    # the form expired at the deadline: the late file is an S3 drop (or a post still in flight)
    late_key = incoming_prefix(study_id) + "mr.dcm"
    aws("s3").put_object(Bucket=deployment.uploads_bucket, Key=late_key,
                         Body=MR_SMALL.read_bytes())
    wait_for(lambda: any(f["late"] for f in client.status(study_id).json()["files"]), 60,
             "the late file on the study")
    final = client.status(study_id).json()
    assert final["state"] == "INCOMPLETE"
    assert {f["name"]: f["late"] for f in final["files"]} == {"ct.dcm": False, "mr.dcm": True}
