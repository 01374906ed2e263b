"""The upload page's DICOM header reader and file naming (its first script, plain functions),
run by Node.js on the corpus and compared with pydicom and with the API's naming."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import warnings
from pathlib import Path

import pydicom
import pytest

from pacs_validator.names import safe_name

ROOT = Path(__file__).resolve().parents[2]
PAGE = (ROOT / "functions" / "api" / "upload.html").read_text("utf-8")
READER = re.search(r'<script id="dicom-reader">(.*?)</script>', PAGE, re.S)
NODE = shutil.which("node")
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
