"""Smoke handlers: prove layers, S3/EventBridge/API triggers, DynamoDB, Powertools idempotency."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import boto3
import pydicom  # from the layer
from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)

logger = Logger()
app = APIGatewayRestResolver()
table = boto3.resource("dynamodb").Table(os.environ["TABLE_NAME"])
events = boto3.client("events")
idempotency = IdempotencyConfig(expires_after_seconds=3600)
persistence = DynamoDBPersistenceLayer(table_name=os.environ["IDEMPOTENCY_TABLE"])


@app.get("/health")
def health() -> dict[str, Any]:
    return {"status": "ok", "pydicom": pydicom.__version__, "python": sys.version.split()[0]}


@app.post("/presign")
def presign() -> dict[str, Any]:
    """A presigned POST made inside a handler (its boto3 talks to AWS_ENDPOINT_URL)."""
    body = app.current_event.json_body or {}
    return boto3.client("s3").generate_presigned_post(
        os.environ["BUCKET_NAME"],
        f"incoming/{body.get('name', 'upload.dcm')}",
        Conditions=[["content-length-range", 1, int(body.get("max_bytes", 100))]],
        ExpiresIn=300,
    )


def api_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return app.resolve(event, context)


@idempotent_function(
    data_keyword_argument="record", persistence_store=persistence, config=idempotency
)
def record_item(record: dict[str, Any]) -> dict[str, Any]:
    table.put_item(
        Item={**record, "expires_at": int(time.time()) + 3600},
        ConditionExpression="attribute_not_exists(pk)",
    )
    logger.info("stored", extra={"pk": record["pk"]})
    return record


def worker_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    idempotency.register_lambda_context(context)
    stored = []
    for s3_record in event.get("Records", []):
        key = s3_record["s3"]["object"]["key"]
        stored.append(record_item(record={"pk": f"s3:{key}", "kind": "s3", "key": key}))
        # an event from inside a handler must reach LocalStack's EventBridge (and come back to us)
        events.put_events(
            Entries=[{"EventBusName": os.environ["BUS_NAME"], "Source": "smoke.app",
                      "DetailType": "object.seen", "Detail": json.dumps({"key": key})}]
        )
    if "detail-type" in event:
        detail = event.get("detail") or {}
        pk = f"event:{event['detail-type']}:{detail.get('key', event['id'])}"
        stored.append(record_item(record={"pk": pk, "kind": "event"}))
    print(f"worker stored {len(stored)} item(s)")
    return {"stored": [item["pk"] for item in stored]}


def slow_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    print("slow handler sleeping", event.get("sleep", 3))
    time.sleep(float(event.get("sleep", 3)))
    return {"slept": event.get("sleep", 3)}
