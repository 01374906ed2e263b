"""API: POST /upload (the manifest, and presigned POSTs for the first declared files),
POST /upload/{study_id} (forms for more of them, by name, while the study takes files),
GET /status/{study_id}, GET /health, and GET / (the
browser upload page).

Each study belongs to the caller that declared it: another caller's study answers 404 as an
unknown one does, except to an admin. Every create, renewal, status read and link issue is
audited in one log line (caller, study id, action, outcome; nothing from the files)."""

from __future__ import annotations

from pacs_validator.aws.runtime.startup import garbage_collection_paused

with garbage_collection_paused():
    import base64
    import hashlib
    import re
    import time
    from collections.abc import Iterable, Mapping
    from functools import cache, lru_cache
    from pathlib import Path
    from typing import Any
    from urllib.parse import urlsplit

    from aws_lambda_powertools import Logger, Metrics
    from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
    from aws_lambda_powertools.event_handler.exceptions import NotFoundError, ServiceError
    from aws_lambda_powertools.event_handler.middlewares import NextMiddleware
    from aws_lambda_powertools.logging import correlation_paths
    from aws_lambda_powertools.metrics import MetricUnit
    from aws_lambda_powertools.utilities import parameters
    from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError
    from aws_lambda_powertools.utilities.typing import LambdaContext

    from pacs_validator.aws.clients import Clients
    from pacs_validator.aws.dynamodb import DynamoDBStatusTable
    from pacs_validator.aws.errors import DependencyUnavailable
    from pacs_validator.aws.links import study_links
    from pacs_validator.aws.runtime.settings import load_settings
    from pacs_validator.aws.runtime.snapstart import on_snapshot
    from pacs_validator.aws.runtime.tracing import function_tracer
    from pacs_validator.aws.s3 import S3Bucket
    from pacs_validator.contract.api_request import RequestBodyError, json_body
    from pacs_validator.contract.auth import (
        ANONYMOUS,
        AuthenticationError,
        AuthMode,
        Caller,
        TokenBook,
        authenticate,
        iam_caller,
        token_book,
    )
    from pacs_validator.contract.keys import (
        incoming_key,
        incoming_prefix,
        is_study_id,
        manifest_key,
        new_study_id,
    )
    from pacs_validator.contract.status_view import (
        PageTokenError,
        decode_token,
        has_kept_aside,
        public_view,
    )
    from pacs_validator.contract.upload_request import (
        DeclaredFile,
        StudyClosedError,
        UploadRequestError,
        declared_files,
        form_expiry,
        manifest_document,
        parse_form_request,
        parse_upload_request,
        renewed_form_expiry,
        requested_deadline,
    )

logger = Logger()
metrics = Metrics()
tracer = function_tracer()
app = APIGatewayRestResolver()
settings = load_settings(Path(__file__).with_name("config.json"))
clients = Clients()
table = DynamoDBStatusTable(settings.status_table, settings.retention_days, clients)
uploads = S3Bucket(settings.uploads_bucket, clients)
store = S3Bucket(settings.store_bucket, clients)
UPLOAD_PAGE = Path(__file__).with_name("upload.html").read_text("utf-8")
STATUS_PAGE_DEFAULT = 100
STATUS_PAGE_MAX = 1000
SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
"""On every answer: no content sniffing, and no presigned URL or study id leaks through a
Referer when a link is followed."""


class PayloadTooLargeError(ServiceError):
    def __init__(self, message: str) -> None:
        super().__init__(413, message)


class TooManyOpenStudiesError(ServiceError):
    def __init__(self, cap: int) -> None:
        super().__init__(429, f"this caller has {cap} studies open, the most it may: finish "
                              "them, or wait for their deadlines, before declaring another")


class BadRequestError(ServiceError):
    def __init__(self, message: str) -> None:
        super().__init__(400, message)


class UnknownStudyError(ServiceError):
    """404 for a study id of our format that no study has (Powertools' own NotFoundError
    means that no route matched)."""

    def __init__(self) -> None:
        super().__init__(404, "no such study")


def request_json() -> Any:
    """The request's JSON body (None when it has none), or a 4xx :class:`RequestBodyError`."""
    event = app.current_event
    return json_body(event.body, bool(event.is_base64_encoded),
                     event.headers.get("content-type"), settings.max_request_bytes)


def require_study_id(study_id: str) -> None:
    """400 for a path's study id that is not of our format (nothing is looked up)."""
    if not is_study_id(study_id):
        raise BadRequestError("study_id is not of the form of 32 lower-case hex digits")


@lru_cache(maxsize=2)
def parsed_tokens(secret: str) -> TokenBook:
    """The token secret parsed once per value (the value itself is cached by Powertools
    for ``token_cache_seconds``), not on every request."""
    return token_book(secret)


def request_caller() -> Caller:
    """Who makes the current request. TOKEN: the label of the bearer token found in the
    token secret; IAM: the principal whose signature API Gateway checked (AWS_IAM on those
    methods in template.yaml), a role's session as the role, an admin when AdminPrincipals
    names it; NONE: :data:`ANONYMOUS`."""
    event = app.current_event
    if settings.api_auth is AuthMode.TOKEN:
        secret = parameters.get_secret(settings.api_tokens_secret,
                                       max_age=settings.token_cache_seconds)
        return authenticate(event.headers.get("authorization"), parsed_tokens(secret))
    if settings.api_auth is AuthMode.IAM:
        return iam_caller(event.request_context.identity.user_arn, settings.admin_principals)
    return ANONYMOUS


def identify_caller(app: APIGatewayRestResolver,
                    next_middleware: NextMiddleware) -> Response[Any]:
    """The route runs only for a known caller, found in ``app.context["caller"]``."""
    app.context["caller"] = request_caller()
    return next_middleware(app)


AUTHENTICATED = [identify_caller]
"""The middlewares of the routes that need a known caller."""


def current_caller() -> Caller:
    caller: Caller = app.context["caller"]
    return caller


def audit(action: str, outcome: str, study_id: str | None) -> None:
    """The one audit line of an access: who, which study, what, and how it ended. Only
    ids and words of ours: never a file name, a token or anything read from a file."""
    logger.info("audit", extra={"audit": {"caller": current_caller().identity,
                                          "study_id": study_id, "action": action,
                                          "outcome": outcome}})


def readable_study(study_id: str, action: str) -> dict[str, Any]:
    """The study, when the caller may read it; else 404 exactly as for an unknown id, so
    an answer never tells another caller that the study exists."""
    study = table.get(study_id)
    if study is None or not current_caller().may_read(study.get("owner")):
        audit(action, "not-found" if study is None else "refused", study_id)
        raise UnknownStudyError()
    return study


def study_form(study: Mapping[str, Any], expires_in: int) -> dict[str, Any]:
    """The study-wide upload form (``StudyWideForms`` enabled): a presigned POST for any key
    under ``incoming/<id>/``, valid ``expires_in`` seconds from now, each file at most the
    largest size the study declared (``MaxUploadBytes`` for a study recorded before the
    item kept it): a form for a study of small files lets no large one in."""
    prefix = incoming_prefix(str(study["study_id"]))
    max_bytes = int(study.get("largest_declared") or settings.max_upload_bytes)
    form = uploads.presigned_post(prefix + "${filename}", max_bytes, expires_in)
    return {**form, "key_prefix": prefix}


def file_forms(study_id: str, files: Iterable[DeclaredFile], expires_in: int
               ) -> list[dict[str, Any]]:
    """One presigned POST per declared file, for its exact key and exact size: what such a
    form lets in is that file or nothing."""
    return [{"name": f.name, **uploads.presigned_post(incoming_key(study_id, f.name), f.size,
                                                      expires_in, min_bytes=f.size)}
            for f in files]


def forms_answer(study: Mapping[str, Any], expires_in: int,
                 files: Iterable[DeclaredFile]) -> dict[str, Any]:
    """A study's forms, as ``POST /upload`` and ``POST /upload/{id}`` answer them: per-file
    forms for ``files``, and the study-wide form when the deployment hands it out."""
    study_id = str(study["study_id"])
    answer: dict[str, Any] = {
        "study_id": study_id,
        "expires_in": expires_in,
        "max_bytes": int(study.get("largest_declared") or settings.max_upload_bytes),
        "files": int(study["expected"]),
        "uploads": file_forms(study_id, files, expires_in),
    }
    if settings.study_wide_forms:
        answer["upload"] = study_form(study, expires_in)
    return answer


def require_declared_sizes(files: list[DeclaredFile]) -> None:
    """413 for a declaration over the size caps: of one file, or of the whole study."""
    too_large = sum(1 for f in files if f.size > settings.max_upload_bytes)
    if too_large:
        raise PayloadTooLargeError(f"{too_large} file(s) exceed the cap of "
                                   f"{settings.max_upload_bytes} bytes")
    if sum(f.size for f in files) > settings.max_study_bytes:
        raise PayloadTooLargeError("the declared sizes add up to more than the cap of "
                                   f"{settings.max_study_bytes} bytes per study")


@app.post("/upload", middlewares=AUTHENTICATED)
@tracer.capture_method(capture_response=False)
def create_upload() -> Response[dict[str, Any]]:
    body = request_json()
    files = parse_upload_request(body, settings.max_files_per_study)
    deadline = requested_deadline(body, settings.min_upload_deadline_seconds,
                                  settings.upload_deadline_seconds)
    try:
        require_declared_sizes(files)
    except PayloadTooLargeError:
        audit("create", "too-large", None)
        raise
    owner = current_caller().identity
    cap = settings.max_open_studies
    if cap and table.open_studies(owner, cap) >= cap:
        audit("create", "too-many-open", None)
        raise TooManyOpenStudiesError(cap)
    study_id = new_study_id()
    logger.set_correlation_id(study_id)
    uploads.put_json(manifest_key(study_id), manifest_document(files), indent=None)
    largest = max(f.size for f in files)
    table.create(study_id, expected=len(files), deadline_seconds=deadline, owner=owner,
                 largest_declared=largest)
    expires_in = form_expiry(settings.presign_expiry_seconds, deadline)
    answer = forms_answer({"study_id": study_id, "expected": len(files),
                           "largest_declared": largest}, expires_in,
                          files[:settings.per_file_forms_max])
    metrics.add_metric("UploadsRequested", MetricUnit.Count, 1)
    logger.info("upload created", extra={"study_id": study_id, "files": len(files)})
    audit("create", "ok", study_id)
    return Response(status_code=201, content_type=content_types.APPLICATION_JSON, body=answer)


@app.post("/upload/<study_id>", middlewares=AUTHENTICATED)
@tracer.capture_method(capture_response=False)
def renew_upload(study_id: str) -> dict[str, Any]:
    """Fresh forms for a study still taking files (AWAITING_UPLOAD or RECEIVING, before its
    upload deadline): ``{"names": [...]}`` asks per-file forms for declared files by name
    (the files past the first page of ``POST /upload``'s answer, or a form that expired);
    no body, or ``{}``, asks for the study-wide form alone, where the deployment hands it
    out. The forms expire at the deadline at the latest: a file they let in is never
    late."""
    require_study_id(study_id)
    names = parse_form_request(request_json())
    if names is None and not settings.study_wide_forms:
        raise BadRequestError('this deployment hands out per-file forms only: ask for them '
                              'with {"names": [file names]}')
    logger.set_correlation_id(study_id)
    study = readable_study(study_id, "renew")
    try:
        expires_in = renewed_form_expiry(study, int(time.time()),
                                         settings.presign_expiry_seconds)
    except StudyClosedError:
        audit("renew", "closed", study_id)
        raise
    asked = declared_by_name(study_id, names or [])
    metrics.add_metric("UploadFormsRenewed", MetricUnit.Count, 1)
    logger.info("upload forms renewed", extra={"study_id": study_id, "files": len(asked)})
    audit("renew", "ok", study_id)
    return forms_answer(study, expires_in, asked)


@lru_cache(maxsize=16)
def declared_files_of(study_id: str) -> dict[str, DeclaredFile]:
    """The study's declared files by name, from its manifest (none for a plain drop). A
    manifest never changes once its study exists, so the last few read are kept: a study
    asking for its forms 100 at a time is read once per execution environment."""
    document = uploads.find_json(manifest_key(study_id))
    return {} if document is None else {f.name: f for f in declared_files(document)}


def declared_by_name(study_id: str, names: list[str]) -> list[DeclaredFile]:
    """The declared files named, in the order asked; 400 when any name was not declared
    (how many, not which: a name can carry a patient's)."""
    by_name = declared_files_of(study_id)
    undeclared = sum(1 for name in names if name not in by_name)
    if undeclared:
        audit("renew", "undeclared", study_id)
        raise BadRequestError(f"{undeclared} of the {len(names)} names asked for were not "
                              "declared for this study")
    return [by_name[name] for name in names]


def _page_size(text: str | None) -> int:
    if text is None:
        return STATUS_PAGE_DEFAULT
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= STATUS_PAGE_MAX:
        raise BadRequestError(f"limit must be a whole number from 1 to {STATUS_PAGE_MAX}")
    return int(text)


@app.get("/status/<study_id>", middlewares=AUTHENTICATED)
@tracer.capture_method(capture_response=False)
def get_status(study_id: str) -> dict[str, Any]:
    """The study's state and verdict with one page of per-file verdicts (``?limit=&next=``);
    the first page also carries download ``links`` once the study has reports or metadata."""
    require_study_id(study_id)
    limit = _page_size(app.current_event.get_query_string_value("limit"))
    token = app.current_event.get_query_string_value("next")
    after = decode_token(token) if token is not None else None
    study = readable_study(study_id, "status")
    view = public_view(study, table.file_page(study_id, limit, after,
                                              kept_aside=after is None and has_kept_aside(study)))
    audit("status", "ok", study_id)
    if after is None:
        view["links"] = study_links(study, store, settings.presign_expiry_seconds)
        if view["links"]:
            audit("links", "ok", study_id)
    return view


def inline_hashes(tag: str, page: str) -> list[str]:
    """CSP sources allowing exactly the page's inline ``<tag>`` blocks, by their SHA-256."""
    blocks = re.findall(rf"<{tag}\b[^>]*>(.*?)</{tag}>", page, flags=re.DOTALL)
    return [f"'sha256-{base64.b64encode(hashlib.sha256(b.encode()).digest()).decode()}'"
            for b in blocks]


UPLOAD_PAGE_SCRIPTS = " ".join(inline_hashes("script", UPLOAD_PAGE))
UPLOAD_PAGE_STYLES = " ".join(inline_hashes("style", UPLOAD_PAGE))


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


@cache
def upload_page_policy() -> str:
    """The page's Content-Security-Policy: its own inline blocks (by hash), calls to this
    API ('self') and to the S3 origins its forms post to and its links point at, preview
    images from the store bucket, and nothing else. The S3 origins are taken from URLs the
    clients presign (endpoint and addressing style as the browser will see them), once."""
    post_origin = origin(uploads.presigned_post(incoming_prefix("0" * 32), 1, 60)["url"])
    link_origin = origin(store.presigned_get("studies/", 60))
    s3_origins = " ".join(sorted({post_origin, link_origin}))
    return "; ".join([
        "default-src 'none'",
        f"script-src {UPLOAD_PAGE_SCRIPTS}",
        f"style-src {UPLOAD_PAGE_STYLES}",
        f"connect-src 'self' {s3_origins}",
        f"img-src {link_origin}",
        "form-action 'none'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ])


@app.get("/")
def upload_page() -> Response[str]:
    """One static page that uploads a folder straight to S3 through this API (vanilla JS)."""
    return Response(status_code=200, content_type="text/html; charset=utf-8", body=UPLOAD_PAGE,
                    headers={"Content-Security-Policy": upload_page_policy()})


@app.get("/health")
def health() -> dict[str, Any]:
    return {"status": "ok"}


def before_snapshot() -> None:
    """With SnapStart, the clients every study route uses are made before the snapshot: the
    models and endpoint rules they load stay in it (about 0.2 s of the first request
    otherwise, benchmarks/bench_cold_start.py)."""
    clients.table(settings.status_table)
    clients.s3()


# After a restore the clients are made again, from the models in the snapshot, with the
# credentials of the restored environment. Nothing else needs dropping: no request runs
# before the snapshot, so the token secret and its parsed book are first read after it.
on_snapshot(before=before_snapshot, after_restore=clients.forget)


# --- every error becomes an HTTP answer here, and only here --------------------------------------
def _allowed_methods(path: str) -> list[str]:
    """The methods of the routes whose path matches ``path`` (for a 405's ``Allow``)."""
    routes = app._static_routes + app._dynamic_routes
    return sorted({route.method for route in routes if route.rule.match(path)})


def client_error(status: int, message: str,
                 headers: dict[str, str] | None = None) -> Response[dict[str, Any]]:
    """A 4xx answer; logged with its status and the route, never the request's body."""
    event = app.current_event
    logger.info("request refused", extra={"status": status, "method": event.http_method,
                                           "resource": event.get("resource")})
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON,
                    headers=headers, body={"statusCode": status, "message": message})


@app.not_found
def no_route(error: NotFoundError) -> Response[dict[str, Any]]:
    """No route for this method and path: 405 when the path has other methods, else 404."""
    allowed = _allowed_methods(app.current_event.path)
    if allowed:
        return client_error(405, "method not allowed", {"Allow": ", ".join(allowed)})
    return client_error(404, "no such resource")


@app.exception_handler(ServiceError)
def service_error(error: ServiceError) -> Response[dict[str, Any]]:
    """Typed errors raised by the routes keep their status (the catch-all below would not)."""
    return client_error(error.status_code, str(error.msg))


@app.exception_handler(AuthenticationError)
def unauthenticated(error: AuthenticationError) -> Response[dict[str, Any]]:
    return client_error(401, str(error), {"WWW-Authenticate": 'Bearer realm="pacs-validator"'})


@app.exception_handler(RequestBodyError)
def bad_body(error: RequestBodyError) -> Response[dict[str, Any]]:
    return client_error(error.status, str(error))


@app.exception_handler([UploadRequestError, PageTokenError])
def bad_request(error: ValueError) -> Response[dict[str, Any]]:
    return client_error(400, str(error))


@app.exception_handler(StudyClosedError)
def study_closed(error: StudyClosedError) -> Response[dict[str, Any]]:
    return client_error(409, str(error))


@app.exception_handler([DependencyUnavailable, GetParameterError])
def dependency_unavailable(error: Exception) -> Response[dict[str, Any]]:
    logger.exception("AWS dependency failed")
    return Response(status_code=503, content_type=content_types.APPLICATION_JSON,
                    body={"message": "storage or AWS dependency unavailable"})


@app.exception_handler(Exception)
def unexpected(error: Exception) -> Response[dict[str, Any]]:
    logger.exception("unexpected error")
    return Response(status_code=500, content_type=content_types.APPLICATION_JSON,
                    body={"message": "internal error"})


def with_security_headers(answer: dict[str, Any]) -> dict[str, Any]:
    """``answer`` (API Gateway's proxy response) with :data:`SECURITY_HEADERS` added."""
    headers = answer.setdefault("multiValueHeaders", {})
    for name, value in SECURITY_HEADERS.items():
        headers.setdefault(name, [value])
    return answer


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return with_security_headers(app.resolve(event, context))
