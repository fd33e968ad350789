# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The lock module through AnsibleModule, on real files."""

from __future__ import annotations

import datetime
import json
import os
import socket

import pytest

from ansible.module_utils import _internal as module_utils_internal
from ansible.module_utils.common import warnings as ansible_warnings

from ansible_collections.stagehand.deploy.plugins.module_utils import _lock
from ansible_collections.stagehand.deploy.plugins.module_utils._atomic import dump_json
from ansible_collections.stagehand.deploy.plugins.modules.lock import main

PAST = datetime.datetime(2020, 1, 1, 12, 0, 0, tzinfo=datetime.timezone.utc)

HOLDER = dict(owner='alice', controller='ctl-alice', pid=4242, purpose='deploy v1.4.0')


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch):
    """Module-side warnings, collected process-wide: start every test without any.

    Once any controller code was imported in this process, ``is_controller`` is
    True and warnings would go to the controller's Display instead of the result.
    """
    monkeypatch.setattr(module_utils_internal, 'is_controller', False)
    monkeypatch.setattr(ansible_warnings, '_global_warnings', type(ansible_warnings._global_warnings)())  # {} on 2.19, [] before


@pytest.fixture
def root(tmp_path):
    return str(tmp_path / 'app')


def lock_file(root):
    return os.path.join(root, '.stagehand', 'lock')


def read(root):
    with open(lock_file(root)) as f:
        return json.load(f)


def warning_texts(result):
    texts = []
    for warning in result.get('warnings', []):
        # ansible-core 2.19 serializes a WarningSummary as {'event': {'msg': ...}, ...}
        texts.append(warning if isinstance(warning, str) else warning['event']['msg'])
    return texts


def acquire_as_alice(run_module, root, **extra):
    res = run_module(main, dict(root=root, token='alice-token', **dict(HOLDER, **extra)))
    assert res['changed'] is True and res['acquired'] is True, res
    return res


def write_stale(root, token='stale-token'):
    content = _lock.build_lock(token, 60, owner='bob', controller='ctl-bob', host='web1', pid=77, purpose='deploy v0.9', now=PAST)
    os.makedirs(os.path.join(root, '.stagehand'), exist_ok=True)
    with open(lock_file(root), 'wb') as f:
        f.write(dump_json(content))
    return content


# -- acquire -------------------------------------------------------------------
def test_acquire_creates_root_and_writes_all_fields(run_module, root):
    res = run_module(main, dict(root=root, ttl=120, **HOLDER))
    assert res['changed'] is True
    assert res['acquired'] is True and res['released'] is False
    assert res['taken_over'] is None
    assert res['path'] == lock_file(root)
    content = read(root)
    assert set(content) == set(_lock.LOCK_FIELDS)
    assert content['token'] == res['token'] and len(res['token']) >= 16
    assert (content['owner'], content['controller'], content['pid'], content['purpose']) == (
        'alice', 'ctl-alice', 4242, 'deploy v1.4.0')
    assert content['host'] == socket.gethostname()
    assert content['ttl'] == 120
    acquired = _lock.parse_time(content['acquired'])
    assert _lock.parse_time(content['expires']) - acquired == datetime.timedelta(seconds=120)
    assert content['acquired'].endswith('Z')
    assert res['holder'] == content
    # nothing else left in .stagehand (no temp files), and the new root is marked as a deploy root
    assert sorted(os.listdir(os.path.join(root, '.stagehand'))) == ['deploy-root.json', 'lock']
    assert oct(os.stat(lock_file(root)).st_mode & 0o777) == oct(0o600)


@pytest.mark.parametrize('check_mode', [False, True])
def test_acquire_held_by_other_is_refused_naming_holder(run_module, snapshot, root, tmp_path, check_mode):
    acquire_as_alice(run_module, root)
    before = snapshot(str(tmp_path))
    res = run_module(main, dict(root=root, token='bob-token', owner='bob'), check_mode=check_mode)
    assert res.get('failed') is True and res['rc_exit'] == 1
    for fragment in ('alice', 'ctl-alice', '4242', 'deploy v1.4.0', lock_file(root), 'since ', 'until ', socket.gethostname(),
                     'state=absent force=true'):
        assert fragment in res['msg'], fragment
    assert res['holder']['token'] == 'alice-token'
    assert snapshot(str(tmp_path)) == before


def test_same_token_reacquire_changes_nothing(run_module, snapshot, root, tmp_path):
    first = acquire_as_alice(run_module, root)
    before = snapshot(str(tmp_path))
    for check_mode in (False, True):
        res = run_module(main, dict(root=root, token='alice-token', **HOLDER), check_mode=check_mode)
        assert res['changed'] is False and res['acquired'] is True
        assert res['holder'] == first['holder']
        assert snapshot(str(tmp_path)) == before


def test_same_token_on_expired_lock_warns(run_module, root):
    write_stale(root, token='mine')
    res = run_module(main, dict(root=root, token='mine'))
    assert res['changed'] is False and res['acquired'] is True
    assert any('expired' in w for w in warning_texts(res))


def test_stale_lock_is_taken_over(run_module, root):
    stale = write_stale(root)
    res = run_module(main, dict(root=root, token='alice-token', **HOLDER))
    assert res['changed'] is True and res['acquired'] is True
    assert res['taken_over'] == stale
    assert read(root)['token'] == 'alice-token'
    assert read(root)['owner'] == 'alice'
    assert sorted(os.listdir(os.path.join(root, '.stagehand'))) == ['deploy-root.json', 'lock', 'lock.guard']


@pytest.mark.parametrize('ttl', [0, -5])
def test_ttl_not_positive_is_refused(run_module, snapshot, tmp_path, root, ttl):
    before = snapshot(str(tmp_path))
    res = run_module(main, dict(root=root, ttl=ttl))
    assert res.get('failed') is True
    assert 'ttl %d' % ttl in res['msg'] and 'positive' in res['msg']
    assert snapshot(str(tmp_path)) == before
    assert not os.path.exists(root)


def test_empty_token_is_refused(run_module, snapshot, tmp_path, root):
    before = snapshot(str(tmp_path))
    res = run_module(main, dict(root=root, token=''))
    assert res.get('failed') is True and 'token' in res['msg']
    assert snapshot(str(tmp_path)) == before


@pytest.mark.parametrize('content', [b'not json at all\x00', b'{"owner": "x"}', b'', b'[1, 2]'])
@pytest.mark.parametrize('check_mode', [False, True])
def test_corrupt_lock_is_refused(run_module, snapshot, tmp_path, root, content, check_mode):
    os.makedirs(os.path.join(root, '.stagehand'))
    with open(lock_file(root), 'wb') as f:
        f.write(content)
    os.utime(lock_file(root), (0, 0))  # even a very old corrupt lock is not taken over
    before = snapshot(str(tmp_path))
    res = run_module(main, dict(root=root, token='alice-token'), check_mode=check_mode)
    assert res.get('failed') is True
    assert lock_file(root) in res['msg']
    assert repr(content[:20])[:-1] in res['msg']
    assert 'force=true' in res['msg']
    assert res['raw'] == repr(content)
    assert snapshot(str(tmp_path)) == before


# -- release -------------------------------------------------------------------
def test_release_by_holder_removes_lock(run_module, root):
    acquire_as_alice(run_module, root)
    res = run_module(main, dict(root=root, state='absent', token='alice-token'))
    assert res['changed'] is True and res['released'] is True and res['acquired'] is False
    assert res['holder'] is None
    assert not os.path.lexists(lock_file(root))
    # and again: nothing to do
    res = run_module(main, dict(root=root, state='absent', token='alice-token'))
    assert res['changed'] is False and res['released'] is False
    assert not warning_texts(res)


@pytest.mark.parametrize('token', ['bob-token', None])
def test_release_by_non_holder_does_nothing(run_module, snapshot, root, tmp_path, token):
    acquire_as_alice(run_module, root)
    before = snapshot(str(tmp_path))
    args = dict(root=root, state='absent')
    if token:
        args['token'] = token
    res = run_module(main, args)
    assert res.get('failed') is None and res['rc_exit'] == 0
    assert res['changed'] is False and res['released'] is False
    assert res['holder']['token'] == 'alice-token'
    texts = warning_texts(res)
    assert len(texts) == 1 and 'alice' in texts[0] and 'not released' in texts[0]
    assert snapshot(str(tmp_path)) == before
    assert read(root)['token'] == 'alice-token'


def test_release_of_absent_lock(run_module, snapshot, tmp_path, root):
    for check_mode in (False, True):
        before = snapshot(str(tmp_path))
        res = run_module(main, dict(root=root, state='absent', token='t'), check_mode=check_mode)
        assert res['changed'] is False and res['released'] is False and res['holder'] is None
        assert snapshot(str(tmp_path)) == before
        assert not os.path.exists(root)


@pytest.mark.parametrize('content', [None, b'garbage'])
def test_force_release(run_module, root, content):
    if content is None:
        acquire_as_alice(run_module, root)
    else:
        os.makedirs(os.path.join(root, '.stagehand'))
        with open(lock_file(root), 'wb') as f:
            f.write(content)
    res = run_module(main, dict(root=root, state='absent', force=True))
    assert res['changed'] is True and res['released'] is True
    assert not os.path.lexists(lock_file(root))


def test_corrupt_lock_release_without_force_warns(run_module, root):
    os.makedirs(os.path.join(root, '.stagehand'))
    with open(lock_file(root), 'wb') as f:
        f.write(b'garbage')
    res = run_module(main, dict(root=root, state='absent', token='x'))
    assert res['changed'] is False and res['released'] is False
    assert res['holder'] == {'raw': "b'garbage'"}
    assert any("b'garbage'" in w for w in warning_texts(res))
    assert os.path.exists(lock_file(root))


# -- check mode ----------------------------------------------------------------
def test_check_mode_acquire_free_changes_nothing(run_module, snapshot, tmp_path, root):
    res = run_module(main, dict(root=root, token='alice-token', **HOLDER), check_mode=True)
    assert res['changed'] is True and res['acquired'] is True
    assert res['holder']['token'] == 'alice-token'
    assert not os.path.exists(root)
    os.makedirs(os.path.join(root, '.stagehand'))
    before = snapshot(str(tmp_path))
    res = run_module(main, dict(root=root), check_mode=True)
    assert res['changed'] is True
    assert snapshot(str(tmp_path)) == before


def test_check_mode_takeover_changes_nothing(run_module, snapshot, tmp_path, root):
    stale = write_stale(root)
    before = snapshot(str(tmp_path))
    res = run_module(main, dict(root=root, token='alice-token'), check_mode=True)
    assert res['changed'] is True and res['taken_over'] == stale
    assert snapshot(str(tmp_path)) == before


@pytest.mark.parametrize('args, changed', [
    (dict(token='alice-token'), True),
    (dict(token='bob-token'), False),
    (dict(force=True), True),
])
def test_check_mode_release_changes_nothing(run_module, snapshot, tmp_path, root, args, changed):
    acquire_as_alice(run_module, root)
    before = snapshot(str(tmp_path))
    res = run_module(main, dict(root=root, state='absent', **args), check_mode=True)
    assert res['changed'] is changed and res['released'] is changed
    assert snapshot(str(tmp_path)) == before


# -- diff ----------------------------------------------------------------------
def test_diff_acquire_and_release(run_module, root):
    res = run_module(main, dict(root=root, token='alice-token', **HOLDER), diff=True)
    with open(lock_file(root)) as f:
        text = f.read()
    assert res['diff']['before'] == '' and res['diff']['after'] == text
    assert 'absent' in res['diff']['before_header']

    res = run_module(main, dict(root=root, token='alice-token'), diff=True)
    assert res['diff']['before'] == res['diff']['after'] == text

    res = run_module(main, dict(root=root, state='absent', token='alice-token'), check_mode=True, diff=True)
    assert res['diff']['before'] == text and res['diff']['after'] == ''
    assert os.path.exists(lock_file(root))

    res = run_module(main, dict(root=root, state='absent', token='alice-token'), diff=True)
    assert res['diff']['before'] == text and res['diff']['after'] == ''


def test_diff_takeover_in_check_mode(run_module, root):
    stale = write_stale(root)
    res = run_module(main, dict(root=root, token='alice-token'), check_mode=True, diff=True)
    assert json.loads(res['diff']['before']) == stale
    assert json.loads(res['diff']['after'])['token'] == 'alice-token'


def test_no_diff_key_without_diff_mode(run_module, root):
    res = run_module(main, dict(root=root))
    assert 'diff' not in res
