"""Descriptor: EventBridge validation.success -> metadata.json + storage under studies/<id>/."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent, event_source
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from pacs_validator.pipeline import pipeline_from_settings
from pacs_validator.settings import load_settings

logger = Logger()
metrics = Metrics()
tracer = Tracer()
settings = load_settings(Path(__file__).with_name("config.json"))
pipeline = pipeline_from_settings(settings)
idempotency = IdempotencyConfig(event_key_jmespath="event_id", expires_after_seconds=24 * 3600)
persistence = DynamoDBPersistenceLayer(table_name=os.environ.get("IDEMPOTENCY_TABLE", ""))


@idempotent_function(
    data_keyword_argument="detail", config=idempotency, persistence_store=persistence
)
def store(detail: dict[str, Any]) -> dict[str, Any]:
    """Store one valid study, once per validation.success event id."""
    study_id = str(detail["study_id"])
    with pipeline.failures_recorded(study_id):
        stored = pipeline.store_study(study_id)
    if stored is None:
        logger.warning("study is not VALID; nothing stored", extra={"study_id": study_id})
        return {"study_id": study_id, "stored": False}
    metrics.add_metric("StudiesStored", MetricUnit.Count, 1)
    metrics.add_metric("InstancesStored", MetricUnit.Count, stored.instances)
    metrics.add_metric("BytesStored", MetricUnit.Bytes, stored.bytes)
    logger.info("study stored", extra={"study_id": study_id, "instances": stored.instances})
    return {"study_id": study_id, "stored": True}


@logger.inject_lambda_context(log_event=False)
@metrics.log_metrics
@tracer.capture_lambda_handler
@event_source(data_class=EventBridgeEvent)
def lambda_handler(event: EventBridgeEvent, context: LambdaContext) -> dict[str, Any]:
    idempotency.register_lambda_context(context)
    logger.set_correlation_id(str(event.detail.get("study_id")))
    result: dict[str, Any] = store(detail=event.detail)
    return result
