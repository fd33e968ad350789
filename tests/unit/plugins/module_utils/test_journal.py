# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import json
import os

import pytest

from ansible_collections.stagehand.deploy.plugins.module_utils._journal import JOURNAL_VERSION, Journal, JournalError

PAYLOAD = {
    'tree': '/srv/app',
    'entries': [
        {'index': 0, 'op': 'update', 'target': '/srv/app/a.php', 'existed': True, 'created_dirs': []},
        {'index': 1, 'op': 'create', 'target': '/srv/app/d/n\u00e9w.txt', 'existed': False, 'created_dirs': ['/srv/app/d']},
    ],
}


def test_roundtrip_and_clear(tmp_path):
    journal = Journal(str(tmp_path / 'journal.json'), 'stagehand.test')
    assert not journal.exists()
    assert journal.load() is None
    journal.write(PAYLOAD)
    assert journal.exists()
    assert journal.load() == PAYLOAD
    document = json.loads((tmp_path / 'journal.json').read_text())
    assert document['version'] == JOURNAL_VERSION == 1
    assert document['kind'] == 'stagehand.test'
    assert document['created'].endswith('Z')
    assert document['digest'].startswith('sha256:')
    assert oct(os.stat(tmp_path / 'journal.json').st_mode & 0o777) == oct(0o600)
    # Rewriting replaces; no temporary file is left behind.
    journal.write({'entries': []})
    assert journal.load() == {'entries': []}
    assert os.listdir(tmp_path) == ['journal.json']
    assert journal.clear() is True
    assert not journal.exists()
    assert journal.load() is None
    assert journal.clear() is False
    assert os.listdir(tmp_path) == []


def test_write_is_fsynced_before_it_is_visible_and_dir_after(tmp_path, monkeypatch):
    """The file is fsynced before the rename that publishes it, and the directory after it; clear fsyncs too."""
    events = []
    real_fsync, real_rename, real_unlink = os.fsync, os.rename, os.unlink

    def fsync(fd):
        events.append(('fsync', os.readlink('/proc/self/fd/%d' % fd)))
        return real_fsync(fd)

    def rename(src, dst):
        events.append(('rename', os.fspath(dst)))
        return real_rename(src, dst)

    def unlink(path, *args, **kwargs):
        events.append(('unlink', os.fspath(path)))
        return real_unlink(path, *args, **kwargs)

    monkeypatch.setattr(os, 'fsync', fsync)
    monkeypatch.setattr(os, 'rename', rename)
    monkeypatch.setattr(os, 'unlink', unlink)
    path = str(tmp_path / 'journal.json')
    journal = Journal(path, 'stagehand.test')
    journal.write(PAYLOAD)
    publish = events.index(('rename', path))
    file_syncs = [i for i, (kind, what) in enumerate(events) if kind == 'fsync' and what.startswith(str(tmp_path) + '/.journal.json.')]
    dir_syncs = [i for i, event in enumerate(events) if event == ('fsync', str(tmp_path))]
    assert file_syncs and file_syncs[0] < publish, events
    assert dir_syncs and dir_syncs[-1] > publish, events
    events.clear()
    journal.clear()
    assert events == [('unlink', path), ('fsync', str(tmp_path))]


@pytest.mark.parametrize('content, fragment', [
    (b'{"version": 1, "kind": "stagehand.test", "payl', 'not valid JSON'),
    (b'\xff\xfe garbage', 'not valid JSON'),
    (b'', 'not valid JSON'),
    (b'[1, 2]', 'expected a JSON object'),
    (b'{"version": 2, "kind": "stagehand.test", "payload": {}}', 'version 2'),
    (b'{"kind": "stagehand.test", "payload": {}}', 'version None'),
    (b'{"version": 1, "kind": "other.tool", "payload": {}}', "written by 'other.tool'"),
    (b'{"version": 1, "kind": "stagehand.test", "payload": []}', 'payload is missing or not an object'),
])
def test_corrupt_journal_is_a_clear_error(tmp_path, content, fragment):
    path = tmp_path / 'journal.json'
    path.write_bytes(content)
    with pytest.raises(JournalError) as exc:
        Journal(str(path), 'stagehand.test').load()
    assert fragment in str(exc.value)
    assert str(path) in str(exc.value)
    assert path.read_bytes() == content  # never touched


def test_payload_that_does_not_match_its_digest_is_refused(tmp_path):
    path = tmp_path / 'journal.json'
    journal = Journal(str(path), 'stagehand.test')
    journal.write(PAYLOAD)
    document = json.loads(path.read_text())
    document['payload']['entries'][0]['existed'] = False  # a flipped bit in the undo information
    path.write_text(json.dumps(document))
    with pytest.raises(JournalError, match='does not match its digest'):
        journal.load()


def test_unreadable_journal_is_a_journal_error(tmp_path):
    (tmp_path / 'journal.json').mkdir()  # reading a directory fails with EISDIR
    with pytest.raises(JournalError, match='cannot be read'):
        Journal(str(tmp_path / 'journal.json'), 'stagehand.test').load()
