"""API: POST /upload (study-wide presigned POST + manifest), GET /status/{study_id}, GET /health,
and GET / (the browser upload page)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import (
    BadRequestError,
    NotFoundError,
    ServiceError,
)
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import BotoCoreError, ClientError

from pacs_validator.settings import load_settings
from pacs_validator.status import PageTokenError, StatusTable, decode_token, public_view
from pacs_validator.storage import (
    ObjectStore,
    incoming_key,
    incoming_prefix,
    is_study_id,
    manifest_key,
    new_study_id,
)
from pacs_validator.uploads import (
    UploadRequestError,
    manifest_document,
    parse_upload_request,
    requested_deadline,
)

logger = Logger()
metrics = Metrics()
tracer = Tracer()
app = APIGatewayRestResolver()
settings = load_settings(Path(__file__).with_name("config.json"))
table = StatusTable(settings.status_table, settings.retention_days)
uploads = ObjectStore(settings.uploads_bucket)
UPLOAD_PAGE = Path(__file__).with_name("upload.html").read_text("utf-8")
STATUS_PAGE_DEFAULT = 100
STATUS_PAGE_MAX = 1000


class PayloadTooLargeError(ServiceError):
    def __init__(self, message: str) -> None:
        super().__init__(413, message)


@app.post("/upload")
@tracer.capture_method
def create_upload() -> Response[dict[str, Any]]:
    body = app.current_event.json_body if app.current_event.body else None
    try:
        files = parse_upload_request(body, settings.max_files_per_study)
        deadline = requested_deadline(body, settings.upload_deadline_seconds)
    except UploadRequestError as error:
        raise BadRequestError(str(error)) from error
    too_large = [f.name for f in files if f.size > settings.max_upload_bytes]
    if too_large:
        raise PayloadTooLargeError(f"{len(too_large)} file(s) exceed the cap of "
                                   f"{settings.max_upload_bytes} bytes")
    study_id = new_study_id()
    logger.set_correlation_id(study_id)
    uploads.put_json(manifest_key(study_id), manifest_document(files), indent=None)
    table.create(study_id, expected=len(files), deadline_seconds=deadline)
    prefix = incoming_prefix(study_id)
    form = uploads.presigned_post(prefix + "${filename}", settings.max_upload_bytes,
                                  settings.presign_expiry_seconds)
    answer: dict[str, Any] = {
        "study_id": study_id,
        "upload": {**form, "key_prefix": prefix},
        "expires_in": settings.presign_expiry_seconds,
        "max_bytes": settings.max_upload_bytes,
        "files": len(files),
    }
    if len(files) <= settings.per_file_forms_max:
        answer["uploads"] = [
            {"name": f.name, **uploads.presigned_post(incoming_key(study_id, f.name), f.size,
                                                      settings.presign_expiry_seconds)}
            for f in files
        ]
    metrics.add_metric("UploadsRequested", MetricUnit.Count, 1)
    logger.info("upload created", extra={"study_id": study_id, "files": len(files)})
    return Response(status_code=201, content_type=content_types.APPLICATION_JSON, body=answer)


def _page_size(text: str | None) -> int:
    if text is None:
        return STATUS_PAGE_DEFAULT
    if not text.isdigit() or not 1 <= int(text) <= STATUS_PAGE_MAX:
        raise BadRequestError(f"limit must be a whole number from 1 to {STATUS_PAGE_MAX}")
    return int(text)


@app.get("/status/<study_id>")
@tracer.capture_method
def get_status(study_id: str) -> dict[str, Any]:
    """The study's state and verdict with one page of per-file verdicts (``?limit=&next=``)."""
    if not is_study_id(study_id):
        raise BadRequestError("study_id is not of the form of 32 lower-case hex digits")
    limit = _page_size(app.current_event.get_query_string_value("limit"))
    token = app.current_event.get_query_string_value("next")
    try:
        after = decode_token(token) if token is not None else None
    except PageTokenError as error:
        raise BadRequestError(str(error)) from error
    study = table.get(study_id)
    if study is None:
        raise NotFoundError("no such study")
    return public_view(study, table.file_page(study_id, limit, after))


@app.get("/")
def upload_page() -> Response[str]:
    """One static page that uploads a folder straight to S3 through this API (vanilla JS)."""
    return Response(status_code=200, content_type="text/html; charset=utf-8", body=UPLOAD_PAGE)


@app.get("/health")
def health() -> dict[str, Any]:
    return {"status": "ok"}


@app.exception_handler(ServiceError)
def service_error(error: ServiceError) -> Response[dict[str, Any]]:
    """Typed errors raised by the routes keep their status (the catch-all below would not)."""
    return Response(status_code=error.status_code, content_type=content_types.APPLICATION_JSON,
                    body={"statusCode": error.status_code, "message": error.msg})


@app.exception_handler([ClientError, BotoCoreError])
def dependency_unavailable(error: Exception) -> Response[dict[str, Any]]:
    logger.exception("AWS dependency failed")
    return Response(status_code=503, content_type=content_types.APPLICATION_JSON,
                    body={"message": "storage or AWS dependency unavailable"})


@app.exception_handler(Exception)
def unexpected(error: Exception) -> Response[dict[str, Any]]:
    logger.exception("unexpected error")
    return Response(status_code=500, content_type=content_types.APPLICATION_JSON,
                    body={"message": "internal error"})


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
