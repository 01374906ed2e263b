"""Function settings: each function's ``config.json`` with environment overrides.

Every default has one home, ``data/pipeline.json`` (the validator's own, ``data/config.json``);
a function's ``config.json`` beside its handler states only what that function changes. The
template sets resource names (buckets, table, bus) and its parameters through environment
variables (:data:`ENVIRONMENT_OVERRIDES`); each parameter's ``Default:`` is the package's
value, so a deployment that sets nothing runs as the package says.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pacs_validator.contract.auth import AuthMode, admin_principals, auth_mode
from pacs_validator.contract.duplicates import DuplicatePolicy
from pacs_validator.dicom.data import data_document


def enabled(value: str) -> bool:
    """A template switch (``Enabled``/``Disabled``) as a setting."""
    return value == "Enabled"


ENVIRONMENT_OVERRIDES: dict[str, tuple[str, Callable[[str], Any]]] = {
    "MAX_UPLOAD_BYTES": ("max_upload_bytes", int),
    "PRESIGN_EXPIRY_SECONDS": ("presign_expiry_seconds", int),
    "UPLOAD_DEADLINE_SECONDS": ("upload_deadline_seconds", int),
    "RETENTION_DAYS": ("retention_days", int),
    "MAX_FILES_PER_STUDY": ("max_files_per_study", int),
    "CHUNK_INSTANCES": ("chunk_instances", int),
    "PROCESSING_DEADLINE_SECONDS": ("processing_deadline_seconds", int),
    "MAX_STUDY_BYTES": ("max_study_bytes", int),
    "MAX_OPEN_STUDIES": ("max_open_studies", int),
    "TOKEN_CACHE_SECONDS": ("token_cache_seconds", int),
    "STUDY_WIDE_FORMS": ("study_wide_forms", enabled),
    "VALIDATION_PROFILE": ("validation_profile", str),
    "DUPLICATE_POLICY": ("duplicate_policy", str),
    "API_AUTH": ("api_auth", str),
}
"""The environment variables the template sets from its parameters, and the key of
``data/pipeline.json`` each overrides: that document holds every default, and the template's
``Default:`` of each parameter equals it (``tests-local/unit/test_defaults.py``)."""


@dataclass(frozen=True)
class Settings:
    uploads_bucket: str
    store_bucket: str
    status_table: str
    idempotency_table: str
    event_bus: str
    max_upload_bytes: int
    max_study_bytes: int
    """Largest total a POST /upload may declare (413 above): what one caller can make the
    stack receive, validate and store per study."""
    max_open_studies: int
    """Most studies one caller may have open (429 beyond; 0: no cap): what one caller can
    make the deadline sweep end."""
    presign_expiry_seconds: int
    upload_deadline_seconds: int
    min_upload_deadline_seconds: int
    """Shortest ``deadline_seconds`` a POST /upload may ask for (400 below): a study's
    first form lives no longer than its deadline, and one of a second would expire before
    a client could send a file with it."""
    retention_days: int
    max_files_per_study: int
    max_request_bytes: int
    """Largest API request body accepted (413 above): room for ``max_files_per_study``
    declared files with names of about 170 characters."""
    per_file_forms_max: int
    """Per-file forms in the ``POST /upload`` answer, for its first files; the others are
    asked for by name (``POST /upload/{id}``). A form is about 4 KB on AWS (the function's
    session token is in its fields and its policy): ten keep the answer near 41 KB, under
    64 KB (``tests-local/unit/test_form_sizes.py``)."""
    study_wide_forms: bool
    """Whether the API also hands out a study's study-wide form (``STUDY_WIDE_FORMS``,
    template parameter ``StudyWideForms``), which lets in any name under its prefix."""
    chunk_instances: int
    """Most files one invocation copies (and describes) when a study is stored or rejected."""
    store_function: str
    """The function that stores chunks of valid studies (the descriptor)."""
    reject_function: str
    """The function that copies chunks of rejected studies (the validator)."""
    processing_deadline_seconds: int
    """A study still VALIDATING or VALID this long after its last change of state is FAILED."""
    token_cache_seconds: int
    """How long the API reuses the token secret it read: a token added to (or removed from)
    the secret is accepted (or refused) at most this long after the change."""
    validator_overrides: dict[str, Any]
    """What the deployment changes of the validator's configuration (the ``validator`` entry
    of config.json, the required attributes and the size cap): the pipeline builds the
    configuration from it when first needed (``Services.config``), so a function that
    validates nothing (the API, the descriptor short of a preview) never loads the rules
    nor pydicom."""
    api_auth: AuthMode
    """How the API authenticates callers (``API_AUTH``)."""
    duplicate_policy: DuplicatePolicy = DuplicatePolicy.REFUSE
    """What a study gets for an instance stored before with other bytes
    (``DUPLICATE_POLICY``; see :mod:`~pacs_validator.flow.duplicates`)."""
    api_tokens_secret: str = ""
    """The Secrets Manager secret (ARN or name) holding the bearer tokens in TOKEN mode."""
    fingerprint_key_secret: str = ""
    """The Secrets Manager secret (ARN or name) holding the key of the validator's
    fingerprints and key digests (``FINGERPRINT_KEY_SECRET``)."""
    admin_principals: frozenset[str] = frozenset()
    """IAM mode's admins (``ADMIN_PRINCIPALS``): the identities of the role and user ARNs
    that read every study, as :func:`~pacs_validator.contract.auth.principal` gives them."""


PROFILES = {"default": None, "strict": "strict.json"}
"""Validation profiles (``VALIDATION_PROFILE``): the rule overrides each starts from."""


def with_profile(profile: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """A function's validator overrides on top of ``profile``'s, rule by rule: a function's
    ``config.json`` can still downgrade a rule the profile makes an error."""
    if profile not in PROFILES:
        raise ValueError(f"VALIDATION_PROFILE must be one of {', '.join(PROFILES)}")
    document = PROFILES[profile]
    if document is None:
        return overrides
    base: dict[str, Any] = data_document(document)
    rules = {**base.get("rules", {}), **overrides.get("rules", {})}
    return {**base, **overrides, "rules": rules}


def load_settings(config_path: Path, environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from ``config_path`` (a function's config.json) and the environment."""
    env = os.environ if environ is None else environ
    document: dict[str, Any] = data_document("pipeline.json")
    document.update(json.loads(config_path.read_text("utf-8")))
    for variable, (key, convert) in ENVIRONMENT_OVERRIDES.items():
        if env.get(variable):
            document[key] = convert(env[variable])
    validator_overrides = with_profile(document["validation_profile"],
                                       dict(document.get("validator", {})))
    if env.get("REQUIRED_ATTRIBUTES"):
        required = [k.strip() for k in env["REQUIRED_ATTRIBUTES"].split(",") if k.strip()]
        validator_overrides["required_attributes"] = required
    validator_overrides["max_bytes"] = document["max_upload_bytes"]
    return Settings(
        uploads_bucket=env.get("UPLOADS_BUCKET", ""),
        store_bucket=env.get("STORE_BUCKET", ""),
        status_table=env.get("STATUS_TABLE", ""),
        idempotency_table=env.get("IDEMPOTENCY_TABLE", ""),
        event_bus=env.get("EVENT_BUS_NAME", "default"),
        max_upload_bytes=int(document["max_upload_bytes"]),
        max_study_bytes=int(document["max_study_bytes"]),
        max_open_studies=int(document["max_open_studies"]),
        presign_expiry_seconds=int(document["presign_expiry_seconds"]),
        upload_deadline_seconds=int(document["upload_deadline_seconds"]),
        min_upload_deadline_seconds=int(document["min_upload_deadline_seconds"]),
        retention_days=int(document["retention_days"]),
        max_files_per_study=int(document["max_files_per_study"]),
        max_request_bytes=int(document["max_request_bytes"]),
        per_file_forms_max=int(document["per_file_forms_max"]),
        study_wide_forms=bool(document["study_wide_forms"]),
        chunk_instances=int(document["chunk_instances"]),
        store_function=env.get("STORE_FUNCTION", ""),
        reject_function=env.get("REJECT_FUNCTION", ""),
        processing_deadline_seconds=int(document["processing_deadline_seconds"]),
        token_cache_seconds=int(document["token_cache_seconds"]),
        validator_overrides=validator_overrides,
        api_auth=auth_mode(document["api_auth"]),
        duplicate_policy=DuplicatePolicy(document["duplicate_policy"]),
        api_tokens_secret=env.get("API_TOKENS_SECRET", ""),
        fingerprint_key_secret=env.get("FINGERPRINT_KEY_SECRET", ""),
        admin_principals=admin_principals(env.get("ADMIN_PRINCIPALS", "")),
    )
