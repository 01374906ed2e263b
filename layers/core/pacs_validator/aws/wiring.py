"""The wiring: the pipeline and the API's resources built from a function's settings.

Handlers import :mod:`pacs_validator.aws` (this wiring, the settings, the links) and
:mod:`pacs_validator.contract`, nothing else of the core: what they need of the flow (the
pipeline, the stored study, the errors it raises) reaches them from here.
"""

from __future__ import annotations

from dataclasses import dataclass

from pacs_validator.aws.dynamodb import DynamoDBStatusTable
from pacs_validator.aws.eventbridge import EventBridgePublisher
from pacs_validator.aws.lambda_dispatch import LambdaDispatcher
from pacs_validator.aws.s3 import S3Bucket
from pacs_validator.aws.settings import Settings
from pacs_validator.contract.invocations import Work
from pacs_validator.flow.pipeline import Pipeline
from pacs_validator.flow.ports import DependencyUnavailable as DependencyUnavailable
from pacs_validator.flow.services import Services
from pacs_validator.flow.storing import StoredStudy as StoredStudy


def pipeline_from_settings(settings: Settings) -> Pipeline:
    """The pipeline wired to the deployed resources that ``settings`` names."""
    return Pipeline(Services(
        config=settings.validator,
        table=DynamoDBStatusTable(
            settings.status_table, settings.retention_days,
            processing_deadline_seconds=settings.processing_deadline_seconds),
        uploads=S3Bucket(settings.uploads_bucket),
        store=S3Bucket(settings.store_bucket),
        publisher=EventBridgePublisher(settings.event_bus),
        dispatcher=LambdaDispatcher({Work.STORE: settings.store_function,
                                     Work.REJECT: settings.reject_function}),
        deadline_seconds=settings.upload_deadline_seconds,
        chunk_instances=settings.chunk_instances,
    ))


@dataclass(frozen=True)
class ApiResources:
    """What the API reads and writes: the status table, and the two buckets (the uploads
    bucket for forms and manifests, the store for download links)."""

    table: DynamoDBStatusTable
    uploads: S3Bucket
    store: S3Bucket


def api_resources(settings: Settings) -> ApiResources:
    """The API's resources named by ``settings``, the two buckets sharing one S3 client."""
    uploads = S3Bucket(settings.uploads_bucket)
    return ApiResources(
        table=DynamoDBStatusTable(settings.status_table, settings.retention_days),
        uploads=uploads,
        store=S3Bucket(settings.store_bucket, uploads.client),
    )
