"""The STOW-RS door's pieces below HTTP: the token file, the request body's framing, and the
answer a request's instances make."""

from __future__ import annotations

import io
from email.message import Message
from http import HTTPStatus
from pathlib import Path

import pytest

from pacs_validator.dicom.validation import InstanceSummary
from pacs_validator.gateway.http_body import (
    BadFraming,
    BodyTooLarge,
    LengthRequired,
    request_body,
)
from pacs_validator.gateway.intake import Taken
from pacs_validator.gateway.multipart import Readable
from pacs_validator.gateway.statuses import Answer
from pacs_validator.gateway.stow import multipart_boundary, store_response, study_target
from pacs_validator.gateway.tokens import BearerTokens

TOKEN = "a-long-random-token-0123456789"


def tokens(tmp_path: Path, text: str) -> BearerTokens:
    path = tmp_path / "tokens"
    path.write_text(text, "utf-8")
    return BearerTokens.read(path)


def test_a_token_names_its_label_and_nothing_else_does(tmp_path: Path) -> None:
    known = tokens(tmp_path, f"# who sends\n\nCT-ROOM {TOKEN}\nCT-ROOM rotated-{TOKEN}\n")

    assert known.label_for(f"Bearer {TOKEN}") == "CT-ROOM"
    assert known.label_for(f"bearer   rotated-{TOKEN} ") == "CT-ROOM"
    for wrong in (None, "", "Bearer", f"Basic {TOKEN}", f"Bearer {TOKEN[:-1]}",
                  f"Bearer {TOKEN}x", "Bearer CT-ROOM"):
        assert known.label_for(wrong) is None


@pytest.mark.parametrize("text", ["", "# nothing\n", f"CT-ROOM {TOKEN} extra\n",
                                  f"CT-ROOM {TOKEN}\nMR-ROOM {TOKEN}\n"])
def test_a_bad_token_file_is_refused_without_quoting_a_token(tmp_path: Path, text: str) -> None:
    with pytest.raises(ValueError) as raised:
        tokens(tmp_path, text)
    assert TOKEN not in str(raised.value)


def headers(**fields: str) -> Message:
    message = Message()
    for name, value in fields.items():
        message[name.replace("_", "-")] = value
    return message


def read_all(body: Readable) -> bytes:
    data = b""
    while block := body.read(5):
        data += block
    return data


def test_a_chunked_body_is_decoded_with_its_extensions_and_trailers() -> None:
    wire = io.BytesIO(b"4;name=x\r\nabcd\r\nA\r\n0123456789\r\n0\r\nTrailer: 1\r\n\r\nNEXT")

    body = request_body(wire, headers(Transfer_Encoding="chunked"), 100)

    assert read_all(body) == b"abcd0123456789"
    assert wire.read() == b"NEXT"  # the next request on the connection, untouched


def test_a_sized_body_stops_at_its_length() -> None:
    wire = io.BytesIO(b"0123456789NEXT")

    assert read_all(request_body(wire, headers(Content_Length="10"), 10)) == b"0123456789"
    assert wire.read() == b"NEXT"


def test_a_body_over_the_cap_is_refused_before_its_bytes_are_read() -> None:
    wire = io.BytesIO(b"x" * 11)
    with pytest.raises(BodyTooLarge):
        request_body(wire, headers(Content_Length="11"), 10)
    assert wire.tell() == 0

    chunked = request_body(io.BytesIO(b"6\r\nabcdef\r\n6\r\nghijkl\r\n0\r\n\r\n"),
                           headers(Transfer_Encoding="chunked"), 10)
    with pytest.raises(BodyTooLarge):
        read_all(chunked)


@pytest.mark.parametrize(("fields", "wire"), [
    ({"Transfer_Encoding": "chunked"}, b"zz\r\nab\r\n0\r\n\r\n"),
    ({"Transfer_Encoding": "chunked"}, b"2\r\nabc\r\n0\r\n\r\n"),
    ({"Transfer_Encoding": "chunked"}, b"5\r\nab"),
    ({"Content_Length": "10"}, b"short"),
])
def test_a_malformed_framing_is_refused(fields: dict[str, str], wire: bytes) -> None:
    with pytest.raises(BadFraming):
        read_all(request_body(io.BytesIO(wire), headers(**fields), 100))


def test_a_body_without_a_length_is_refused() -> None:
    with pytest.raises(LengthRequired):
        request_body(io.BytesIO(b""), headers(), 100)
    with pytest.raises(BadFraming):
        request_body(io.BytesIO(b""), headers(Transfer_Encoding="gzip"), 100)


def test_store_resources_are_studies_and_one_study() -> None:
    assert study_target("/studies") == (True, None)
    assert study_target("/studies/?x=1") == (True, None)
    assert study_target("/studies/1.2.3") == (True, "1.2.3")
    for other in ("/", "/studies/1.2/series", "/instances", "/dicomweb/studies"):
        assert study_target(other) == (False, None)


def test_only_dicom_parts_are_taken() -> None:
    assert multipart_boundary('multipart/related; type="application/dicom"; boundary="a b"') \
        == "a b"
    assert multipart_boundary("Multipart/Related; Type=Application/DICOM; boundary=x") == "x"
    for other in (None, "application/dicom", "multipart/related; boundary=x",
                  'multipart/related; type="application/dicom+json"; boundary=x'):
        refusal = multipart_boundary(other)
        assert not isinstance(refusal, str)
        assert refusal.status == HTTPStatus.UNSUPPORTED_MEDIA_TYPE
    missing = multipart_boundary('multipart/related; type="application/dicom"')
    assert not isinstance(missing, str) and missing.status == HTTPStatus.BAD_REQUEST


def taken(status: int, comment: str | None = None, uid: str | None = "1.2.3") -> Taken:
    return Taken(Answer(status, comment),
                 InstanceSummary(sop_instance_uid=uid, sop_class_uid=uid and "1.2.840.1"))


def test_the_answer_s_status_is_200_202_or_409_by_what_was_kept() -> None:
    ok, warned, failed = taken(0x0000), taken(0xB007, "conformance.uid"), taken(0xA900)

    assert store_response([ok, warned])[0] == HTTPStatus.OK
    assert store_response([ok, failed])[0] == HTTPStatus.ACCEPTED
    assert store_response([failed, failed])[0] == HTTPStatus.CONFLICT


def test_the_answer_names_each_instance_and_its_reason() -> None:
    _, answer = store_response([taken(0x0000), taken(0xB007, "conformance.uid"),
                                taken(0xC000, "format.not-dicom", uid=None)])

    plain, warned = answer.ReferencedSOPSequence
    assert (plain.ReferencedSOPClassUID, plain.ReferencedSOPInstanceUID) == ("1.2.840.1", "1.2.3")
    assert "WarningReason" not in plain and warned.WarningReason == 0xB007
    [unreadable] = answer.FailedSOPSequence
    assert unreadable.FailureReason == 0xC000
    assert "ReferencedSOPInstanceUID" not in unreadable
    document = answer.to_json_dict()
    assert document["00081198"]["Value"][0]["00081197"] == {"vr": "US", "Value": [0xC000]}
    assert document["00081198"]["Value"][0]["00091002"]["Value"] == ["format.not-dicom"]
    assert document["00081198"]["Value"][0]["00090010"]["Value"] == ["PACS_VALIDATOR"]
