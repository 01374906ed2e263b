"""The upload page in a real browser against the deployed stack: drop or pick a study's
files, watch them go to S3 and the verdict come back, see the series previews and open
``metadata.json``.

Needs Debian's chromium (/usr/bin/chromium; ``make browser`` installs it) and the playwright
package (the dev extra), which drives it without downloading a browser of its own. Without
either, the module is skipped with a message saying which; ``make e2e-browser`` runs it alone.
On LocalStack the page (API Gateway) and the presigned POST URL share one origin,
127.0.0.1:4566; on AWS the uploads bucket needs a CORS rule for the API's origin
(``AllowedOrigins``).
"""

from __future__ import annotations

import base64
import json
import shutil
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest

from pacs_validator.cli.client import studies_in

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(f"the browser test needs Debian's chromium at {CHROMIUM} (make browser)",
                allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api",
                               reason="the browser test needs playwright (the dev extra)")
axe = pytest.importorskip("axe_playwright_python.sync_playwright",
                          reason="the browser test needs axe-playwright-python (the dev extra)")

pytestmark = pytest.mark.e2e
CORPUS = Path(pydicom.__file__).parent / "data" / "test_files"
MR_STUDY = max(studies_in(CORPUS / "dicomdirtests" / "98892003").values(), key=len)
VERDICT_TIMEOUT_MS = 180_000
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync"]
"""As root Chromium needs --no-sandbox; the rest keep it from calling Google's hosts, which
a closed network refuses many at a time."""
WCAG_AA = {"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]},
           "resultTypes": ["violations"]}
"""axe-core's checks of WCAG 2.1 levels A and AA (labels, contrast, names, structure...)."""


@pytest.fixture
def page(deployment: Any) -> Iterator[Any]:
    """A fresh page of the upload page, its token field filled in."""
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page()
            page.goto(deployment.api.api_base + "/")
            page.get_by_label("Bearer token").fill(deployment.api.token or "")
            page.get_by_label("Bearer token").dispatch_event("change")
            yield page
        finally:
            browser.close()


def drop_files(page: Any, files: dict[str, bytes]) -> None:
    """Drop ``files`` on the drop zone as a user dragging them from a file manager would."""
    transfer = page.evaluate_handle(
        """(files) => {
             const transfer = new DataTransfer();
             for (const [name, data] of Object.entries(files)) {
               const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
               transfer.items.add(new File([bytes], name, { type: "application/dicom" }));
             }
             return transfer;
           }""",
        {name: base64.b64encode(data).decode() for name, data in files.items()})
    page.dispatch_event("#drop", "drop", {"dataTransfer": transfer})


def accessibility_violations(page: Any) -> list[str]:
    """What axe-core finds against WCAG 2.1 A/AA on the page as it is: rule and element."""
    results = axe.Axe().run(page, options=WCAG_AA)
    return [f"{violation['id']} ({violation['impact']}): {node['target']}"
            for violation in results.response["violations"] for node in violation["nodes"]]


def expect_stored(page: Any, files: int) -> Any:
    """The study's section once it shows STORED with every file received."""
    study = page.locator("section.study").first
    verdict = study.locator(".verdict")
    sync_api.expect(verdict).to_contain_text("STORED (200)", timeout=VERDICT_TIMEOUT_MS)
    sync_api.expect(verdict).to_contain_text(f"{files} of {files} file(s) received")
    return study


def test_a_dropped_study_is_stored_and_shows_its_previews_and_metadata(page: Any) -> None:
    files = {f"{path.parent.name}-{path.name}.dcm": path.read_bytes() for path in MR_STUDY}
    drop_files(page, files)
    sync_api.expect(page.locator("#found")).to_contain_text(f"{len(files)} file(s) chosen")
    page.get_by_role("button", name="Upload and validate").click()

    study = expect_stored(page, len(files))
    overall = page.locator("#overall")
    assert overall.get_attribute("value") == overall.get_attribute("max")
    series = {str(pydicom.dcmread(p, stop_before_pixels=True).SeriesInstanceUID)
              for p in MR_STUDY}
    images = study.locator(".previews img")
    sync_api.expect(images).to_have_count(len(series))
    page.wait_for_function(
        "() => [...document.querySelectorAll('.previews img')]"
        ".every((image) => image.complete && image.naturalWidth > 0)")
    for image in images.all():
        assert image.get_attribute("alt").startswith("Preview of series")
    metadata_url = study.get_by_role("link", name="metadata.json").get_attribute("href")
    with urllib.request.urlopen(metadata_url, timeout=30) as response:
        metadata = json.load(response)
    assert metadata["counts"]["instances"] == len(files)
    assert {s["instance_uid"] for s in metadata["series"]} == series
    assert accessibility_violations(page) == []


def test_the_page_is_usable_from_the_keyboard_and_passes_axe_before_any_upload(
        page: Any) -> None:
    # Playwright asks the browser to intercept file choosers without waiting for it: waiting
    # for the chooser from the start leaves that request time to arrive before Enter does
    # (else, about one run in five, the chooser opens unseen and the wait times out).
    with page.expect_file_chooser() as chooser:
        assert accessibility_violations(page) == []
        page.get_by_label("Bearer token").focus()
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.id") == "drop"
        page.keyboard.press("Enter")
    assert chooser.value.is_multiple()
    assert page.get_by_role("button", name="Upload and validate").is_disabled()


def test_a_picked_folder_is_grouped_into_studies_and_non_dicom_is_skipped(
        page: Any, tmp_path: Path) -> None:
    folder = tmp_path / "exam"
    for path in MR_STUDY[:3]:
        (folder / path.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, folder / path.parent.name / path.name)
    shutil.copyfile(CORPUS / "CT_small.dcm", folder / "ct.dcm")
    (folder / "notes.txt").write_text("not DICOM")
    page.set_input_files("#folder", folder)
    page.get_by_role("button", name="Upload and validate").click()

    sync_api.expect(page.locator("#found")).to_contain_text(
        "2 study(ies); 1 file(s) skipped", timeout=30_000)
    studies = page.locator("section.study")
    sync_api.expect(studies).to_have_count(2)
    for index in range(2):
        sync_api.expect(studies.nth(index).locator(".verdict")).to_contain_text(
            "STORED (200)", timeout=VERDICT_TIMEOUT_MS)
