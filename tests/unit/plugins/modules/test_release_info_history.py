# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""release_info: the ``history`` option (the last N entries of .stagehand/history.jsonl)."""

from __future__ import annotations

import os

from ansible_collections.stagehand.deploy.plugins.module_utils import _history
from ansible_collections.stagehand.deploy.plugins.modules.history import main as history_main
from ansible_collections.stagehand.deploy.plugins.modules.release_info import main

RECORD = {
    'action': 'deploy', 'release': 'v1', 'previous': None, 'user': 'alice', 'controller': 'laptop',
    'start': '2026-11-22T10:00:00Z', 'outcome': 'success',
}


def test_default_is_the_last_ten_oldest_first(run_module, tmp_path):
    root = tmp_path / 'app'
    root.mkdir()
    for i in range(12):
        res = run_module(history_main, {'root': str(root), 'record': dict(RECORD, release='v%d' % i)})
        assert res['changed'] is True
    res = run_module(main, {'root': str(root)})
    assert res['changed'] is False
    assert [h['release'] for h in res['history']] == ['v%d' % i for i in range(2, 12)]
    assert res['history'][-1]['outcome'] == 'success' and res['history'][-1]['user'] == 'alice'
    res = run_module(main, {'root': str(root), 'history': 2})
    assert [h['release'] for h in res['history']] == ['v10', 'v11']
    res = run_module(main, {'root': str(root), 'history': 0})
    assert res['history'] == []


def test_no_history_and_missing_root(run_module, tmp_path):
    root = tmp_path / 'app'
    root.mkdir()
    assert run_module(main, {'root': str(root)})['history'] == []
    res = run_module(main, {'root': str(tmp_path / 'missing')})
    assert res['exists'] is False and res['history'] == []


def test_negative_history_is_refused(run_module, tmp_path, snapshot):
    root = tmp_path / 'app'
    root.mkdir()
    _history.append_record(str(root), RECORD)
    before = snapshot(str(root))
    res = run_module(main, {'root': str(root), 'history': -1})
    assert res['failed'] is True and 'history -1 is invalid' in res['msg'] and '>= 0' in res['msg']
    assert snapshot(str(root)) == before


def test_torn_lines_are_skipped(run_module, tmp_path):
    root = tmp_path / 'app'
    root.mkdir()
    _history.append_record(str(root), RECORD)
    with open(os.path.join(str(root), '.stagehand', 'history.jsonl'), 'ab') as f:
        f.write(b'{"action": "depl')
    res = run_module(main, {'root': str(root), 'history': 5})
    assert [h['release'] for h in res['history']] == ['v1']
