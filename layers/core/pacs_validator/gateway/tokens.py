"""The bearer tokens STOW-RS callers present, each under a label that names the caller.

The label plays the part a calling AE title plays for C-STORE: it is the ``sender`` the
intake keeps a study under and what the logs name. A token is never logged nor echoed; an
error in the file names its line, not its content.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from pathlib import Path

from pacs_validator.dicom.config import ConfigError

SCHEME = "bearer"


@dataclass(frozen=True)
class BearerTokens:
    """Token -> label, as a token file (``LABEL TOKEN`` a line) lists them."""

    labels: dict[str, str]

    @classmethod
    def read(cls, path: Path) -> BearerTokens:
        """The tokens of the file at ``path``: one ``LABEL TOKEN`` a line; blank lines and
        lines starting with ``#`` are skipped. A label may have several tokens (to rotate
        one), a token one label only. Raises :class:`ConfigError` (a usage error on the
        command line) for a file that cannot be read or is malformed."""
        try:
            text = path.read_text("utf-8")
        except OSError as exc:
            raise ConfigError(f"{path}: {exc.strerror}") from None
        labels: dict[str, str] = {}
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            fields = line.split()
            if len(fields) != 2:
                raise ConfigError(f"{path}:{number}: expected LABEL TOKEN")
            label, token = fields
            if labels.get(token, label) != label:
                raise ConfigError(f"{path}:{number}: this token is given to two labels")
            labels[token] = label
        if not labels:
            raise ConfigError(f"{path}: no token")
        return cls(labels)

    def label_for(self, authorization: str | None) -> str | None:
        """The label of the token an ``Authorization: Bearer`` header carries; None when it
        carries none or an unknown one. Every known token is compared, in constant time, so
        the answer's timing tells nothing of how close a guess was."""
        scheme, _, presented = (authorization or "").strip().partition(" ")
        if scheme.lower() != SCHEME or not presented.strip():
            return None
        offered = presented.strip().encode()
        found = None
        for token, label in self.labels.items():
            if hmac.compare_digest(token.encode(), offered):
                found = label
        return found
