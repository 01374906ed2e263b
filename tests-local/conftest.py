"""Shared fixtures: pydicom's bundled corpus of real DICOM files, and ways to mutate them.

Every expectation in the tests is derived from DICOM semantics applied to real third-party
files (pydicom's test corpus) or to deterministic mutations of them written to ``tmp_path``.
pydicom writes the files it reads back byte for byte, so a mutation made through a data set
changes only what the test changed.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest
from document_schemas import VALIDATION_REPORT, check
from pydicom.dataset import Dataset

from pacs_validator.dicom.config import ValidatorConfig, build_config
from pacs_validator.dicom.parsing import Source
from pacs_validator.dicom.rules import Finding
from pacs_validator.dicom.validation import InstanceResult, validate_instance

PYDICOM_DATA = Path(pydicom.__file__).parent / "data"
TEST_FILES = PYDICOM_DATA / "test_files"
CHARSET_FILES = PYDICOM_DATA / "charset_files"
DICOMDIR_TESTS = TEST_FILES / "dicomdirtests"
PHI_KEYWORDS = ("PatientName", "PatientID", "PatientBirthDate")
STUDY_FOLDERS = ("77654033", "98892001", "98892003")
"""The dicomdirtests folders of real multi-instance studies (one patient each)."""


class NonSeekableStream(io.RawIOBase):
    """A binary stream that can only be read forward, like a raw HTTP or S3 body."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        chunk = self._data.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)


@dataclass(frozen=True)
class Corpus:
    """Paths into pydicom's bundled test data."""

    test_files: Path = TEST_FILES
    charset_files: Path = CHARSET_FILES
    dicomdir_tests: Path = DICOMDIR_TESTS

    def path(self, name: str) -> Path:
        """A bundled file by name (test_files first, then charset_files)."""
        for folder in (self.test_files, self.charset_files):
            candidate = folder / name
            if candidate.is_file():
                return candidate
        raise FileNotFoundError(name)

    def study_files(self, folder: str) -> list[Path]:
        """Every file of one dicomdirtests patient folder (several studies may share it)."""
        root = self.dicomdir_tests / folder
        return sorted(p for p in root.rglob("*") if p.is_file())

    def studies(self) -> dict[str, list[Path]]:
        """dicomdirtests files grouped by their StudyInstanceUID, as pydicom reads it."""
        groups: dict[str, list[Path]] = {}
        for folder in STUDY_FOLDERS:
            for path in self.study_files(folder):
                uid = str(self.read(path).StudyInstanceUID)
                groups.setdefault(uid, []).append(path)
        return groups

    def all_files(self) -> list[Path]:
        """Every bundled DICOM-looking file: test_files, dicomdirtests and charset_files."""
        files = sorted(self.test_files.glob("*.dcm"))
        files += sorted(p for p in self.dicomdir_tests.rglob("*") if p.is_file())
        files += sorted(self.charset_files.glob("*.dcm"))
        return files

    @staticmethod
    def read(source: Path | bytes, *, pixels: bool = True) -> Dataset:
        """pydicom's own reading of a file (the reference the tests compare against)."""
        stream = io.BytesIO(source) if isinstance(source, bytes) else source
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # invalid values are what many tests are about
            dataset = pydicom.dcmread(stream, force=True, stop_before_pixels=not pixels)
            dataset.walk(lambda _ds, _element: None)  # decode every value now, warnings muted
        return dataset

    @staticmethod
    def write(dataset: Dataset, path: Path) -> Path:
        """Write ``dataset`` as it was read (same transfer syntax, preamble and meta)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # mutations are invalid on purpose
            dataset.save_as(path)
        return path

    @staticmethod
    def nonseekable(data: bytes) -> NonSeekableStream:
        return NonSeekableStream(data)

    @staticmethod
    def patient_values(dataset: Dataset) -> set[str]:
        """PatientName (and its components), PatientID and PatientBirthDate as text, when
        long enough (3+ characters) to be recognisable in a message."""
        values: set[str] = set()
        for keyword in PHI_KEYWORDS:
            value = dataset.get(keyword)
            if value is None:
                continue
            text = str(value).strip()
            values.add(text)
            if keyword == "PatientName":
                values.update(part.strip() for part in text.replace("=", "^").split("^"))
        return {v for v in values if len(v) >= 3}

    def whole_patient_values(self, paths: Iterable[Path], min_length: int = 4) -> set[str]:
        """Whole PatientName / PatientID / PatientBirthDate values of files, for scanning
        large texts (logs, events) where short name parts would match by chance."""
        values = set()
        for path in paths:
            dataset = self.read(path, pixels=False)
            for keyword in PHI_KEYWORDS:
                text = str(dataset.get(keyword, "") or "").strip()
                if len(text) >= min_length:
                    values.add(text)
        return values

    def assert_no_patient_values(self, findings: Iterable[Finding], path: Path) -> None:
        """No finding message quotes a patient value of the file at ``path``."""
        try:
            dataset = self.read(path, pixels=False)
        except Exception:  # noqa: BLE001 - what pydicom cannot read holds no value to leak
            return
        values = self.patient_values(dataset)
        leaked = [(f.rule, v) for f in findings for v in values
                  if v in f.message or v.upper() in f.message]
        assert not leaked, f"finding messages quote patient values of {path}: {leaked}"


@pytest.fixture(scope="session")
def corpus() -> Corpus:
    return Corpus()


WITHOUT_ENGINE = {"conformance": {"enabled": False}}
"""The validator's own rules alone: most tests judge them, and their exact findings would
otherwise depend on dciodvfy's. ``tests-local/unit/test_conformance.py`` judges the engine,
and checks that it changes no verdict of the default profile."""


@pytest.fixture(scope="session")
def config() -> ValidatorConfig:
    """The default configuration (data/config.json) without the conformance engine."""
    return build_config(WITHOUT_ENGINE)


Validate = Callable[..., InstanceResult]
Mutate = Callable[..., Path]


@pytest.fixture
def validate(config: ValidatorConfig, corpus: Corpus) -> Validate:
    """``validate(source, config=None, name=None)`` -> the InstanceResult.

    Every validation of a file on disk also checks the PHI contract: no finding message
    quotes the file's PatientName, PatientID or PatientBirthDate; and every result's report
    entry (its findings with it) is held to the package's validation report schema.
    """

    def run(
        source: Source, cfg: ValidatorConfig | None = None, name: str | None = None
    ) -> InstanceResult:
        result, _ = validate_instance(source, cfg or config, name=name)
        check(VALIDATION_REPORT, {"files": [result.to_dict()], "studies": []}, result.name)
        if isinstance(source, (str, Path)):
            corpus.assert_no_patient_values(result.findings, Path(source))
        return result

    return run


@pytest.fixture
def mutate(tmp_path: Path, corpus: Corpus) -> Iterator[Mutate]:
    """``mutate(source, edit, name=None)``: a copy of a real file with ``edit(dataset)`` applied.

    ``source`` is a corpus file name or a path; ``edit`` changes the data set (and its
    ``file_meta``) in place. The copy is written to ``tmp_path``.
    """
    counter = iter(range(1_000_000))

    def run(source: str | Path, edit: Callable[[Dataset], object], name: str | None = None
            ) -> Path:
        path = corpus.path(source) if isinstance(source, str) else source
        dataset = corpus.read(path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            edit(dataset)
        target = tmp_path / (name or f"mutated-{next(counter)}-{path.name}")
        target.parent.mkdir(parents=True, exist_ok=True)
        return corpus.write(dataset, target)

    yield run


@pytest.fixture
def write_bytes(tmp_path: Path) -> Callable[[bytes, str], Path]:
    """``write_bytes(data, name)``: a file in ``tmp_path`` holding ``data``."""

    def run(data: bytes, name: str) -> Path:
        target = tmp_path / name
        target.write_bytes(data)
        return target

    return run
