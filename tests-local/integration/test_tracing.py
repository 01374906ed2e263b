"""With tracing on, what the functions send to X-Ray holds no file name, patient value or
presigned URL: traces are kept 30 days, outside the stack's KMS key."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import urlsplit

HERE = Path(__file__).parent


def received(sock: socket.socket, datagrams: list[bytes]) -> None:
    while True:
        try:
            datagrams.append(sock.recv(65536))
        except OSError:
            return


def test_traces_of_a_stored_and_a_rejected_study_carry_no_name_value_or_url(
        tmp_path: Path) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024 * 1024)
    sock.bind(("127.0.0.1", 0))
    datagrams: list[bytes] = []
    listener = threading.Thread(target=received, args=(sock, datagrams), daemon=True)
    listener.start()
    report = tmp_path / "report.json"
    environment = {**os.environ, "AWS_XRAY_DAEMON_ADDRESS": f"127.0.0.1:{sock.getsockname()[1]}",
                   "PYTHONPATH": os.pathsep.join([str(HERE), str(HERE.parent)])}
    subprocess.run([sys.executable, str(HERE / "traced_study.py"), str(report)], check=True,
                   env=environment, cwd=tmp_path, timeout=300)
    sock.close()
    listener.join(5)
    run = json.loads(report.read_text())
    segments = [json.loads(d.decode().split("\n", 1)[1]) for d in datagrams]
    traced = json.dumps(segments)
    traced_services = {s["name"] for s in segments}
    assert {"s3", "dynamodb", "events"} <= traced_services  # the AWS calls are traced ...
    assert '"operation": "CopyObject"' in traced and '"operation": "PutObject"' in traced
    for secret in run["secrets"]:  # ... without a name or value of the study
        assert secret not in traced and secret.upper() not in traced.upper(), secret
    urls = [link for answer in run["answers"] for link in _links(answer)]
    assert len(urls) >= 4  # status download links and upload forms
    for url in urls:
        parts = urlsplit(url)
        for piece in (parts.path.strip("/"), parts.query):
            assert not piece or piece not in traced, url
    assert "X-Amz-Signature" not in traced and "x-amz-signature" not in traced


def _links(document: object) -> list[str]:
    """Every URL in an API answer."""
    if isinstance(document, dict):
        return [u for value in document.values() for u in _links(value)]
    if isinstance(document, list):
        return [u for value in document for u in _links(value)]
    return [document] if isinstance(document, str) and document.startswith("http") else []
