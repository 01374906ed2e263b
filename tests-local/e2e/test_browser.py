"""The upload page in a real browser against the deployed stack: pick a study's files, watch
them go to S3 and the verdict come back.

Needs Debian's chromium (/usr/bin/chromium) and the playwright package; without either the
module is skipped with a message saying which. (On LocalStack the page and the presigned
POST URL share one origin, 127.0.0.1:4566; on AWS the uploads bucket needs a CORS rule for
the API's origin.)
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pydicom
import pytest

from pacs_validator.client import studies_in

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(f"the browser test needs Debian's chromium at {CHROMIUM}", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api",
                               reason="the browser test needs playwright (pip install playwright)")

pytestmark = pytest.mark.e2e
CORPUS = Path(pydicom.__file__).parent / "data" / "test_files"
VERDICT_TIMEOUT_MS = 180_000


def test_page_uploads_picked_files_and_shows_the_stored_verdict(deployment, tmp_path) -> None:
    mr = max(studies_in(CORPUS / "dicomdirtests" / "98892003").values(), key=len)
    files = []
    for path in mr:
        target = tmp_path / f"{path.parent.name}-{path.name}.dcm"
        shutil.copyfile(path, target)
        files.append(str(target))

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM))
        try:
            page = browser.new_page()
            page.goto(deployment.api.api_base + "/")
            page.set_input_files("#files", files)
            page.get_by_role("button", name="Upload and validate").click()
            verdict = page.locator("section.study .verdict")
            sync_api.expect(verdict).to_contain_text("STORED (200)", timeout=VERDICT_TIMEOUT_MS)
            sync_api.expect(verdict).to_contain_text(f"{len(files)} of {len(files)} file(s)")
            assert page.locator("#overall").get_attribute("value") == \
                page.locator("#overall").get_attribute("max")
            assert "metadata" in page.locator("section.study .keys").inner_text()
        finally:
            browser.close()
