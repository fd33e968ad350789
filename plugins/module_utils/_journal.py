# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""A small write-ahead journal: one JSON document that says how to undo an unfinished change.

The life cycle is always the same:

1. :meth:`Journal.write` the undo information **before** the first change.
   The document is written aside, fsynced, renamed into place and the
   directory is fsynced, so once ``write`` returns the journal survives a crash.
2. Make the changes.
3. :meth:`Journal.clear` (unlink + fsync of the directory): the point of no
   return. A journal that still exists at the start of the next run means the
   previous run was interrupted and must be undone with what the journal says.

On disk::

    {"version": 1, "kind": "<who wrote it>", "created": "<ISO UTC>",
     "digest": "sha256:<hex of the canonical payload>", "payload": {...}}

:meth:`Journal.load` refuses (with :class:`JournalError`) anything it cannot
trust: unreadable JSON, another version, another kind, or a payload whose digest
does not match. Callers must then stop and ask for a human, never guess.
"""

from __future__ import annotations

import hashlib
import json
import os
import typing as t

from ansible_collections.stagehand.deploy.plugins.module_utils._atomic import (
    fsync_dir,
    write_bytes_atomic,
)
from ansible_collections.stagehand.deploy.plugins.module_utils._state import utc_now

JOURNAL_VERSION = 1


class JournalError(ValueError):
    """The journal exists but cannot be trusted (corrupt, other version or other kind)."""


def _payload_digest(payload: t.Mapping[str, t.Any]) -> str:
    canonical = json.dumps(payload, sort_keys=True, separators=(',', ':')).encode('utf-8')
    return 'sha256:' + hashlib.sha256(canonical).hexdigest()


class Journal:
    """The write-ahead journal stored at ``path``, written by ``kind`` (e.g. ``stagehand.patch``)."""

    def __init__(self, path: str, kind: str) -> None:
        self.path = os.path.abspath(path)
        self.kind = kind

    @property
    def directory(self) -> str:
        return os.path.dirname(self.path)

    def exists(self) -> bool:
        """Whether a journal (possibly corrupt) is present."""
        return os.path.lexists(self.path)

    def write(self, payload: t.Mapping[str, t.Any]) -> None:
        """Durably store ``payload`` (JSON-serializable), replacing any previous journal.

        When this returns, the file and the directory entry are both fsynced.
        """
        document = {
            'version': JOURNAL_VERSION,
            'kind': self.kind,
            'created': utc_now(),
            'digest': _payload_digest(payload),
            'payload': payload,
        }
        data = (json.dumps(document, indent=2, sort_keys=True) + '\n').encode('utf-8')
        write_bytes_atomic(self.path, data, mode=0o600)

    def load(self) -> dict[str, t.Any] | None:
        """Return the stored payload, or None when there is no journal.

        Raises :class:`JournalError` naming the file and the reason when the
        journal exists but cannot be trusted.
        """
        try:
            with open(self.path, 'rb') as f:
                raw = f.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise JournalError('journal %s cannot be read: %s' % (self.path, exc)) from exc
        try:
            document = json.loads(raw.decode('utf-8'))
        except (UnicodeDecodeError, ValueError) as exc:
            raise JournalError('journal %s is corrupt (not valid JSON: %s)' % (self.path, exc)) from exc
        if not isinstance(document, dict):
            raise JournalError('journal %s is corrupt: expected a JSON object, got %s' % (self.path, type(document).__name__))
        version = document.get('version')
        if version != JOURNAL_VERSION:
            raise JournalError(
                'journal %s has version %r; this code only understands version %d' % (self.path, version, JOURNAL_VERSION)
            )
        if document.get('kind') != self.kind:
            raise JournalError('journal %s was written by %r, expected %r' % (self.path, document.get('kind'), self.kind))
        payload = document.get('payload')
        if not isinstance(payload, dict):
            raise JournalError('journal %s is corrupt: the payload is missing or not an object' % self.path)
        if document.get('digest') != _payload_digest(payload):
            raise JournalError('journal %s is corrupt: the payload does not match its digest' % self.path)
        return payload

    def clear(self) -> bool:
        """Remove the journal and fsync its directory; return whether one existed.

        Idempotent: clearing a missing journal is a no-op (but still fsyncs).
        """
        try:
            os.unlink(self.path)
            existed = True
        except FileNotFoundError:
            existed = False
        if os.path.isdir(self.directory):
            fsync_dir(self.directory)
        return existed
