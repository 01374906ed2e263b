"""Validator: S3 ObjectCreated on incoming/ -> validate -> status table -> EventBridge.

Also runs the deadline sweep when invoked by its schedule and ends the batches of overdue
studies it hands out (studies whose manifest was not fulfilled in time end INCOMPLETE,
studies stuck past their processing deadline FAILED), and copies chunks of large rejected
studies to rejected/ when the pipeline hands them out.
"""

from __future__ import annotations

from pacs_validator.aws.runtime.startup import garbage_collection_paused

with garbage_collection_paused():
    import time
    from pathlib import Path
    from typing import Any
    from urllib.parse import unquote_plus

    from aws_lambda_powertools import Logger, Metrics
    from aws_lambda_powertools.metrics import MetricUnit
    from aws_lambda_powertools.utilities.data_classes import S3Event
    from aws_lambda_powertools.utilities.data_classes.s3_event import S3EventRecord
    from aws_lambda_powertools.utilities.typing import LambdaContext

    from pacs_validator.aws.clients import Clients
    from pacs_validator.aws.runtime.idempotency import OncePerEvent
    from pacs_validator.aws.runtime.settings import load_settings
    from pacs_validator.aws.runtime.tracing import function_tracer
    from pacs_validator.aws.runtime.wiring import validating_pipeline_from_settings
    from pacs_validator.contract.invocations import REDRIVE, is_chunk_payload, is_sweep_payload
    from pacs_validator.contract.objects import UploadedObject

logger = Logger()
metrics = Metrics()
tracer = function_tracer()
settings = load_settings(Path(__file__).with_name("config.json"))
clients = Clients()
pipeline = validating_pipeline_from_settings(settings, clients)


def uploaded_object(record: S3EventRecord) -> UploadedObject:
    """The upload a record announces: its key (S3 notifications URL-encode keys), sequencer
    and version id."""
    s3_object = record.s3.get_object
    return UploadedObject(key=unquote_plus(s3_object.key),
                          sequencer=s3_object.sequencer or s3_object.etag or "",
                          version_id=s3_object.version_id, size=s3_object.size)


def process_object(record: dict[str, Any]) -> dict[str, Any]:
    """One uploaded object (called through :data:`process_once`)."""
    started = time.perf_counter()
    upload = uploaded_object(S3EventRecord(record))
    study_id = pipeline.study_for_object(upload)
    logger.set_correlation_id(study_id)
    with pipeline.failures_recorded(study_id):
        received = pipeline.receive(study_id, upload)
    metrics.add_metric("ProcessingTime", MetricUnit.Milliseconds,
                       (time.perf_counter() - started) * 1000)
    if received.status is None:
        metrics.add_metric("UploadsUndeclared", MetricUnit.Count, 1)
    else:
        accepted = received.status == 200
        metrics.add_metric("InstancesAccepted" if accepted else "InstancesRejected",
                           MetricUnit.Count, 1)
        metrics.add_metric(f"InstancesStatus{received.status}", MetricUnit.Count, 1)
    logger.info("upload received", extra={"study_id": received.study_id,
                                          "status": received.status,
                                          "outcome": received.outcome.value,
                                          "study_complete": received.study_complete})
    return {"study_id": received.study_id, "status": received.status,
            "outcome": received.outcome.value}


process_once = OncePerEvent(
    process_object, data_keyword_argument="record", table_name=settings.idempotency_table,
    event_key_jmespath="[s3.bucket.name, s3.object.key, s3.object.sequencer, s3.object.versionId]",
    clients=clients)
"""One uploaded object, at most once per S3 event (bucket, key, sequencer, version)."""


@logger.inject_lambda_context(log_event=False)
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    process_once.config.register_lambda_context(context)
    if event.get("detail-type") == "Scheduled Event":
        handed_out = pipeline.sweep()
        logger.info("deadline sweep", extra={k: len(ids) for k, ids in handed_out.items()})
        return handed_out
    if is_sweep_payload(event):  # a batch of overdue studies the sweep handed out
        ended = pipeline.end_overdue(event, lambda: context.get_remaining_time_in_millis() / 1000)
        logger.info("overdue studies ended", extra={k: len(ids) for k, ids in ended.items()})
        return ended
    if is_chunk_payload(event):  # copying a chunk of a rejected study to rejected/
        logger.set_correlation_id(str(event["study_id"]))
        pipeline.handle_chunk(event)
        return {"study_id": event["study_id"], "chunk": event["chunk"]}
    records = list(S3Event(event).records)
    if event.get(REDRIVE):
        for record in records:
            pipeline.reopen(pipeline.study_for_object(uploaded_object(record)))
    return {"processed": [process_once(record=record.raw_event) for record in records]}
