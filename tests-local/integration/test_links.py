"""Download links in the status of a finished study: presigned GETs of its reports,
metadata and series previews, on the first page only."""

from __future__ import annotations

import urllib.parse
from pathlib import Path

import pydicom
import pytest
from conftest import STORE, Stack
from corpus_studies import reidentified_study
from pydicom.data import get_testdata_file
from test_pipeline import MR_STUDY, call_api, declare_study, run_study, study_status

from pacs_validator.contract.status_view import PREVIEW_LINKS_MAX


def key_of(url: str) -> str:
    """The object key a presigned URL of the store reads, virtual-hosted
    (``<bucket>.s3...`` as here) or path-style (``/<bucket>/<key>``, as on LocalStack)."""
    parts = urllib.parse.urlsplit(url)
    path = urllib.parse.unquote(parts.path).lstrip("/")
    if parts.hostname and parts.hostname.startswith(STORE + "."):
        key = path
    else:
        bucket, _, key = path.partition("/")
        assert bucket == STORE
    query = urllib.parse.parse_qs(parts.query)
    assert query["X-Amz-Expires"] == ["900"] and query["X-Amz-Signature"]
    return key


def test_a_stored_study_links_its_metadata_reports_and_each_series_preview(
        stack: Stack) -> None:
    files = {f"{path.parent.name}-{path.name}.dcm": path.read_bytes() for path in MR_STUDY}
    study_id = run_study(stack, files)

    links = study_status(stack, study_id)["links"]
    assert links["expires_in"] == 900
    for name, leaf in (("metadata", "metadata.json"), ("dicom_json", "dicom.json"),
                       ("validation_json", "validation.json"),
                       ("validation_log", "validation.log")):
        assert key_of(links[name]) == f"studies/{study_id}/{leaf}"
    series = {str(pydicom.dcmread(path, stop_before_pixels=True).SeriesInstanceUID)
              for path in MR_STUDY}
    assert {p["series_instance_uid"] for p in links["previews"]} == series
    for preview in links["previews"]:
        key = key_of(preview["url"])
        assert key == f"studies/{study_id}/previews/{preview['series_instance_uid']}.png"
        assert stack.s3.get_object(Bucket=STORE, Key=key)["Body"].read(4) == b"\x89PNG"
    assert links["previews_truncated"] is False


def test_links_come_with_the_first_page_only(stack: Stack) -> None:
    files = {f"{path.parent.name}-{path.name}.dcm": path.read_bytes() for path in MR_STUDY}
    study_id = run_study(stack, files)

    status, first = call_api(stack, "GET", f"/status/{study_id}", params={"study_id": study_id},
                             query={"limit": "1"})
    assert status == 200 and first["links"] and first["next"]
    status, second = call_api(stack, "GET", f"/status/{study_id}",
                              params={"study_id": study_id},
                              query={"limit": "1", "next": first["next"]})
    assert status == 200 and "links" not in second


def test_a_rejected_study_links_its_reports_and_no_previews(stack: Stack) -> None:
    data = Path(get_testdata_file("MR_truncated.dcm")).read_bytes()
    study_id = run_study(stack, {"mr.dcm": data})

    links = study_status(stack, study_id)["links"]
    assert key_of(links["validation_log"]) == f"rejected/{study_id}/validation.log"
    assert key_of(links["validation_json"]) == f"rejected/{study_id}/validation.json"
    assert "metadata" not in links and "previews" not in links


def test_a_study_still_taking_files_has_no_links(stack: Stack) -> None:
    data = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    study_id = declare_study(stack, {"ct.dcm": data})["study_id"]

    assert study_status(stack, study_id)["links"] == {}


def test_preview_links_stop_at_the_cap_and_say_so_without_listing_the_store(
        stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    files = dict(reidentified_study(PREVIEW_LINKS_MAX + 5, series=PREVIEW_LINKS_MAX + 5,
                                    seed="previews"))
    study_id = run_study(stack, files)
    stored = stack.keys(STORE, f"studies/{study_id}/previews/")
    assert len(stored) == PREVIEW_LINKS_MAX + 5

    def no_listing(**_: object) -> None:
        raise AssertionError("the status of a stored study lists the store")

    monkeypatch.setattr(stack.handler("api").store.client, "list_objects_v2", no_listing)
    links = study_status(stack, study_id)["links"]
    assert [key_of(p["url"]) for p in links["previews"]] == stored[:PREVIEW_LINKS_MAX]
    assert links["previews_truncated"] is True


def test_a_study_stored_before_it_named_its_previews_has_them_listed(stack: Stack) -> None:
    files = {f"{path.parent.name}-{path.name}.dcm": path.read_bytes() for path in MR_STUDY}
    study_id = run_study(stack, files)
    named = study_status(stack, study_id)["links"]
    table = stack.handler("api").table.table
    table.update_item(Key={"study_id": study_id, "item": "study"},
                      UpdateExpression="REMOVE previews")

    listed = study_status(stack, study_id)["links"]
    assert [(p["series_instance_uid"], key_of(p["url"])) for p in listed["previews"]] == \
        [(p["series_instance_uid"], key_of(p["url"])) for p in named["previews"]]
    assert listed["previews_truncated"] is named["previews_truncated"] is False
