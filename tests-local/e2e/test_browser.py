"""The upload page in a real browser against the deployed stack: drop or pick a study's
files, watch them go to S3 and the verdict come back, see the study headed as people know
it, the series previews captioned and ``metadata.json`` open; a rejected study's errors
listed and its warnings counted by rule; no upload before the API takes the token.

With ``PACS_VALIDATOR_SCREENSHOTS`` set to a folder (``docs/images``), the page of a stored
and of a rejected study are saved there as ``page-valid.png`` and ``page-rejected.png``, the
pictures ``docs/upload-page.md`` shows.

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
import os
import re
import shutil
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pydicom
import pytest

from pacs_validator.transfer.client import studies_in

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
SCREENSHOTS = os.environ.get("PACS_VALIDATOR_SCREENSHOTS")
"""Where to save the docs' pictures of the page (unset: none are saved)."""
TIMES = "\N{MULTIPLICATION SIGN}"


@contextmanager
def upload_page(deployment: Any) -> Iterator[Any]:
    """A fresh upload page in a fresh browser (nothing in its sessionStorage)."""
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 700})
            page.goto(deployment.api.api_base + "/")
            yield page
        finally:
            browser.close()


@pytest.fixture
def page(deployment: Any) -> Iterator[Any]:
    """A fresh upload page, its token field filled in."""
    with upload_page(deployment) as page:
        page.get_by_label("Bearer token").fill(deployment.api.token or "")
        yield page


def save_screenshot(page: Any, name: str) -> None:
    """The whole page as ``name`` in :data:`SCREENSHOTS`, when it is set."""
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SCREENSHOTS) / name), full_page=True)


def header_values(path: Path) -> Any:
    return pydicom.dcmread(path, stop_before_pixels=True)


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
    page.evaluate("""() => new MutationObserver((changes, observer) => {
                       window.firstOverall = document.getElementById("overall-text").textContent;
                       observer.disconnect();
                     }).observe(document.getElementById("overall-text"), { childList: true })""")
    page.get_by_role("button", name="Upload and validate").click()

    study = expect_stored(page, len(files))
    first = header_values(MR_STUDY[0])
    sync_api.expect(study.locator("h3")).to_have_text(
        f'selected files, "{first.StudyDescription}", '
        f"{first.StudyDate[:4]}-{first.StudyDate[4:6]}-{first.StudyDate[6:]}")
    sync_api.expect(study.locator(".ids")).to_contain_text(
        f"StudyInstanceUID {first.StudyInstanceUID}")
    assert re.search(r"study id [0-9a-f]{32}$", study.locator(".ids").text_content())
    # The totals are known before the first byte goes: files and bytes, in a unit that fits.
    assert re.fullmatch(rf"0 of {len(files)} files sent, 0 B of \d+(\.\d)? KB",
                        page.evaluate("window.firstOverall"))
    overall = page.locator("#overall")
    assert overall.get_attribute("value") == overall.get_attribute("max")
    sync_api.expect(page.locator("#overall-text")).to_contain_text(
        f"{len(files)} of {len(files)} files sent")
    series = {str(header.SeriesInstanceUID): header
              for header in map(header_values, MR_STUDY)}
    images = study.locator(".previews img")
    sync_api.expect(images).to_have_count(len(series))
    page.wait_for_function(
        "() => [...document.querySelectorAll('.previews img')]"
        ".every((image) => image.complete && image.naturalWidth > 0)")
    captions = [f"Series {h.SeriesNumber} · {str(h.SeriesDescription).strip()}"
                for h in sorted(series.values(), key=lambda h: int(h.SeriesNumber))]
    assert study.locator(".previews figcaption").all_text_contents() == captions
    for image, caption in zip(images.all(), captions, strict=True):
        assert image.get_attribute("alt") == f"Preview of {caption}: its middle image"
    metadata_url = study.get_by_role("link", name="metadata.json").get_attribute("href")
    with urllib.request.urlopen(metadata_url, timeout=30) as response:
        metadata = json.load(response)
    assert metadata["counts"]["instances"] == len(files)
    assert {s["instance_uid"] for s in metadata["series"]} == set(series)
    assert accessibility_violations(page) == []
    save_screenshot(page, "page-valid.png")


def write_rejected_study(folder: Path) -> int:
    """The MR study in ``folder``, every file with an unknown PatientSex (a conformance
    warning each) and the first two without their Type 1 Modality (an error each): how many
    files."""
    folder.mkdir(parents=True)
    for index, path in enumerate(MR_STUDY):
        dataset = pydicom.dcmread(path)
        dataset.PatientSex = "X"
        if index < 2:
            del dataset.Modality
        dataset.save_as(folder / f"{path.parent.name}-{path.name}.dcm")
    return len(MR_STUDY)


def test_a_rejected_study_lists_its_errors_and_counts_its_warnings_by_rule(
        page: Any, tmp_path: Path) -> None:
    files = write_rejected_study(tmp_path / "brain-mra")
    page.set_input_files("#folder", tmp_path / "brain-mra")
    page.get_by_role("button", name="Upload and validate").click()

    study = page.locator("section.study").first
    sync_api.expect(study.locator(".verdict")).to_contain_text(
        "REJECTED (422)", timeout=VERDICT_TIMEOUT_MS)
    sync_api.expect(study.locator("h3")).to_contain_text('brain-mra, "')
    findings = study.locator(".findings")
    sync_api.expect(findings.locator("h4").first).to_have_text("2 errors")
    errors = findings.locator(".errors li")
    sync_api.expect(errors).to_have_count(2)
    for line in errors.all_text_contents():
        assert line.endswith(": error attribute.required (0008,0060) Modality is missing")
    sync_api.expect(findings.locator("h4").nth(1)).to_contain_text("warnings by rule")
    enumerated = findings.locator("details", has_text=f"{TIMES} conformance.enumerated-value")
    sync_api.expect(enumerated.locator("summary")).to_have_text(
        f"{files} {TIMES} conformance.enumerated-value")
    assert findings.locator("details[open]").count() == 0
    sync_api.expect(enumerated.locator("li").first).to_be_hidden()
    enumerated.locator("summary").click()
    sync_api.expect(enumerated.locator("li")).to_have_count(files)
    sync_api.expect(enumerated.locator("li").first).to_be_visible()
    assert accessibility_violations(page) == []
    save_screenshot(page, "page-rejected.png")


def test_nothing_is_declared_before_the_api_takes_the_token(deployment: Any) -> None:
    if not deployment.api.token:
        pytest.skip("the deployment's API takes no bearer token")
    with upload_page(deployment) as page:
        state = page.locator("#token-state")
        button = page.get_by_role("button", name="Upload and validate")
        sync_api.expect(state).to_contain_text("This API needs a bearer token")
        sync_api.expect(state).to_contain_text('eval "$(local-runtime/stack env)"')
        drop_files(page, {"ct.dcm": (CORPUS / "CT_small.dcm").read_bytes()})
        sync_api.expect(page.locator("#found")).to_contain_text("1 file(s) chosen")
        sync_api.expect(button).to_be_disabled()

        page.get_by_label("Bearer token").fill("not-the-token")
        sync_api.expect(state).to_contain_text("The API refused this token (HTTP 401)")
        sync_api.expect(state).to_contain_text("PACS_VALIDATOR_TOKEN")
        sync_api.expect(button).to_be_disabled()
        assert accessibility_violations(page) == []

        page.get_by_label("Bearer token").fill(deployment.api.token)
        sync_api.expect(state).to_have_text("")
        sync_api.expect(button).to_be_enabled()


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
        sync_api.expect(studies.nth(index).locator("h3")).to_contain_text("exam")
        sync_api.expect(studies.nth(index).locator(".verdict")).to_contain_text(
            "STORED (200)", timeout=VERDICT_TIMEOUT_MS)
