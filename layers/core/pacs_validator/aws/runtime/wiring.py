"""The wiring: the pipelines built from a function's settings.

Handlers import :mod:`pacs_validator.aws` (its adapters and this runtime, never its operator
tools) and :mod:`pacs_validator.contract`, nothing else of the core: what the validator and
the descriptor need of the flow (the pipeline, the stored study) reaches them from here, as
what the API needs (its uploads). Neither the API's uploads nor the descriptor's pipeline
loads the rules or pydicom: only the validator's pipeline does, when it is built.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from pacs_validator.aws.clients import Clients
from pacs_validator.aws.dynamodb import DynamoDBStatusTable
from pacs_validator.aws.eventbridge import EventBridgePublisher
from pacs_validator.aws.lambda_dispatch import LambdaDispatcher
from pacs_validator.aws.runtime.settings import Settings
from pacs_validator.aws.s3 import S3Bucket
from pacs_validator.contract.invocations import Work
from pacs_validator.flow.services import Services
from pacs_validator.flow.storing import StoredStudy as StoredStudy
from pacs_validator.flow.storing_pipeline import StoringPipeline
from pacs_validator.flow.uploads import UploadRules, Uploads

if TYPE_CHECKING:  # imported by validating_pipeline_from_settings: see there
    from pacs_validator.flow.validating_pipeline import ValidatingPipeline


def services_from_settings(settings: Settings, clients: Clients) -> Services:
    """The deployed resources that ``settings`` names, through the function's ``clients``
    (none is made before it is used)."""
    return Services(
        validator_overrides=settings.validator_overrides,
        table=DynamoDBStatusTable(
            settings.status_table, settings.retention_days, clients,
            processing_deadline_seconds=settings.processing_deadline_seconds),
        uploads=S3Bucket(settings.uploads_bucket, clients),
        store=S3Bucket(settings.store_bucket, clients),
        publisher=EventBridgePublisher(settings.event_bus, clients),
        dispatcher=LambdaDispatcher({Work.STORE: settings.store_function,
                                     Work.REJECT: settings.reject_function,
                                     Work.SWEEP: settings.reject_function}, clients),
        upload_deadline_seconds=settings.upload_deadline_seconds,
        chunk_instances=settings.chunk_instances,
        duplicate_policy=settings.duplicate_policy,
        fingerprint_secret=secret_reader(settings.fingerprint_key_secret),
    )


def secret_reader(secret: str) -> Callable[[], bytes] | None:
    """Reads the Secrets Manager secret ``secret`` when called, through Powertools'
    parameters as the API reads its tokens (None when no secret is named)."""
    if not secret:
        return None

    def read() -> bytes:
        from aws_lambda_powertools.utilities import parameters

        return str(parameters.get_secret(secret)).encode()

    return read


def validating_pipeline_from_settings(settings: Settings, clients: Clients) -> ValidatingPipeline:
    """The validator's pipeline: every step, receiving and judging included."""
    # Imported here, not with this module: receiving and judging validate with pydicom, and
    # the descriptor, which imports this module too, must not load it (its cold start).
    from pacs_validator.flow.validating_pipeline import ValidatingPipeline

    return ValidatingPipeline(services_from_settings(settings, clients))


def storing_pipeline_from_settings(settings: Settings, clients: Clients) -> StoringPipeline:
    """The descriptor's pipeline: storing judged studies and recovering, nothing of pydicom
    until a chunk has a preview to render."""
    return StoringPipeline(services_from_settings(settings, clients))


def uploads_from_settings(settings: Settings, table: DynamoDBStatusTable,
                          uploads: S3Bucket) -> Uploads:
    """The API's uploads: declaring studies, handing out their forms, reading them, over the
    handler's own status table and uploads bucket."""
    rules = UploadRules(
        max_upload_bytes=settings.max_upload_bytes, max_study_bytes=settings.max_study_bytes,
        max_files_per_study=settings.max_files_per_study,
        max_open_studies=settings.max_open_studies,
        upload_deadline_seconds=settings.upload_deadline_seconds,
        min_upload_deadline_seconds=settings.min_upload_deadline_seconds,
        presign_expiry_seconds=settings.presign_expiry_seconds,
        per_file_forms_max=settings.per_file_forms_max,
        study_wide_forms=settings.study_wide_forms)
    return Uploads(rules, table, uploads, forms=uploads)
