# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import datetime
import json
import multiprocessing
import os

import pytest

from ansible_collections.stagehand.deploy.plugins.module_utils import _history
from ansible_collections.stagehand.deploy.plugins.modules.history import main

RECORD = {
    'action': 'deploy', 'release': 'v2', 'previous': 'v1', 'user': 'alice', 'controller': 'laptop',
    'start': '2026-11-22T10:00:00Z', 'end': '2026-11-22T10:01:02Z', 'outcome': 'success',
    'phases': {'lock': 0.1234, 'build': 31.5}, 'error': None,
}


@pytest.fixture
def root(tmp_path):
    r = tmp_path / 'app'
    r.mkdir()
    return r


def history_path(root):
    return os.path.join(str(root), '.stagehand', 'history.jsonl')


def lines(root):
    with open(history_path(root), 'rb') as f:
        return f.read().split(b'\n')


def record(run_module, root, check_mode=False, diff=False, **changes):
    rec = dict(RECORD)
    rec.update(changes)
    return run_module(main, {'root': str(root), 'record': rec}, check_mode=check_mode, diff=diff)


def test_appends_one_json_line_per_call(run_module, root):
    res = record(run_module, root)
    assert res.get('failed') is not True, res
    assert res['changed'] is True and res['path'] == history_path(root)
    # times are written with milliseconds, whatever precision they were given with
    assert res['record'] == dict(RECORD, start='2026-11-22T10:00:00.000Z', end='2026-11-22T10:01:02.000Z', phases={'lock': 0.123, 'build': 31.5})
    res = record(run_module, root, action='rollback', release='v1', previous='v2', outcome='refused', error='0003 is irreversible')
    assert res['changed'] is True
    raw = lines(root)
    assert raw[-1] == b'' and len(raw) == 3
    first, second = (json.loads(line) for line in raw[:2])
    assert first['action'] == 'deploy' and first['phases'] == {'lock': 0.123, 'build': 31.5}
    assert second == dict(RECORD, start='2026-11-22T10:00:00.000Z', end='2026-11-22T10:01:02.000Z', action='rollback',
                          release='v1', previous='v2', outcome='refused',
                          error='0003 is irreversible', phases={'lock': 0.123, 'build': 31.5})
    assert sorted(first) == sorted(_history.RECORD_KEYS)
    assert oct(os.stat(history_path(root)).st_mode & 0o777) == oct(0o600)


def test_end_defaults_to_now_and_times_are_normalised(run_module, root):
    rec = dict(RECORD)
    del rec['end']
    rec['start'] = '2026-11-22T11:00:00.123456+01:00'
    res = run_module(main, {'root': str(root), 'record': rec})
    assert res['record']['start'] == '2026-11-22T10:00:00.123Z'
    end = datetime.datetime.strptime(res['record']['end'], '%Y-%m-%dT%H:%M:%S.%fZ').replace(tzinfo=datetime.timezone.utc)
    assert abs((datetime.datetime.now(datetime.timezone.utc) - end).total_seconds()) < 300
    stored = json.loads(lines(root)[0])
    assert stored == res['record']


def test_defaults_for_optional_keys(run_module, root):
    res = run_module(main, {'root': str(root), 'record': {
        'action': 'cleanup', 'user': 'ci', 'controller': 'runner', 'start': '2026-11-22T10:00:00Z', 'outcome': 'success'}})
    assert res['record']['release'] is None and res['record']['previous'] is None
    assert res['record']['phases'] == {} and res['record']['error'] is None


def test_check_mode_writes_nothing(run_module, root, snapshot):
    before = snapshot(str(root))
    res = record(run_module, root, check_mode=True, diff=True)
    assert res['changed'] is True and res['record']['release'] == 'v2'
    assert res['diff']['before'] == '' and json.loads(res['diff']['after']) == res['record']
    assert snapshot(str(root)) == before


@pytest.mark.parametrize('changes, words', [
    ({'action': 'deploy-ish'}, ['action', 'deploy, rollback, cleanup', 'deploy-ish']),
    ({'outcome': 'ok'}, ['outcome', 'success, failed, refused, rolled_back']),
    ({'release': '../etc'}, ["record.release '../etc' is invalid"]),
    ({'start': 'yesterday'}, ["record.start 'yesterday' is invalid", 'ISO 8601']),
    ({'end': '2026-13-01T00:00:00Z'}, ["record.end '2026-13-01T00:00:00Z' is invalid"]),
    ({'phases': {'lock': -1}}, ["record.phases.lock -1 is invalid", '>= 0']),
    ({'phases': {'lock': 'fast'}}, ["record.phases.lock 'fast' is invalid"]),
    ({'user': ''}, ["record.user '' is invalid"]),
    ({'colour': 'blue'}, ['colour']),
])
def test_bad_records_change_nothing(run_module, root, snapshot, changes, words):
    record(run_module, root)
    before = snapshot(str(root))
    res = record(run_module, root, **changes)
    assert res['failed'] is True
    for word in words:
        assert word in res['msg']
    assert snapshot(str(root)) == before


def test_missing_root_is_refused(run_module, tmp_path):
    res = record(run_module, tmp_path / 'nope')
    assert res['failed'] is True and 'does not exist' in res['msg']
    assert not (tmp_path / 'nope').exists()


@pytest.mark.parametrize('inside', ['shared', 'releases/v1'])
def test_a_directory_that_is_not_a_deploy_root_gets_no_history(run_module, root, snapshot, inside):
    # the shared/ or a release of a deploy root given as the root: the lock refuses it, and the
    # history of that refusal must not be written into it either
    (root / '.stagehand').mkdir()
    (root / '.stagehand' / 'deploy-root.json').write_text('{"format": 1}')
    target = root / inside
    target.mkdir(parents=True)
    (target / '.env').write_text('DB_PASSWORD=x\n')
    (target / 'storage').mkdir()
    before = snapshot(str(root))
    res = record(run_module, target, outcome='refused', error='not a deploy root')
    assert res['failed'] is True, res
    assert 'nothing was recorded' in res['msg'] and repr(str(target)) in res['msg'] and "'.env'" in res['msg']
    assert snapshot(str(root)) == before
    assert not (target / '.stagehand').exists()


def test_a_torn_last_line_does_not_swallow_the_next_record(root):
    _history.append_record(str(root), RECORD)
    with open(history_path(root), 'ab') as f:
        f.write(b'{"action": "deploy", "rel')  # a crash in the middle of a write
    _history.append_record(str(root), dict(RECORD, release='v3'))
    raw = lines(root)
    assert raw[1] == b'{"action": "deploy", "rel' and json.loads(raw[2])['release'] == 'v3'
    assert [r['release'] for r in _history.read_history(str(root), 10)] == ['v2', 'v3']


def test_one_write_call_per_record(root, monkeypatch):
    writes = []
    real_write = os.write

    def counting_write(fd, data):
        writes.append(bytes(data))
        return real_write(fd, data)

    monkeypatch.setattr(_history.os, 'write', counting_write)
    _history.append_record(str(root), RECORD)
    _history.append_record(str(root), RECORD)
    assert len(writes) == 2 and all(w.endswith(b'\n') and w.count(b'\n') == 1 for w in writes)


def _append_many(args):
    root, worker = args
    for i in range(50):
        _history.append_record(root, dict(RECORD, release='w%d-%d' % (worker, i), error='x' * 5000))


def test_concurrent_appends_never_mix_lines(root):
    ctx = multiprocessing.get_context('fork')
    with ctx.Pool(4) as pool:
        pool.map(_append_many, [(str(root), w) for w in range(4)])
    raw = lines(root)
    assert raw[-1] == b''
    records = [json.loads(line) for line in raw[:-1]]
    assert len(records) == 200 and len({r['release'] for r in records}) == 200


def test_read_history_returns_the_last_entries_oldest_first(root):
    assert _history.read_history(str(root), 5) == []
    for i in range(30):
        _history.append_record(str(root), dict(RECORD, release='v%d' % i))
    assert [r['release'] for r in _history.read_history(str(root), 3)] == ['v27', 'v28', 'v29']
    assert len(_history.read_history(str(root), 100)) == 30
    assert _history.read_history(str(root), 0) == []
    with pytest.raises(_history.HistoryError):
        _history.read_history(str(root), -1)


def test_read_history_across_chunks(root, monkeypatch):
    monkeypatch.setattr(_history, 'READ_CHUNK', 7)
    for i in range(12):
        _history.append_record(str(root), dict(RECORD, release='v%d' % i))
    with open(history_path(root), 'ab') as f:
        f.write(b'not json\n\n[1, 2]\n')
    assert [r['release'] for r in _history.read_history(str(root), 4)] == ['v8', 'v9', 'v10', 'v11']
    assert [r['release'] for r in _history.read_history(str(root), 50)] == ['v%d' % i for i in range(12)]


def test_long_error_is_cut():
    rec = _history.validate_record(dict(RECORD, error='e' * 10000))
    assert len(rec['error']) == _history.MAX_ERROR_CHARS and rec['error'].endswith('(truncated)')


def test_validate_record_direct_refusals():
    with pytest.raises(_history.HistoryError, match='record .* is invalid'):
        _history.validate_record(['not', 'a', 'dict'])
    with pytest.raises(_history.HistoryError, match='record.user is missing'):
        _history.validate_record({k: v for k, v in RECORD.items() if k != 'user'})
    with pytest.raises(_history.HistoryError, match='phases'):
        _history.validate_record(dict(RECORD, phases=[1, 2]))
    empty = _history.validate_record(dict(RECORD, release='', previous='', error=''))
    assert empty['release'] is None and empty['previous'] is None and empty['error'] is None
    naive = _history.validate_record(dict(RECORD, start='2026-11-22 10:00:00'))
    assert naive['start'] == '2026-11-22T10:00:00.000Z'
