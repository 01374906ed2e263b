"""The manifests of the studies an execution environment is working on, each read once: the
files of a study mostly reach the same few environments, and the arrival that completes a
study judges it there, so reading a study's manifest costs about one request per
environment, not one per file or step.

A manifest never changes once its study exists (the API writes it before the study item),
so what was read stays true.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from pacs_validator.contract.keys import manifest_key
from pacs_validator.contract.upload_request import DeclaredFile, declared_files
from pacs_validator.flow.ports import ObjectStore

MANIFESTS_KEPT = 16
"""Manifests one environment keeps in memory."""


@dataclass(frozen=True)
class Declared:
    """A study's declared files in the manifest's order, and each name's place in it."""

    files: tuple[DeclaredFile, ...]
    places: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "places",
                           {file.name: index for index, file in enumerate(self.files)})


class Manifests:
    """The declared files of recently seen studies, from ``manifests/<id>.json``."""

    def __init__(self, uploads: ObjectStore, kept: int = MANIFESTS_KEPT) -> None:
        self.uploads = uploads
        self.kept = kept
        self._kept: OrderedDict[str, Declared | None] = OrderedDict()

    def of(self, study_id: str) -> Declared | None:
        """The study's declared files; None for a study without a manifest (a plain drop,
        or an id no study has)."""
        if study_id in self._kept:
            self._kept.move_to_end(study_id)
        else:
            document = self.uploads.find_json(manifest_key(study_id))
            self._kept[study_id] = None if document is None else \
                Declared(tuple(declared_files(document)))
            if len(self._kept) > self.kept:
                self._kept.popitem(last=False)
        return self._kept[study_id]
