"""Edit a saved folder's ``estimator.json`` as someone who knows its format would.

``estimator.json`` records the SHA-256 of its other fields in ``document_sha256``, so an
edit alone is refused as damage. Tests that craft hostile content on purpose rewrite the
checksum too (an attacker who can write the folder can), so that the check they are
about, not the checksum, is what refuses. The checksum is computed here from the format's
description, not with the library's function, so these tests also pin that format.
"""

import hashlib
import json
from pathlib import Path

CHECKSUM_FIELD = "document_sha256"


def document_checksum(document):
    """SHA-256 of the canonical JSON (sorted keys, no spaces, ASCII) of every other field."""
    content = {name: value for name, value in document.items() if name != CHECKSUM_FIELD}
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def edit_estimator_file(folder, change, *, checksum=True):
    """Apply ``change(document)`` to ``folder/estimator.json``, then rewrite its checksum.

    With ``checksum=False`` the recorded checksum is left as it was (an accidental or
    careless edit).
    """
    file = Path(folder) / "estimator.json"
    document = json.loads(file.read_text(encoding="utf-8"))
    change(document)
    if checksum and CHECKSUM_FIELD in document:
        document[CHECKSUM_FIELD] = document_checksum(document)
    file.write_text(json.dumps(document, indent=2, sort_keys=True), encoding="utf-8")


def make_legacy(folder):
    """Rewrite ``folder/estimator.json`` as format 2 wrote it: no checksum field."""

    def to_format_2(document):
        del document[CHECKSUM_FIELD]
        document["format_version"] = 2

    edit_estimator_file(folder, to_format_2, checksum=False)
