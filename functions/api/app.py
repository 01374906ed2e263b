"""API: POST /upload (the manifest, and presigned POSTs for the first declared files),
POST /upload/{study_id} (forms for more of them, by name, while the study takes files),
GET /status/{study_id}, GET /studies (the caller's studies, newest first, or those of a
StudyInstanceUID), GET /health, and GET / (the browser upload page).

What a caller may declare, which forms a study gets and who may read it are decided by the
flow (:mod:`pacs_validator.flow.uploads`, wired in :mod:`pacs_validator.aws.runtime.wiring`);
this module maps requests to it and its answers and refusals to HTTP. Each study belongs to
the caller that declared it: another caller's study answers 404 as an unknown one does,
except to an admin, and lists only its own studies, where an admin lists every owner's. Every
create, renewal, status read, listing and link issue is audited in one log line (caller,
study id, action, outcome; nothing from the files)."""

from __future__ import annotations

from pacs_validator.aws.runtime.startup import garbage_collection_paused

with garbage_collection_paused():
    import base64
    import hashlib
    import re
    import time
    from collections.abc import Callable, Iterator
    from contextlib import contextmanager
    from functools import cache, lru_cache
    from pathlib import Path
    from typing import Any, TypeVar
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
    from pacs_validator.aws.runtime.wiring import uploads_from_settings
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
    from pacs_validator.contract.keys import incoming_prefix, is_study_id
    from pacs_validator.contract.records import StudyRecord
    from pacs_validator.contract.status_view import (
        PageTokenError,
        decode_token,
        has_kept_aside,
        public_view,
    )
    from pacs_validator.contract.study_list import (
        decode_cursor,
        encode_cursor,
        is_dicom_uid,
        list_entry,
    )
    from pacs_validator.contract.upload_request import (
        DeclarationTooLarge,
        PerFileFormsOnly,
        Refusal,
        StudyClosedError,
        TokenReused,
        TooManyOpenStudies,
        UndeclaredNames,
        UnreadableStudy,
        UploadRequestError,
    )

Route = TypeVar("Route", bound=Callable[..., Any])
PATH_PARAMETER = r"[-._~()'!*:@,;=+&$%<> \[\]{}|^\w]+"
"""What a ``<name>`` of a route's rule matches: the characters Powertools' resolver takes."""


class Resolver(APIGatewayRestResolver):
    """Powertools' REST resolver, also keeping the methods of each route's rule, which it
    keeps in private attributes only: a 405 names them in its ``Allow``."""

    def __init__(self) -> None:
        super().__init__()
        self.methods: dict[re.Pattern[str], set[str]] = {}

    def route(self, rule: str, method: str | list[str] | tuple[str], *args: Any,
              **kwargs: Any) -> Callable[[Route], Route]:
        pattern = "".join(PATH_PARAMETER if part.startswith("<") else re.escape(part)
                          for part in re.split(r"(<\w+>)", rule))
        methods = [method] if isinstance(method, str) else method
        self.methods.setdefault(re.compile(pattern), set()).update(m.upper() for m in methods)
        decorator: Callable[[Route], Route] = super().route(rule, method, *args, **kwargs)
        return decorator

    def allowed_methods(self, path: str) -> list[str]:
        """The methods of the routes whose rule matches ``path``."""
        return sorted({method for pattern, methods in self.methods.items()
                       if pattern.fullmatch(path) for method in methods})


logger = Logger()
metrics = Metrics()
tracer = function_tracer()
app = Resolver()
settings = load_settings(Path(__file__).with_name("config.json"))
clients = Clients()
table = DynamoDBStatusTable(settings.status_table, settings.retention_days, clients)
uploads = S3Bucket(settings.uploads_bucket, clients)
store = S3Bucket(settings.store_bucket, clients)
studies = uploads_from_settings(settings, table, uploads)
UPLOAD_PAGE = Path(__file__).with_name("upload.html").read_text("utf-8")
STATUS_PAGE_DEFAULT = 100
STATUS_PAGE_MAX = 1000
LIST_PAGE_DEFAULT = 50
LIST_PAGE_MAX = 100
"""Studies per ``GET /studies`` page: one batch read of their items (DynamoDB's most), and
an answer of some 40 KB at most."""
SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
"""On every answer: no content sniffing, and no presigned URL or study id leaks through a
Referer when a link is followed."""


class BadRequestError(ServiceError):
    def __init__(self, message: str) -> None:
        super().__init__(400, message)


REFUSAL_STATUS: dict[type[Refusal], int] = {
    DeclarationTooLarge: 413, TooManyOpenStudies: 429, UndeclaredNames: 400,
    UnreadableStudy: 404, StudyClosedError: 409, TokenReused: 409}
"""The answer of each refusal of the flow's (a 404 for a study the caller may not read is
this one, not Powertools' own NotFoundError, which means that no route matched)."""


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


@contextmanager
def audited(action: str, study_id: str | None) -> Iterator[None]:
    """Audit a refusal raised in the block with its own outcome word, and let it go on to
    its answer (:data:`REFUSAL_STATUS`)."""
    try:
        yield
    except Refusal as refusal:
        audit(action, refusal.audit, study_id)
        raise


def readable_study(study_id: str, action: str) -> StudyRecord:
    """The study, when the caller may read it; else 404 exactly as for an unknown id."""
    with audited(action, study_id):
        return studies.readable(current_caller(), study_id)


@app.post("/upload", middlewares=AUTHENTICATED)
@tracer.capture_method(capture_response=False)
def create_upload() -> Response[dict[str, Any]]:
    """A new study (201), or, for a ``client_token`` declared with the same files before,
    that study's id and fresh forms (200; see
    :meth:`~pacs_validator.flow.uploads.Uploads.declare`)."""
    body = request_json()
    with audited("create", None):
        declaration = studies.declare(current_caller(), body, int(time.time()))
    forms, created = declaration.forms, declaration.created
    logger.set_correlation_id(forms.study_id)
    if created:
        metrics.add_metric("UploadsRequested", MetricUnit.Count, 1)
    logger.info("upload created" if created else "upload declared again",
                extra={"study_id": forms.study_id, "files": forms.files})
    audit("create", "ok" if created else "repeated", forms.study_id)
    return Response(status_code=201 if created else 200,
                    content_type=content_types.APPLICATION_JSON, body=forms.answer())


@app.post("/upload/<study_id>", middlewares=AUTHENTICATED)
@tracer.capture_method(capture_response=False)
def renew_upload(study_id: str) -> dict[str, Any]:
    """Fresh forms for a study still taking files (see
    :meth:`~pacs_validator.flow.uploads.Uploads.renew`)."""
    require_study_id(study_id)
    body = request_json()
    logger.set_correlation_id(study_id)
    with audited("renew", study_id):
        forms = studies.renew(current_caller(), study_id, body, int(time.time()))
    metrics.add_metric("UploadFormsRenewed", MetricUnit.Count, 1)
    logger.info("upload forms renewed", extra={"study_id": study_id, "files": len(forms.uploads)})
    audit("renew", "ok", study_id)
    return forms.answer()


def _page_size(text: str | None, default: int = STATUS_PAGE_DEFAULT,
               most: int = STATUS_PAGE_MAX) -> int:
    if text is None:
        return default
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= most:
        raise BadRequestError(f"limit must be a whole number from 1 to {most}")
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
    study = dict(readable_study(study_id, "status").stored)
    view = public_view(study, table.file_page(study_id, limit, after,
                                              kept_aside=after is None and has_kept_aside(study)))
    audit("status", "ok", study_id)
    if after is None:
        view["links"] = study_links(study, store, settings.presign_expiry_seconds)
        if view["links"]:
            audit("links", "ok", study_id)
    return view


@app.get("/studies", middlewares=AUTHENTICATED)
@tracer.capture_method(capture_response=False)
def list_studies() -> dict[str, Any]:
    """One page of the caller's studies, newest first (an admin's: every owner's, in no
    particular order), each in a few fields (``?limit=&next=``); with
    ``?study_instance_uid=``, only the studies listed by that UID. A page may hold fewer
    than ``limit``, none even, and still have a ``next``: a search reads a bounded number
    of index rows per request."""
    event = app.current_event
    limit = _page_size(event.get_query_string_value("limit"), LIST_PAGE_DEFAULT, LIST_PAGE_MAX)
    uid = event.get_query_string_value("study_instance_uid")
    if uid is not None and not is_dicom_uid(uid):
        raise BadRequestError("study_instance_uid is not a DICOM UID (digits and dots, "
                              "at most 64 characters)")
    caller = current_caller()
    token = event.get_query_string_value("next")
    after = decode_cursor(token, every_owner=caller.admin) if token is not None else None
    page = table.study_page(None if caller.admin else caller.identity, limit, after, uid)
    audit("list", "ok", None)
    return {"studies": [list_entry(study) for study in page.studies],
            "next": None if page.after is None else encode_cursor(page.after)}


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
def client_error(status: int, message: str, headers: dict[str, str] | None = None,
                 rule: str | None = None) -> Response[dict[str, Any]]:
    """A 4xx answer, naming the refusal's ``rule`` when it has one; logged with its status
    and the route, never the request's body."""
    event = app.current_event
    logger.info("request refused", extra={"status": status, "method": event.http_method,
                                           "resource": event.get("resource")})
    body: dict[str, Any] = {"statusCode": status, "message": message}
    if rule is not None:
        body["rule"] = rule
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON,
                    headers=headers, body=body)


@app.not_found
def no_route(error: NotFoundError) -> Response[dict[str, Any]]:
    """No route for this method and path: 405 when the path has other methods, else 404."""
    allowed = app.allowed_methods(app.current_event.path)
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


@app.exception_handler([UploadRequestError, PageTokenError, PerFileFormsOnly])
def bad_request(error: ValueError) -> Response[dict[str, Any]]:
    return client_error(400, str(error))


@app.exception_handler(list(REFUSAL_STATUS))
def refused(error: Refusal) -> Response[dict[str, Any]]:
    return client_error(REFUSAL_STATUS[type(error)], str(error), rule=error.rule)


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
