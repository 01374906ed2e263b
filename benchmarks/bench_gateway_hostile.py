"""The DICOM gateway against hostile peers, in one process (pynetdicom as the peer): fuzzed
instances sent as C-STORE, a crowd of associations at once, and one large instance.

* ``--fuzzed N`` (default 10,000): inputs of ``bench_fuzz.py``'s mutation engine (real corpus
  files, one to three seeded mutations each), sent as their bytes are
  (``STORE_SEND_CHUNKED_DATASET``), grouped by the SOP class and transfer syntax their file
  meta names, one association per group. An input whose file meta the sender cannot read
  cannot be sent over DIMSE at all and is counted as such. Prints the statuses, the time per
  instance and whether the gateway answers C-ECHO after. Goal: a status for every sent
  input, no 0x0110 (the gateway's own failure), the gateway up.
* ``--associations N`` (default 1,000): N associations asked for at once against
  ``--max-associations 10``; established, rejected and unanswered are counted. Goal: the
  gateway refuses the rest and answers after.
* ``--large-mb M`` (default 300): one CT instance of M MB of pixel data: its status, time
  and the process's peak RSS (received to disk, so memory stays flat).

Run: ``.venv/bin/python benchmarks/bench_gateway_hostile.py [--fuzzed N] [--associations N]
[--large-mb M] [--seed S]``.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import pydicom
from bench_fuzz import make_input  # benchmarks/, beside this script
from pydicom.data import get_testdata_file
from pydicom.filereader import read_file_meta_info
from pydicom.uid import UID
from pynetdicom import AE, _config

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests-local"))
from gateway_peers import crowd, echoes

from pacs_validator.dicom.config import build_config
from pacs_validator.gateway.storage_scp import GatewayOptions, StorageGateway

NOT_SENDABLE = "file meta unreadable or its UIDs invalid: not sendable"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def fuzzed_inputs(count: int, seed: int, folder: Path) -> tuple[dict[tuple[str, str],
                                                                      list[Path]], int]:
    """The inputs written to ``folder``, by (SOP class, transfer syntax); and how many
    have a file meta no sender can read."""
    groups: dict[tuple[str, str], list[Path]] = {}
    unsendable = 0
    for index in range(count):
        _, blob, _ = make_input(seed, index)
        path = folder / f"{index:06d}.dcm"
        path.write_bytes(blob)
        try:
            meta = read_file_meta_info(path)
            key = (str(meta.MediaStorageSOPClassUID), str(meta.TransferSyntaxUID))
        except Exception:  # noqa: BLE001 - any unreadable meta: the sender cannot send it
            unsendable += 1
            continue
        groups.setdefault(key, []).append(path)
    return groups, unsendable


def send_fuzzed(port: int, groups: dict[tuple[str, str], list[Path]]) -> Counter[str]:
    statuses: Counter[str] = Counter()
    for (sop_class, syntax), paths in groups.items():
        if not (UID(sop_class).is_valid and UID(syntax).is_valid):  # no sender proposes it
            statuses[NOT_SENDABLE] += len(paths)
            continue
        sender = AE(ae_title="FUZZER")
        sender.acse_timeout = 5
        sender.add_requested_context(sop_class, syntax)
        association = sender.associate("127.0.0.1", port)
        if not association.is_established:
            statuses["context not accepted"] += len(paths)
            continue
        for path in paths:
            try:
                status = association.send_c_store(path)
            except Exception:  # noqa: BLE001 - the sender could not read what it was to send
                statuses[NOT_SENDABLE] += 1
                continue
            statuses[f"0x{int(status.Status):04X}" if "Status" in status else "no status"] += 1
            if not association.is_established:
                association = sender.associate("127.0.0.1", port)
        association.release()
    return statuses


def send_large(port: int, megabytes: int, folder: Path) -> tuple[str, float]:
    dataset = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    side = int((megabytes * 1024 * 1024 / 2) ** 0.5)
    dataset.Rows = dataset.Columns = side
    dataset.PixelData = bytes(side * side * 2)
    path = folder / "large.dcm"
    dataset.save_as(path)
    del dataset
    sender = AE(ae_title="LARGE")
    sender.add_requested_context(pydicom.dcmread(path, stop_before_pixels=True).SOPClassUID,
                                 "1.2.840.10008.1.2.1")
    association = sender.associate("127.0.0.1", port)
    started = time.monotonic()
    status = association.send_c_store(path)
    seconds = time.monotonic() - started
    association.release()
    return f"0x{int(status.Status):04X} {status.get('ErrorComment', '')}".strip(), seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fuzzed", type=int, default=10_000)
    parser.add_argument("--associations", type=int, default=1_000)
    parser.add_argument("--large-mb", type=int, default=300)
    parser.add_argument("--seed", type=int, default=34)
    args = parser.parse_args()
    _config.STORE_SEND_CHUNKED_DATASET = True
    with tempfile.TemporaryDirectory() as work:
        folder = Path(work)
        gateway = StorageGateway(GatewayOptions(spool=folder / "spool", port=0,
                                                max_associations=10), build_config({}))
        server = gateway.start()
        port = int(server.server_address[1])
        try:
            if args.fuzzed:
                (folder / "fuzzed").mkdir()
                groups, unsendable = fuzzed_inputs(args.fuzzed, args.seed, folder / "fuzzed")
                started = time.monotonic()
                statuses = send_fuzzed(port, groups)
                sent = sum(len(paths) for paths in groups.values())
                seconds = time.monotonic() - started
                statuses[NOT_SENDABLE] += unsendable
                print(f"fuzzed: {args.fuzzed} inputs, {sent} with a readable file meta, sent in "
                      f"{seconds:.0f} s "
                      f"({1000 * seconds / max(sent, 1):.0f} ms each)")
                for status, count in statuses.most_common():
                    print(f"  {status}: {count}")
                print(f"  gateway answers C-ECHO after: {echoes(port)}")
            if args.associations:
                outcomes = crowd(port, args.associations, hold_seconds=60)
                print(f"associations: {args.associations} at once, max 10: "
                      + ", ".join(f"{k} {v}" for k, v in outcomes.most_common()))
                print(f"  gateway answers C-ECHO after: {echoes(port)}")
            if args.large_mb:
                status, seconds = send_large(port, args.large_mb, folder)
                print(f"large: one instance of {args.large_mb} MB: {status} in {seconds:.1f} s")
            print(f"peak RSS of the process (gateway and peers): {peak_rss_mb():.0f} MB")
        finally:
            server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
