"""Descriptor: stores valid studies under studies/<id>/, chunk by chunk.

Two kinds of event reach it: EventBridge ``validation.success`` (start storing the study)
and the chunk events the pipeline hands out for studies too large for one invocation
(copy one chunk of a valid study to studies/<id>/, or of a rejected one to rejected/<id>/;
the last chunk assembles metadata.json and dicom.json).
"""

from __future__ import annotations

from pacs_validator.aws.runtime.startup import garbage_collection_paused

with garbage_collection_paused():
    from pathlib import Path
    from typing import Any

    from aws_lambda_powertools import Logger, Metrics
    from aws_lambda_powertools.metrics import MetricUnit
    from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent
    from aws_lambda_powertools.utilities.typing import LambdaContext

    from pacs_validator.aws.clients import Clients
    from pacs_validator.aws.runtime.idempotency import OncePerEvent
    from pacs_validator.aws.runtime.settings import load_settings
    from pacs_validator.aws.runtime.tracing import function_tracer
    from pacs_validator.aws.runtime.wiring import StoredStudy, storing_pipeline_from_settings
    from pacs_validator.contract.invocations import REDRIVE, is_chunk_payload

logger = Logger()
metrics = Metrics()
tracer = function_tracer()
settings = load_settings(Path(__file__).with_name("config.json"))
clients = Clients()
pipeline = storing_pipeline_from_settings(settings, clients)


def counted(stored: StoredStudy | None, study_id: str) -> bool:
    """Metrics and a log line for a study this invocation finished storing."""
    if stored is None:
        return False
    metrics.add_metric("StudiesStored", MetricUnit.Count, 1)
    metrics.add_metric("InstancesStored", MetricUnit.Count, stored.instances)
    metrics.add_metric("BytesStored", MetricUnit.Bytes, stored.bytes)
    logger.info("study stored", extra={"study_id": study_id, "instances": stored.instances})
    return True


def start_storage(detail: dict[str, Any]) -> dict[str, Any]:
    """Start storing one valid study (called through :data:`start_once`)."""
    study_id = str(detail["study_id"])
    with pipeline.failures_recorded(study_id):
        stored = pipeline.start_storage(study_id)
    return {"study_id": study_id, "stored": counted(stored, study_id)}


start_once = OncePerEvent(start_storage, data_keyword_argument="detail",
                          event_key_jmespath="event_id", table_name=settings.idempotency_table,
                          clients=clients)
"""Start storing one valid study, at most once per validation.success event id."""


@logger.inject_lambda_context(log_event=False)
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    start_once.config.register_lambda_context(context)
    if is_chunk_payload(event):  # chunks are idempotent: copies overwrite, completion is a set
        study_id = str(event["study_id"])
        logger.set_correlation_id(study_id)
        stored = pipeline.handle_chunk(event)
        return {"study_id": study_id, "chunk": event["chunk"], "stored": counted(stored, study_id)}
    detail = EventBridgeEvent(event).detail
    logger.set_correlation_id(str(detail.get("study_id")))
    if event.get(REDRIVE):
        pipeline.reopen(str(detail["study_id"]))
    return start_once(detail=detail)
