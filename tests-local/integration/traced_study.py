"""Runs two studies through the handlers on moto with X-Ray tracing on, as in Lambda.

Run by ``test_tracing.py`` in a process of its own (the X-Ray SDK patches botocore for good),
with ``AWS_XRAY_DAEMON_ADDRESS`` naming the test's UDP listener. Its argument names a file
for what the run uploaded and was answered: the file names, patient values and presigned
URLs that no trace may carry.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import pydicom
from conftest import moto_stack
from pydicom.data import get_testdata_file
from test_pipeline import call_api, run_study, study_status

IN_LAMBDA = {
    "LAMBDA_TASK_ROOT": tempfile.gettempdir(),
    "AWS_LAMBDA_FUNCTION_NAME": "traced",
    "_X_AMZN_TRACE_ID": "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;"
                        "Sampled=1",
    "POWERTOOLS_TRACE_DISABLED": "false",
}
"""What makes Powertools trace: a Lambda runtime's variables, and a sampled trace."""

STUDIES = {
    "DOE_JOHN_19631107.dcm": ("CT_small.dcm", {}),
    "ROE_JANE_19700101.dcm": ("MR_small.dcm", {"PatientID": ""}),  # rejected: 422
}
"""Each study's one file: its name as people name files, and the corpus file it is, changed."""


def study_file(corpus_name: str, changes: dict[str, str]) -> tuple[bytes, list[str]]:
    """The file's bytes and the patient values it holds."""
    dataset = pydicom.dcmread(get_testdata_file(corpus_name))
    for keyword, value in changes.items():
        setattr(dataset, keyword, value)
    with tempfile.TemporaryFile() as file:
        dataset.save_as(file)
        file.seek(0)
        data = file.read()
    values = [str(dataset.get(k)) for k in ("PatientName", "PatientID", "PatientBirthDate")]
    return data, [v for v in values if len(v) > 3]


def main(report: Path) -> None:
    secrets: list[str] = []
    answers = []
    with moto_stack(os.environ.__setitem__, IN_LAMBDA) as stack:
        for name, (corpus_name, changes) in STUDIES.items():
            data, patient_values = study_file(corpus_name, changes)
            secrets += [name, name.removesuffix(".dcm"), *patient_values]
            study_id = run_study(stack, {name: data})
            answers.append(study_status(stack, study_id))
            answers.append(call_api(stack, "POST", "/upload",
                                    {"files": [{"name": name, "size": len(data)}]})[1])
    report.write_text(json.dumps({"secrets": secrets, "answers": answers}))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
