"""``pacs-validator gateway status``: each study in a spool as an operator reads it, from the
spool alone (a running gateway is not disturbed: nothing is written, no file is digested).

One entry per study part: ``study_instance_uid``, ``calling_ae``, ``part``, ``stage``,
``received``, ``refused`` (each with its ``status`` and ``rules``), ``uploaded``,
``study_id`` and ``state`` (the cloud's, once known), and ``problem`` while a step is
failing. What was refused belongs to its study's last part, or to an entry of its own
(``part`` null) when nothing of that study was accepted.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, TextIO

from pacs_validator.gateway.spool import part_folders, read_part, read_refusals


def study_entries(root: Path) -> list[dict[str, Any]]:
    """The entries of the spool at ``root``, by calling AE, study and part."""
    refused: dict[tuple[str, str | None], list[dict[str, Any]]] = {}
    for refusal in read_refusals(root):
        key = (str(refusal["calling_ae"]), refusal["study_instance_uid"])
        refused.setdefault(key, []).append(
            {"sop_instance_uid": refusal["sop_instance_uid"], "status": refusal["status"],
             "rules": refusal["rules"]})
    parts = sorted((read_part(folder, digests=False) for folder in part_folders(root)),
                   key=lambda part: (part.calling_ae, part.study_instance_uid, -part.number))
    entries = []
    for part in parts:
        entries.append({
            "study_instance_uid": part.study_instance_uid, "calling_ae": part.calling_ae,
            "part": part.number, "stage": part.stage.value, "received": len(part.instances),
            "refused": refused.pop(part.key, []), "uploaded": part.uploaded,
            "study_id": part.study_id, "state": part.state, "problem": part.problem,
            "not_stored": len(part.failures)})
    for (calling_ae, study_instance_uid), refusals in refused.items():
        entries.append({
            "study_instance_uid": study_instance_uid, "calling_ae": calling_ae, "part": None,
            "stage": None, "received": 0, "refused": refusals, "uploaded": 0,
            "study_id": None, "state": None, "problem": None, "not_stored": 0})
    return sorted(entries, key=lambda e: (e["calling_ae"], str(e["study_instance_uid"]),
                                          e["part"] or 0))


def print_entries(entries: list[dict[str, Any]], out: TextIO) -> None:
    """One line per entry, then its refusals counted by status and rules."""
    if not entries:
        print("the spool holds no study", file=out)
    for entry in entries:
        part = f"part {entry['part']}" if entry["part"] else "nothing accepted"
        cloud = f"{entry['study_id']} {entry['state'] or '-'}" if entry["study_id"] \
            else (entry["stage"] or "-")
        print(f"{entry['calling_ae']}  {entry['study_instance_uid'] or '(unreadable)'}  "
              f"{part}: received {entry['received']}, refused {len(entry['refused'])}, "
              f"uploaded {entry['uploaded']}, {cloud}", file=out)
        if entry["problem"]:
            print(f"    problem: {entry['problem']}", file=out)
        kinds = Counter((r["status"], r["rules"] or "-") for r in entry["refused"])
        for (status, rules), count in sorted(kinds.items()):
            print(f"    refused {count}: {status} {rules}", file=out)
