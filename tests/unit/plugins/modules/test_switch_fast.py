# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""switch as a whole rollback in one call: lock, require_live, previous_good, the migrations record, history.

Real deploy roots under tmp_path, a real HTTP server on 127.0.0.1 playing the application
(it answers with the release ``current`` points at), and post commands that are real programs.
"""

from __future__ import annotations

import http.server
import json
import os
import threading

import pytest

from ansible_collections.stagehand.deploy.plugins.module_utils._root import mark_root
from ansible_collections.stagehand.deploy.plugins.module_utils import _lock
from ansible_collections.stagehand.deploy.plugins.module_utils import _schema
from ansible_collections.stagehand.deploy.plugins.module_utils import _switch
from ansible_collections.stagehand.deploy.plugins.module_utils._state import DeployRoot
from ansible_collections.stagehand.deploy.plugins.modules.switch import main
from ansible_collections.stagehand.deploy.tests.unit.releases import write_release

HISTORY = {'action': 'rollback', 'user': 'alice', 'controller': 'laptop'}
LOCK = {'owner': 'alice', 'controller': 'laptop', 'purpose': 'rollback'}


class AppHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server API)
        try:
            with open(os.path.join(self.server.root, 'current', 'RELEASE')) as f:
                release = f.read().strip()
            status = self.server.status
        except OSError:
            release, status = 'none', 404
        self.send_response(status)
        self.send_header('X-Release', release)
        self.send_header('Content-Length', '2')
        self.end_headers()
        self.wfile.write(b'ok')

    def log_message(self, *args):  # keep the test output quiet
        pass


@pytest.fixture
def app(root):
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), AppHandler)
    server.daemon_threads = True
    server.root = str(root)
    server.status = 200
    thread = threading.Thread(target=server.serve_forever, kwargs={'poll_interval': 0.02}, daemon=True)
    thread.start()
    server.url = 'http://127.0.0.1:%d/health' % server.server_address[1]
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def make_release(root, name, migrations=(), status='complete', activated=None, previous=None):
    """A release directory with RELEASE and migrations: ``(id, reversible)`` pairs."""
    files = {'RELEASE': name + '\n'}
    for mid, reversible in migrations:
        files['migrations/%s.up.sql' % mid] = 'CREATE TABLE t_%s (id INT);\n' % mid
        if reversible:
            files['migrations/%s.down.sql' % mid] = 'DROP TABLE t_%s;\n' % mid
    write_release(root, name, files, status=status, previous=previous, activated=activated,
                  failed_reason='health: HTTP 500' if status == 'failed' else None)
    os.makedirs(os.path.join(str(root), 'releases', name, 'migrations'), exist_ok=True)


M1 = ('0001_create_visits', True)
M2 = ('0002_add_note', True)
M3 = ('0003_drop_old', False)  # no down migration: irreversible


@pytest.fixture
def root(tmp_path):
    """v1 (0001), v2 (0001, 0002), v3 (0001-0003, 0003 irreversible); v2 live with v1 before it."""
    r = tmp_path / 'app'
    r.mkdir()
    make_release(r, 'v1', [M1], activated='2026-01-01T00:00:01Z')
    make_release(r, 'v2', [M1, M2], activated='2026-01-01T00:00:02Z', previous='v1')
    make_release(r, 'v3', [M1, M2, M3])
    os.symlink('releases/v2', str(r / 'current'))
    write_record(r, ['0001_create_visits', '0002_add_note'])
    mark_root(str(r), '2026-01-01T00:00:00Z')  # a root this version deployed to
    _lock.secure_state(DeployRoot(str(r)))  # the modes a root has once any run took its lock
    return r


def write_record(root, applied, database='app'):
    with open(os.path.join(str(root), '.stagehand', 'migrations.json'), 'w') as f:
        json.dump({'database': database, 'applied': applied, 'release': 'v2', 'written': '2026-01-01T00:00:02Z'}, f)


def link(root):
    return os.readlink(os.path.join(str(root), 'current'))


def history(root):
    path = os.path.join(str(root), '.stagehand', 'history.jsonl')
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def lock_path(root):
    return os.path.join(str(root), '.stagehand', 'lock')


def without(snap, *names):
    """The snapshot without the given paths (relative to the root) and the lock guard, which a lock call may create."""
    return dict((path, entry) for path, entry in snap.items() if path not in names + ('.stagehand/lock.guard',))


def rollback(run_module, root, check_mode=False, **args):
    full = {'root': str(root), 'target': 'previous_good', 'require_live': True, 'lock': dict(LOCK),
            'migrations_dir': 'migrations', 'migrations_database': 'app', 'history': dict(HISTORY)}
    full.update(args)
    full = dict((key, value) for key, value in full.items() if value is not None)
    return run_module(main, full, check_mode=check_mode)


def recorder(tmp_path, root, rc=0):
    """A post command logging the live link, exiting with ``rc``."""
    log = str(tmp_path / 'post.log')
    return ['/bin/sh', '-c', 'readlink %s/current >> %s; exit %d' % (root, log, rc)], log


def read_log(log):
    if not os.path.exists(log):
        return []
    with open(log) as f:
        return f.read().split()


# -- the whole rollback in one call ---------------------------------------------------------------
def test_rollback_in_one_call(run_module, root, app, tmp_path):
    cmd, log = recorder(tmp_path, root)
    res = rollback(run_module, root, post_commands=[cmd], health_url=app.url)
    assert res.get('failed') is not True, res
    assert res['changed'] is True and res['current'] == 'v1' and res['previous'] == 'v2' and link(root) == 'releases/v1'
    assert read_log(log) == ['releases/v1'] and res['health']['ok'] is True and res['health']['release'] == 'v1'
    # the lock was taken for the call, naming the holder, and given back
    assert res['lock']['acquired'] is True and res['lock']['released'] is True
    assert res['lock']['holder']['owner'] == 'alice' and res['lock']['holder']['purpose'] == 'rollback'
    assert not os.path.exists(lock_path(root))
    # the check: 0002 is unknown to v1 but reversible
    assert res['migrations']['unknown'] == ['0002_add_note'] and res['migrations']['irreversible_since'] == []
    assert res['needs_db_check'] is False and res['failed_phase'] is None
    # one history line, the one returned
    (line,) = history(root)
    assert line == res['history']
    assert line['action'] == 'rollback' and line['release'] == 'v1' and line['previous'] == 'v2'
    assert line['outcome'] == 'success' and line['error'] is None
    assert line['user'] == 'alice' and line['controller'] == 'laptop'
    assert sorted(line['phases']) == ['check', 'health', 'lock', 'switch']
    assert all(seconds >= 0 for seconds in line['phases'].values())
    assert line['start'] <= line['end']


def test_named_release_and_caller_phases_and_start(run_module, root):
    res = rollback(run_module, root, target=None, release='v1',
                   history=dict(HISTORY, start='2026-11-22T10:00:00Z', phases={'start': 0.25}))
    assert res.get('failed') is not True, res
    assert link(root) == 'releases/v1'
    (line,) = history(root)
    assert line['start'] == '2026-11-22T10:00:00.000Z' and line['phases']['start'] == 0.25 and 'switch' in line['phases']


def test_already_live_switches_nothing_but_records(run_module, root, tmp_path):
    cmd, log = recorder(tmp_path, root)
    res = rollback(run_module, root, target=None, release='v2', post_commands=[cmd])
    assert res.get('failed') is not True, res
    assert link(root) == 'releases/v2' and read_log(log) == []
    (line,) = history(root)
    assert line['release'] == 'v2' and line['previous'] == 'v2' and line['outcome'] == 'success'
    # a history line is a change
    assert res['changed'] is True


# -- the lock ---------------------------------------------------------------------------------------
def test_lock_held_by_another_refuses_and_changes_nothing(run_module, root, tmp_path, snapshot):
    held = _lock.acquire(str(root), owner='bob', controller='ci-runner', purpose='deploy version v9')
    cmd, log = recorder(tmp_path, root)
    before = snapshot(str(root))
    res = rollback(run_module, root, post_commands=[cmd], history=None)
    assert res['failed'] is True and res['failed_phase'] == 'lock'
    assert 'bob on controller ci-runner' in res['msg'] and "'deploy version v9'" in res['msg']
    assert res['lock']['acquired'] is False and res['lock']['holder']['owner'] == 'bob'
    assert snapshot(str(root)) == before
    assert read_log(log) == [] and link(root) == 'releases/v2'
    assert _lock.read_lock(lock_path(root))['token'] == held['token']


def test_lock_held_by_another_is_recorded_as_refused(run_module, root, snapshot):
    _lock.acquire(str(root), owner='bob', controller='ci-runner', purpose='deploy version v9')
    before = snapshot(str(root))
    res = rollback(run_module, root)
    assert res['failed'] is True and res['changed'] is True
    # only the history line was added
    assert without(snapshot(str(root)), '.stagehand/history.jsonl') == without(before)
    (line,) = history(root)
    assert line['outcome'] == 'refused' and 'held by bob' in line['error'] and line['release'] is None
    assert line['previous'] == 'v2' and 'lock' in line['phases']


def test_lock_released_after_a_failed_health_check(run_module, root, app, tmp_path):
    app.status = 500
    cmd, log = recorder(tmp_path, root)
    res = rollback(run_module, root, post_commands=[cmd], health_url=app.url, health_timeout=0.3)
    assert res['failed'] is True and res['reverted'] is True and res['failed_phase'] == 'health'
    assert link(root) == 'releases/v2' and read_log(log) == ['releases/v1', 'releases/v2']
    assert not os.path.exists(lock_path(root)) and res['lock']['released'] is True
    (line,) = history(root)
    assert line['outcome'] == 'rolled_back' and line['release'] == 'v1' and line['previous'] == 'v2'
    assert 'HTTP status 500' in line['error'] and 'reverted' in line['error']
    assert line['phases']['health'] > 0


def test_lock_released_after_a_failed_post_command_without_revert(run_module, root, tmp_path):
    cmd, _log = recorder(tmp_path, root, rc=3)
    res = rollback(run_module, root, post_commands=[cmd], revert_on_failure=False)
    assert res['failed'] is True and res['reverted'] is False and res['failed_phase'] == 'switch'
    assert link(root) == 'releases/v1'
    assert not os.path.exists(lock_path(root))
    (line,) = history(root)
    assert line['outcome'] == 'failed' and 'rc 3' in line['error']


def test_lock_released_after_a_filesystem_error(run_module, root, monkeypatch):
    def broken(*_args, **_kwargs):
        raise OSError(28, 'No space left on device')
    monkeypatch.setattr(_switch, 'apply_switch', broken)
    res = rollback(run_module, root)
    assert res['failed'] is True and 'No space left on device' in res['msg']
    assert link(root) == 'releases/v2' and not os.path.exists(lock_path(root))
    (line,) = history(root)
    assert line['outcome'] == 'failed' and res['current'] == 'v2'


def test_an_expired_lock_is_taken_over(run_module, root):
    _lock.acquire(str(root), owner='bob', ttl=1, now=_lock.utc_now().replace(year=2020))
    res = rollback(run_module, root)
    assert res.get('failed') is not True, res
    assert link(root) == 'releases/v1' and not os.path.exists(lock_path(root))


# -- the target -------------------------------------------------------------------------------------
def test_unknown_release_is_refused_listing_releases(run_module, root, snapshot):
    before = snapshot(str(root))
    res = rollback(run_module, root, target=None, release='v9', history=None)
    assert res['failed'] is True and res['failed_phase'] == 'check'
    assert "release 'v9' does not exist" in res['msg'] and 'v1, v2, v3' in res['msg']
    assert without(snapshot(str(root))) == without(before)
    assert not os.path.exists(lock_path(root))


def test_unknown_release_refusal_is_recorded_with_its_name(run_module, root, snapshot):
    before = snapshot(str(root))
    res = rollback(run_module, root, target=None, release='v9')
    assert res['failed'] is True and res['failed_phase'] == 'check'
    assert without(snapshot(str(root)), '.stagehand/history.jsonl') == without(before)
    (line,) = history(root)
    assert line['outcome'] == 'refused' and line['release'] == 'v9' and line['previous'] == 'v2'
    assert "release 'v9' does not exist" in line['error']


def test_previous_good_skips_a_failed_previous(run_module, root, tmp_path):
    make_release(root, 'v4', [M1, M2], status='failed', activated='2026-01-01T00:00:03Z', previous='v2')
    make_release(root, 'v5', [M1, M2], activated='2026-01-01T00:00:04Z', previous='v4')
    os.unlink(str(root / 'current'))
    os.symlink('releases/v5', str(root / 'current'))
    res = rollback(run_module, root)
    assert res.get('failed') is not True, res
    assert res['current'] == 'v2' and link(root) == 'releases/v2'


def test_previous_good_without_an_earlier_release_is_refused(run_module, root, snapshot):
    os.unlink(str(root / 'current'))
    os.symlink('releases/v1', str(root / 'current'))
    before = snapshot(str(root))
    res = rollback(run_module, root, history=None)
    assert res['failed'] is True
    assert 'no earlier good release' in res['msg'] and 'v1 (complete, live), v2 (complete), v3 (complete)' in res['msg']
    assert without(snapshot(str(root))) == without(before)


def test_nothing_live_is_refused(run_module, root, snapshot):
    os.unlink(str(root / 'current'))
    before = snapshot(str(root))
    res = rollback(run_module, root, target=None, release='v1', history=None)
    assert res['failed'] is True and 'nothing is live' in res['msg'] and 'v1 (complete)' in res['msg']
    assert without(snapshot(str(root))) == without(before)
    assert not os.path.lexists(str(root / 'current'))


def test_a_failed_release_is_refused(run_module, root, snapshot):
    make_release(root, 'v4', [M1, M2], status='failed')
    before = snapshot(str(root))
    res = rollback(run_module, root, target=None, release='v4')
    assert res['failed'] is True and 'is failed' in res['msg']
    assert without(snapshot(str(root)), '.stagehand/history.jsonl') == without(before)
    # the line names the release that was asked for
    assert history(root)[0]['outcome'] == 'refused' and history(root)[0]['release'] == 'v4'


# -- the irreversible-migrations check from disk ----------------------------------------------------
def go_live_on_v3(root):
    """v3 (with irreversible 0003) live after v2, its migrations recorded."""
    os.unlink(str(root / 'current'))
    os.symlink('releases/v3', str(root / 'current'))
    meta = DeployRoot(str(root)).read_meta('v3')
    meta.update(previous='v2', activated='2026-01-01T00:00:05Z')
    DeployRoot(str(root)).write_meta('v3', meta)
    write_record(root, ['0001_create_visits', '0002_add_note', '0003_drop_old'])


def test_irreversible_migration_refuses_and_changes_nothing(run_module, root, tmp_path, snapshot):
    go_live_on_v3(root)
    cmd, log = recorder(tmp_path, root)
    before = snapshot(str(root))
    res = rollback(run_module, root, post_commands=[cmd])
    assert res['failed'] is True and res['failed_phase'] == 'check' and res['needs_db_check'] is False
    assert 'v2 does not have the irreversible migrations 0003_drop_old that the database holds' in res['msg']
    # no dump recorded before 0003_drop_old: none is named (issue 11: a refusal named a dump that did not exist)
    assert 'No restore is possible: no dump was recorded' in res['msg'] and '.sql.gz' not in res['msg']
    assert res['migrations']['irreversible_since'] == ['0003_drop_old'] and res['migrations']['unknown'] == ['0003_drop_old']
    assert without(snapshot(str(root)), '.stagehand/history.jsonl') == without(before)
    assert read_log(log) == [] and link(root) == 'releases/v3' and not os.path.exists(lock_path(root))
    (line,) = history(root)
    assert line['outcome'] == 'refused' and line['release'] == 'v2' and line['previous'] == 'v3'
    assert '0003_drop_old' in line['error']


def test_refusal_names_the_dump_taken_right_before_the_oldest_lacking_migration(run_module, root):
    go_live_on_v3(root)
    dumps = root / '.stagehand' / 'dumps'
    dumps.mkdir()
    for name, before, precedes in (('v2', ['0001_create_visits'], ['0002_add_note']),
                                   ('v3', ['0001_create_visits', '0002_add_note'], ['0003_drop_old'])):
        (dumps / ('%s.sql.gz' % name)).write_bytes(b'dump')
        _schema.record_dump(str(dumps / ('%s.sql.gz' % name)), 'app', name, before, precedes, '2026-01-01T00:00:0%sZ' % name[1])
    res = rollback(run_module, root, target=None, release='v1')
    assert res['failed'] is True and res['failed_phase'] == 'check'
    assert 'restore (restore_db=true) would restore %s, the dump taken right before 0003_drop_old' % (dumps / 'v3.sql.gz') in res['msg']
    assert 'v2.sql.gz' not in res['msg'] and res['migrations']['guard']['dump'] == str(dumps / 'v3.sql.gz')
    (dumps / 'v3.sql.gz').unlink()
    res = rollback(run_module, root, target=None, release='v1')
    assert res['failed'] is True and '.sql.gz' not in res['msg'] and 'is no longer in' in res['msg']


def test_rollback_to_the_live_release_is_never_refused(run_module, root):
    """issue 11: with a release live that lacks an irreversible migration, rolling back to it only checks health."""
    write_record(root, ['0001_create_visits', '0002_add_note', '0003_drop_old'])  # v2 live, 0003 applied
    res = rollback(run_module, root, target=None, release='v2')
    assert res.get('failed') is not True, res
    assert link(root) == 'releases/v2' and res['migrations'] is None
    assert history(root)[0]['outcome'] == 'success'


def test_irreversible_migration_known_to_the_target_is_fine(run_module, root):
    go_live_on_v3(root)
    make_release(root, 'v3b', [M1, M2, M3], activated='2026-01-01T00:00:04Z')
    res = rollback(run_module, root, target=None, release='v3b')
    assert res.get('failed') is not True, res
    assert res['migrations']['unknown'] == [] and link(root) == 'releases/v3b'


def test_irreversibility_is_read_from_another_release(run_module, root):
    # rolled back from v3 to v2 earlier (with a restore that was not needed): v2 live, 0003 still applied
    write_record(root, ['0001_create_visits', '0002_add_note', '0003_drop_old'])
    res = rollback(run_module, root)
    assert res['failed'] is True and res['migrations']['irreversible_since'] == ['0003_drop_old']


@pytest.mark.parametrize('setup, reason', [
    (lambda root: os.unlink(os.path.join(str(root), '.stagehand', 'migrations.json')), 'there is no migrations record'),
    (lambda root: write_record(root, ['0001_create_visits', '0002_add_note'], database='other'), "about database 'other'"),
    (lambda root: write_record(root, ['0001_create_visits']), 'older than the live release v2'),
    (lambda root: write_record(root, ['0001_create_visits', '0002_add_note', '0009_lost']), '0009_lost is in no release'),
    (lambda root: open(os.path.join(str(root), '.stagehand', 'migrations.json'), 'w').write('{"applied": 3}'), 'is not valid'),
    (lambda root: open(os.path.join(str(root), '.stagehand', 'migrations.json'), 'w').write('{not json'), 'cannot be read'),
])
def test_a_record_that_cannot_answer_needs_the_database(run_module, root, tmp_path, snapshot, setup, reason):
    setup(root)
    cmd, log = recorder(tmp_path, root)
    before = snapshot(str(root))
    res = rollback(run_module, root, post_commands=[cmd])
    assert res['failed'] is True and res['needs_db_check'] is True and res['failed_phase'] == 'check'
    assert reason in res['msg'] and 'nothing was changed' in res['msg']
    assert reason in res['migrations']['needs_db_check']
    # nothing changed, no history line, the lock given back
    assert without(snapshot(str(root))) == without(before)
    assert history(root) == [] and res['history'] is None and not os.path.exists(lock_path(root))
    assert res['changed'] is False and read_log(log) == [] and link(root) == 'releases/v2'


def test_no_migrations_check_without_migrations_dir(run_module, root):
    os.unlink(os.path.join(str(root), '.stagehand', 'migrations.json'))
    res = rollback(run_module, root, migrations_dir=None, migrations_database=None)
    assert res.get('failed') is not True, res
    assert res['migrations'] is None and link(root) == 'releases/v1'


# -- check mode ---------------------------------------------------------------------------------------
def test_check_mode_changes_nothing_and_shows_the_history_line(run_module, root, app, tmp_path, snapshot):
    cmd, log = recorder(tmp_path, root)
    before = snapshot(str(root))
    res = rollback(run_module, root, check_mode=True, post_commands=[cmd], health_url=app.url)
    assert res.get('failed') is not True, res
    assert res['changed'] is True and res['current'] == 'v1' and res['health'] is None
    assert res['history']['release'] == 'v1' and res['history']['outcome'] == 'success'
    assert res['lock']['acquired'] is True and res['lock']['released'] is False
    assert without(snapshot(str(root))) == without(before)
    assert history(root) == [] and read_log(log) == [] and not os.path.exists(lock_path(root))


def test_check_mode_reports_a_held_lock(run_module, root, snapshot):
    _lock.acquire(str(root), owner='bob', controller='ci-runner')
    before = snapshot(str(root))
    res = rollback(run_module, root, check_mode=True)
    assert res['failed'] is True and 'held by bob' in res['msg']
    assert without(snapshot(str(root))) == without(before)


def test_check_mode_reports_irreversible_migrations(run_module, root, snapshot):
    go_live_on_v3(root)
    before = snapshot(str(root))
    res = rollback(run_module, root, check_mode=True)
    assert res['failed'] is True and res['migrations']['irreversible_since'] == ['0003_drop_old']
    assert without(snapshot(str(root))) == without(before)


# -- bad input: nothing changes, no lock, no history ---------------------------------------------------
@pytest.mark.parametrize('args, message', [
    ({'lock': dict(LOCK, ttl=0)}, 'lock.ttl 0 is invalid'),
    ({'history': {'action': 'rollback', 'user': 'alice', 'controller': 'laptop', 'start': 'yesterday'}},
     "history.start 'yesterday' is invalid"),
    ({'history': {'action': 'rollback', 'user': ' ', 'controller': 'laptop'}}, 'history.user'),
    ({'migrations_dir': '../../etc'}, "migrations_dir '../../etc' is invalid"),
    ({'migrations_dir': '/srv/migrations'}, "migrations_dir '/srv/migrations' is invalid"),
    ({'post_commands': ['systemctl reload php8.2-fpm']}, 'post_commands[0] is the string'),
    ({'target': None, 'release': '../v1'}, "'../v1' is invalid"),
])
def test_bad_input_changes_nothing(run_module, root, snapshot, args, message):
    before = snapshot(str(root))
    res = rollback(run_module, root, **args)
    assert res['failed'] is True and message in res['msg'], res['msg']
    assert snapshot(str(root)) == before


def test_missing_history_keys_are_refused_by_the_argument_spec(run_module, root, snapshot):
    before = snapshot(str(root))
    res = rollback(run_module, root, history={'action': 'rollback'})
    assert res['failed'] is True and 'user' in res['msg'] and 'controller' in res['msg']
    assert snapshot(str(root)) == before


def test_history_overrides(run_module, root):
    res = rollback(run_module, root, target=None, release='v1',
                   history=dict(HISTORY, release='v2', previous='v1', outcome='rolled_back', error='web2 failed'))
    assert res.get('failed') is not True, res
    (line,) = history(root)
    assert (line['release'], line['previous'], line['outcome'], line['error']) == ('v2', 'v1', 'rolled_back', 'web2 failed')


def test_plain_switch_reports_the_new_keys_empty(run_module, root):
    res = run_module(main, {'root': str(root), 'release': 'v1'})
    assert res.get('failed') is not True, res
    assert res['lock'] is None and res['history'] is None and res['migrations'] is None
    assert res['needs_db_check'] is False and res['failed_phase'] is None
    assert history(root) == []


@pytest.mark.parametrize('live', [True, False])
def test_unreadable_metadata_is_refused_and_the_lock_released(run_module, root, live):
    with open(os.path.join(str(root), '.stagehand', 'releases', 'v1.json'), 'w') as f:
        f.write('{not json')
    if not live:
        os.unlink(str(root / 'current'))
    res = rollback(run_module, root, target=None, release='v1')
    assert res['failed'] is True and 'cannot read the metadata' in res['msg']
    assert os.path.lexists(str(root / 'current')) is live and not os.path.exists(lock_path(root))
    assert history(root)[0]['outcome'] == 'refused'


# -- slots mode: the flip back is under the same schema guard (issue 11) -------------------------------
def slots_root(tmp_path, a_migrations, b_migrations, applied):
    """slots a (label v2) and b (label v3, live), their migrations, and the record."""
    r = tmp_path / 'slots-app'
    for slot, label, migrations in (('a', 'v2', a_migrations), ('b', 'v3', b_migrations)):
        mig = r / 'slots' / slot / 'migrations'
        mig.mkdir(parents=True)
        (r / 'slots' / slot / 'RELEASE').write_text(label + '\n')
        for mid, reversible in migrations:
            (mig / (mid + '.up.sql')).write_text('SELECT 1;\n')
            if reversible:
                (mig / (mid + '.down.sql')).write_text('SELECT 1;\n')
        DeployRoot(str(r)).ensure_state_dirs()
        DeployRoot(str(r)).write_slot_meta(slot, {'name': slot, 'release': label, 'status': 'complete', 'manifest_digest': None,
                                                  'activated': '2026-01-01T00:00:0%sZ' % label[1]})
    os.symlink('slots/b', str(r / 'current'))
    write_record(r, applied)
    mark_root(str(r), '2026-01-01T00:00:00Z')  # a root this version deployed to
    _lock.secure_state(DeployRoot(str(r)))  # the modes a root has once any run took its lock
    return r


def test_slots_flip_back_over_an_irreversible_migration_is_refused(run_module, tmp_path, snapshot):
    r = slots_root(tmp_path, [M1, M2], [M1, M2, M3], ['0001_create_visits', '0002_add_note', '0003_drop_old'])
    before = snapshot(str(r))
    res = rollback(run_module, r, mode='slots', target='inactive')
    assert res['failed'] is True and res['failed_phase'] == 'check', res
    assert 'v2 does not have the irreversible migrations 0003_drop_old that the database holds' in res['msg']
    assert link(r) == 'slots/b' and without(snapshot(str(r)), '.stagehand/history.jsonl') == without(before)


def test_slots_flip_back_over_reversible_migrations_is_fine(run_module, tmp_path):
    r = slots_root(tmp_path, [M1], [M1, M2], ['0001_create_visits', '0002_add_note'])
    res = rollback(run_module, r, mode='slots', target='inactive')
    assert res.get('failed') is not True, res
    assert link(r) == 'slots/a' and res['migrations']['guard']['allowed'] is True
