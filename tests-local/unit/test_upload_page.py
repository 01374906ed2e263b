"""The upload page's scripts run by Node.js: its DICOM header reader on the corpus against
pydicom, its file naming against the API's, its upload forms, checksum and findings."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import subprocess
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from pacs_validator.contract.names import safe_name
from pacs_validator.contract.upload_request import NAMES_PER_FORM_REQUEST

ROOT = Path(__file__).resolve().parents[2]
PAGE = (ROOT / "functions" / "api" / "upload.html").read_text("utf-8")
READER = re.search(r'<script id="dicom-reader">(.*?)</script>', PAGE, re.S)
NODE = shutil.which("node")
CORPUS_CT = Path(get_testdata_file("CT_small.dcm"))
pytestmark = pytest.mark.skipif(NODE is None, reason="needs Node.js to run the page's script")

HARNESS = """
const fs = require("fs");
const [paths, names] = JSON.parse(fs.readFileSync(0, "utf8"));
(async () => {
  const headers = {};
  for (const path of paths) {
    const bytes = fs.readFileSync(path);
    const file = { size: bytes.length, slice: (start, end) => ({ arrayBuffer: async () => {
      const part = bytes.subarray(start, end);
      return part.buffer.slice(part.byteOffset, part.byteOffset + part.length);
    } }) };
    headers[path] = await readStudyHeader(file);
  }
  console.log(JSON.stringify({ headers, names: names.map(safeName) }));
})();
"""


def run_page_script(paths: list[Path], names: list[str]) -> dict[str, object]:
    assert READER is not None
    result = subprocess.run(
        [str(NODE), "-e", READER.group(1) + HARNESS],
        input=json.dumps([[str(p) for p in paths], names]), capture_output=True, text=True,
        check=True, timeout=120)
    answer: dict[str, object] = json.loads(result.stdout)
    return answer


HEADER_KEYWORDS = {"studyUid": "StudyInstanceUID", "studyDate": "StudyDate",
                   "studyDescription": "StudyDescription", "seriesUid": "SeriesInstanceUID",
                   "seriesNumber": "SeriesNumber", "seriesDescription": "SeriesDescription"}
"""What the page reads of a file's header, by the name it gives each."""
DECODED_CHARACTER_SETS = {"", "ISO_IR 100", "ISO_IR 101", "ISO_IR 109", "ISO_IR 110",
                          "ISO_IR 144", "ISO_IR 127", "ISO_IR 126", "ISO_IR 138", "ISO_IR 148",
                          "ISO_IR 203", "ISO_IR 166", "ISO_IR 192", "GB18030", "GBK"}
"""The first values of SpecificCharacterSet the page decodes descriptions in (ISO 2022
code extensions it leaves as they are)."""


def pydicom_header(path: Path) -> dict[str, str | None] | None:
    """pydicom's values of :data:`HEADER_KEYWORDS` for a Part 10 file in little endian with
    a StudyInstanceUID, else None (the page reads only those); descriptions in a character
    set the page does not decode are left out."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            dataset = pydicom.dcmread(path, stop_before_pixels=True)
            syntax = str(dataset.file_meta.get("TransferSyntaxUID", ""))
            values = {name: str(dataset.get(keyword, "") or "").strip() or None
                      for name, keyword in HEADER_KEYWORDS.items()}
        except Exception:  # noqa: BLE001 - anything pydicom cannot read, the page skips too
            return None
    if syntax in ("", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99") or not values["studyUid"]:
        return None
    character_set = dataset.get("SpecificCharacterSet") or ""
    first = character_set if isinstance(character_set, str) else next(iter(character_set), "")
    if str(first or "").strip() not in DECODED_CHARACTER_SETS:
        values.pop("studyDescription")
        values.pop("seriesDescription")
    return values


def test_page_reads_the_header_pydicom_reads(corpus) -> None:
    paths = [p for p in corpus.all_files() if p.read_bytes()[128:132] == b"DICM"]

    headers = run_page_script(paths, [])["headers"]

    assert isinstance(headers, dict)
    expected = {str(p): pydicom_header(p) for p in paths}
    read = {p: header and {name: header[name] for name in expected[p] or header}
            for p, header in headers.items()}
    assert {p: (header, expected[p]) for p, header in read.items() if header != expected[p]} == {}
    assert sum(header is not None for header in headers.values()) > 100
    assert sum(bool(header and header["studyDescription"]) for header in headers.values()) > 20


def test_page_names_files_as_the_api_does() -> None:
    names = ["IM 0001", "../../etc/passwd", "Ünïcødé série.dcm", ".hidden", "a:b*c?.dcm", ""]

    assert run_page_script([], names)["names"] == [safe_name(n) for n in names]


STUDY_FORMS = re.search(r"^(const RENEW_MARGIN_MS = .*?;).*?^(class StudyForms \{.*?^\})$",
                        PAGE, re.S | re.M)
FORMS_HARNESS = """
const assert = require("assert");
const api = "https://api.test";
const authHeaders = () => ({ Authorization: "Bearer t" });
const requests = [];
let answer = 200, issued = 0, lifetime = 900;
globalThis.fetch = async (url, init) => {
  const names = JSON.parse(init.body).names;
  requests.push([url, init.method, init.headers.Authorization, names]);
  await new Promise((resolve) => setTimeout(resolve, 20));
  issued += 1;
  const uploads = names.map((name) => ({ name, id: issued }));
  return { status: answer, json: async () => ({ uploads, expires_in: lifetime }) };
};
const declared = (names, expires_in) => ({
  uploads: names.map((name) => ({ name, id: 0 })), expires_in });
const names = Array.from({ length: 250 }, (_, n) => `IM${String(n).padStart(4, "0")}.dcm`);
(async () => {
  // The declaration's 20 forms, then the others 100 at a time, never one for a sent file.
  const study = new StudyForms("abc", names, declared(names.slice(0, 20), 900));
  for (const name of names) {
    assert.strictEqual((await study.form(name)).name, name);
    study.sent(name);
  }
  assert.deepStrictEqual(requests.map((r) => r[3]),
    [names.slice(20, 120), names.slice(120, 220), names.slice(220)]);
  assert.deepStrictEqual(requests[0].slice(0, 3),
    ["https://api.test/upload/abc", "POST", "Bearer t"]);
  // Four workers asking together share one request; three refused with one form, one more.
  requests.length = 0;
  const shared = new StudyForms("def", names.slice(0, 4), declared([], 900));
  const first = await Promise.all(names.slice(0, 4).map((name) => shared.form(name)));
  assert.deepStrictEqual(requests.map((r) => r[3]), [names.slice(0, 4)]);
  const again = await Promise.all(
    names.slice(0, 3).map((name, n) => shared.refused(name, first[n])));
  assert.deepStrictEqual(again.map((form) => form.id), [issued, issued, issued]);
  assert.strictEqual(requests.length, 2);
  assert.strictEqual((await shared.form(names[3])).id, issued);  // replaced with the others
  // A request the API refused is not made again.
  answer = 409;
  await assert.rejects(shared.refused(names[0], again[0]), /HTTP 409/);
  await assert.rejects(shared.refused(names[1], again[1]), /HTTP 409/);
  assert.strictEqual(requests.length, 3);
  // Forms ending at the study's deadline are not asked for again before each file.
  answer = 200; lifetime = 20;
  requests.length = 0;
  const closing = new StudyForms("late", names.slice(0, 3), declared([], 30));
  for (const name of names.slice(0, 3)) { await closing.form(name); closing.sent(name); }
  assert.strictEqual(requests.length, 1);
  console.log("ok");
})().catch((error) => { console.error(error); process.exit(1); });
"""


def test_page_asks_for_per_file_forms_in_batches_shared_by_its_workers() -> None:
    """StudyForms (the page's second script) with a fake fetch: the forms past the
    declaration's are asked for 100 at a time, never for a file already sent; workers asking
    together share one request, and three refused with one form share one more, which
    replaces the forms kept as early; a refused request is not made again, nor, before each
    file, one for forms that end at the study's deadline."""
    assert STUDY_FORMS is not None
    result = subprocess.run(
        [str(NODE), "-e", STUDY_FORMS.group(1) + "\n" + STUDY_FORMS.group(2) + FORMS_HARNESS],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_page_asks_for_as_many_forms_at_a_time_as_the_api_allows() -> None:
    assert re.search(r"FORMS_PER_REQUEST = (\d+);", PAGE)[1] == str(NAMES_PER_FORM_REQUEST)


CHECKSUM = re.search(r'<script id="checksum">(.*?)</script>', PAGE, re.S)
CHECKSUM_HARNESS = """
const fs = require("fs");
globalThis.btoa = (text) => Buffer.from(text, "latin1").toString("base64");
const cases = JSON.parse(fs.readFileSync(0, "utf8"));
(async () => {
  const answers = [];
  for (const [path, slice] of cases) {
    const bytes = fs.readFileSync(path);
    const file = { size: bytes.length, slice: (start, end) => ({ arrayBuffer: async () => {
      const part = bytes.subarray(start, end);
      return part.buffer.slice(part.byteOffset, part.byteOffset + part.length);
    } }) };
    answers.push(await sha256Base64(file, slice));
  }
  console.log(JSON.stringify(answers));
})();
"""


def test_page_checksum_read_in_slices_is_the_sha256_s3_checks(tmp_path: Path) -> None:
    """Lengths around the 56- and 64-byte padding edges, slices smaller than, equal to and
    not dividing a block, and a real DICOM file, against hashlib (which the CLI uses)."""
    assert CHECKSUM is not None
    random = np.random.default_rng(7)
    cases: list[tuple[Path, int]] = []
    for size in (0, 1, 55, 56, 57, 63, 64, 65, 119, 120, 128, 1000, 3 * 1024 * 1024 + 5):
        path = tmp_path / f"{size}.bin"
        path.write_bytes(random.bytes(size))
        cases += [(path, 7), (path, 64), (path, 1 << 20)]
    cases.append((CORPUS_CT, 1 << 23))

    result = subprocess.run([str(NODE), "-e", CHECKSUM.group(1) + CHECKSUM_HARNESS],
                            input=json.dumps([[str(p), s] for p, s in cases]),
                            capture_output=True, text=True, check=True, timeout=120)

    expected = [base64.b64encode(hashlib.sha256(p.read_bytes()).digest()).decode()
                for p, _ in cases]
    assert json.loads(result.stdout) == expected


REPORT = re.search(r'<script id="report">(.*?)</script>', PAGE, re.S)
REPORT_HARNESS = """
const fs = require("fs");
const [status, sizes, headers] = JSON.parse(fs.readFileSync(0, "utf8"));
console.log(JSON.stringify({
  report: findingsReport(status),
  sizes: sizes.map(formatBytes),
  labels: headers.map(([folders, header]) => studyLabel(folders, header)),
  captions: headers.map(([, header]) => seriesCaption(header)),
  folders: ["exam/MR1/IM1", "IM1.dcm"].map(topFolder),
}));
"""


TIMES = "\N{MULTIPLICATION SIGN}"


def finding(severity: str, rule: str, message: str, tag: str | None = None) -> dict[str, object]:
    return {"severity": severity, "rule": rule, "tag": tag, "message": message}


def run_report_script(*arguments: object) -> dict[str, Any]:
    assert REPORT is not None
    result = subprocess.run([str(NODE), "-e", REPORT.group(1) + REPORT_HARNESS],
                            input=json.dumps(arguments), capture_output=True, text=True,
                            check=True, timeout=60)
    answer: dict[str, Any] = json.loads(result.stdout)
    return answer


def test_page_lists_errors_and_counts_warnings_by_rule_as_the_cli_does() -> None:
    """A rejected study of 1,650 findings: its 50 errors listed (a file's identical ones
    once, counted), its 1,600 warnings under two rules, most frequent first."""
    missing = finding("error", "attribute.required", "Modality is missing", "(0008,0060)")
    type2c = finding("warning", "conformance.missing-type2c", "Type 2C attribute missing")
    files = [{"name": f"IM{n}.dcm", "findings": [missing] * (2 if n == 0 else 1)
              + [type2c] * 30 + [finding("warning", "conformance.consistency", "x")] * 2,
              "findings_omitted": 0} for n in range(49)]
    files[1]["findings_omitted"] = 7
    status = {"findings": [finding("warning", "conformance.consistency", "series differ")] * 32,
              "files": files}

    report = run_report_script(status, [], [])["report"]

    assert report["errorCount"] == 50
    assert report["errors"][:2] == [
        f"IM0.dcm: 2 {TIMES} error attribute.required (0008,0060) Modality is missing",
        "IM1.dcm: error attribute.required (0008,0060) Modality is missing"]
    assert len(report["errors"]) == 49
    assert report["omitted"] == ["IM1.dcm: 7 more finding(s) in validation.json"]
    assert report["warningCount"] == 1600
    assert [(w["rule"], w["count"]) for w in report["warnings"]] == [
        ("conformance.missing-type2c", 1470), ("conformance.consistency", 130)]
    consistency = report["warnings"][1]["lines"]
    assert consistency[0] == f"study: 32 {TIMES} warning conformance.consistency series differ"
    assert len(consistency) == 50


def test_page_sizes_studies_and_series_read_as_people_name_them() -> None:
    header = {"studyDescription": "Brain-MRA", "studyDate": "20030505",
              "seriesNumber": "700", "seriesDescription": "ANGIO Projected from   C"}
    bare = {"studyDescription": None, "studyDate": None, "seriesNumber": None,
            "seriesDescription": None}

    answer = run_report_script({"findings": [], "files": []},
                               [0, 999, 1000, 1_234_567, 56_700_000, 3_400_000_000],
                               [[["exam"], header], [["selected files"], bare]])

    assert answer["sizes"] == ["0 B", "999 B", "1.0 KB", "1.2 MB", "57 MB", "3.4 GB"]
    assert answer["labels"] == ['exam, "Brain-MRA", 2003-05-05', "selected files"]
    assert answer["captions"] == ["Series 700 · ANGIO Projected from   C",
                                  "Series without SeriesNumber"]
    assert answer["folders"] == ["exam", "selected files"]
