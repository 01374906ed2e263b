"""The upload page's DICOM header reader and file naming (its first script, plain functions),
run by Node.js on the corpus and compared with pydicom and with the API's naming."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from pacs_validator.contract.names import safe_name

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
  const uids = {};
  for (const path of paths) {
    const bytes = fs.readFileSync(path);
    const file = { size: bytes.length, slice: (start, end) => ({ arrayBuffer: async () => {
      const part = bytes.subarray(start, end);
      return part.buffer.slice(part.byteOffset, part.byteOffset + part.length);
    } }) };
    uids[path] = await readStudyUid(file);
  }
  console.log(JSON.stringify({ uids, names: names.map(safeName) }));
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


def pydicom_study_uid(path: Path) -> str | None:
    """pydicom's StudyInstanceUID for a Part 10 file in little endian, else None (the page
    reads only those)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            dataset = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception:  # noqa: BLE001 - anything pydicom cannot read, the page skips too
            return None
    syntax = str(dataset.file_meta.get("TransferSyntaxUID", ""))
    if syntax in ("", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"):
        return None
    return str(dataset.get("StudyInstanceUID", "")) or None


def test_page_reads_the_study_uid_pydicom_reads(corpus) -> None:
    paths = [p for p in corpus.all_files() if p.read_bytes()[128:132] == b"DICM"]

    uids = run_page_script(paths, [])["uids"]

    assert isinstance(uids, dict)
    expected = {str(p): pydicom_study_uid(p) for p in paths}
    assert {p: uid for p, uid in uids.items() if uid != expected[p]} == {}
    assert sum(uid is not None for uid in uids.values()) > 100


def test_page_names_files_as_the_api_does() -> None:
    names = ["IM 0001", "../../etc/passwd", "Ünïcødé série.dcm", ".hidden", "a:b*c?.dcm", ""]

    assert run_page_script([], names)["names"] == [safe_name(n) for n in names]


STUDY_FORM = re.search(r"^(const RENEW_MARGIN_MS = .*?;).*?^(class StudyForm \{.*?^\})$",
                       PAGE, re.S | re.M)
FORM_HARNESS = """
const assert = require("assert");
const api = "https://api.test";
const authHeaders = () => ({ Authorization: "Bearer t" });
const fetches = [];
let answer = 200, issued = 0, lifetime = 900;
globalThis.fetch = async (url, init) => {
  fetches.push([url, init.method, init.headers.Authorization]);
  await new Promise((resolve) => setTimeout(resolve, 20));
  issued += 1;
  return { status: answer, json: async () => ({ upload: { id: issued }, expires_in: lifetime }) };
};
(async () => {
  const study = new StudyForm("abc", { upload: { id: 0 }, expires_in: 30 });
  const first = await Promise.all([1, 2, 3, 4].map(() => study.current()));
  assert.deepStrictEqual(first.map((form) => form.id), [1, 1, 1, 1]);
  assert.deepStrictEqual(fetches, [["https://api.test/upload/abc", "POST", "Bearer t"]]);
  assert.strictEqual((await study.current()).id, 1);
  const used = study.upload;
  const again = await Promise.all([1, 2, 3].map(() => study.refused(used)));
  assert.deepStrictEqual(again.map((form) => form.id), [2, 2, 2]);
  assert.strictEqual((await study.refused(used)).id, 2);
  assert.strictEqual(fetches.length, 2);
  answer = 409;
  await assert.rejects(study.refused(study.upload), /HTTP 409/);
  await assert.rejects(study.current().then(() => study.refused(study.upload)), /HTTP 409/);
  assert.strictEqual(fetches.length, 3);
  answer = 200; lifetime = 20;  // the API ends the form at the study's deadline
  const closing = new StudyForm("late", { upload: { id: 0 }, expires_in: 30 });
  assert.strictEqual((await closing.current()).id, issued);
  await closing.current();
  await closing.current();
  assert.strictEqual(fetches.length, 4);  // a renewal that gave no later expiry: not again
  console.log("ok");
})().catch((error) => { console.error(error); process.exit(1); });
"""


def test_page_renews_its_upload_form_once_for_all_workers() -> None:
    """StudyForm (the page's second script) with a fake fetch: a form expiring within a
    minute is renewed once for four workers asking together, a fresh one is not, three
    workers refused with one form share one renewal, a refused renewal is not asked again,
    nor one that ended at the deadline (no later expiry) before each file."""
    assert STUDY_FORM is not None
    result = subprocess.run(
        [str(NODE), "-e", STUDY_FORM.group(1) + "\n" + STUDY_FORM.group(2) + FORM_HARNESS],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


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
