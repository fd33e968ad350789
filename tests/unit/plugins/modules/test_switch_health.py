# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""switch: post_commands, the health check and the revert, against a real HTTP server on 127.0.0.1.

The server plays the application: for each request it resolves ``<root>/current``
right then, answers with the status written in the release's ``HEALTH`` file
(200 when there is none) and ``X-Release`` from its ``RELEASE`` file, like the
example app does.
"""

from __future__ import annotations

import http.server
import os
import socket
import threading

import pytest

from ansible_collections.stagehand.deploy.plugins.module_utils import _switch
from ansible_collections.stagehand.deploy.plugins.module_utils._state import DeployRoot
from ansible_collections.stagehand.deploy.plugins.modules.switch import main
from ansible_collections.stagehand.deploy.tests.unit.releases import write_release


class AppHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server API)
        server = self.server
        server.requests.append(self.path)
        status, release = server.answer()
        body = ('{"release": "%s"}' % release).encode()
        self.send_response(status)
        if release is not None:
            self.send_header('X-Release', release)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):  # keep the test output quiet
        pass


class AppServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    link = 'current'  # the link of the deploy root this server serves (nginx's root)

    def __init__(self, root):
        super().__init__(('127.0.0.1', 0), AppHandler)
        self.root = str(root)
        self.requests = []
        self.script = []  # (status, release) answers given first, before reading the live release

    def answer(self):
        if self.script:
            return self.script.pop(0)
        current = os.path.join(self.root, self.link)
        try:
            with open(os.path.join(current, 'RELEASE')) as f:
                release = f.read().strip()
        except OSError:
            return 404, None
        try:
            with open(os.path.join(current, 'HEALTH')) as f:
                status = int(f.read().strip())
        except OSError:
            status = 200
        return status, release

    @property
    def url(self):
        return 'http://127.0.0.1:%d/health' % self.server_address[1]


@pytest.fixture
def root(tmp_path):
    r = tmp_path / 'app'
    r.mkdir()
    for name in ('v1', 'v2', 'v3'):
        make_release(r, name)
    return r


@pytest.fixture
def app(root):
    server = AppServer(root)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def make_release(root, name, health=None, release_file=None, status='complete'):
    files = {'RELEASE': (release_file or name) + '\n'}
    if health is not None:
        files['HEALTH'] = '%d\n' % health
    return write_release(root, name, files, status=status, failed_reason=None)


def set_health(root, name, status):
    with open(os.path.join(str(root), 'releases', name, 'HEALTH'), 'w') as f:
        f.write('%d\n' % status)


def recorder(tmp_path, root, rc=0):
    """A post command appending '<phase tag> <current link>' to a log, exiting with ``rc``."""
    log = str(tmp_path / 'post.log')
    script = 'echo "$(readlink %s/current)" >> %s; exit %d' % (root, log, rc)
    return ['/bin/sh', '-c', script], log


def read_log(log):
    if not os.path.exists(log):
        return []
    with open(log) as f:
        return f.read().split()


def contents(snap):
    return {path: (entry['mode'], entry.get('sha256'), entry.get('target')) for path, entry in snap.items()}


def link(root):
    return os.readlink(os.path.join(str(root), 'current'))


def meta(root, name):
    return DeployRoot(str(root)).read_meta(name)


def switch(run_module, root, check_mode=False, **args):
    args.setdefault('root', str(root))
    return run_module(main, args, check_mode=check_mode)


def go_live(run_module, root, name='v1'):
    res = switch(run_module, root, release=name)
    assert res['changed'] is True and link(root) == 'releases/' + name


# -- success -----------------------------------------------------------------------
def test_switch_runs_post_commands_then_checks_health(run_module, root, app, tmp_path):
    go_live(run_module, root)
    cmd, log = recorder(tmp_path, root)
    res = switch(run_module, root, release='v2', post_commands=[cmd, cmd], health_url=app.url)
    assert res.get('failed') is not True, res
    assert res['changed'] is True and res['reverted'] is False
    assert link(root) == 'releases/v2'
    # both post commands ran after the link changed, before the health check
    assert read_log(log) == ['releases/v2', 'releases/v2']
    assert [c['phase'] for c in res['post_commands']] == ['switch', 'switch']
    assert res['post_commands'][0]['rc'] == 0 and res['post_commands'][0]['argv'] == cmd
    health = res['health']
    assert health['ok'] is True and health['status'] == 200 and health['release'] == 'v2'
    assert health['expected'] == 'v2' and health['header'] == 'X-Release' and health['error'] is None
    assert health['attempts'] == 1 and app.requests == ['/health']
    assert meta(root, 'v2')['previous'] == 'v1' and meta(root, 'v1')['next'] == 'v2'


def test_health_retries_until_healthy(run_module, root, app):
    go_live(run_module, root)
    app.script = [(500, 'v2'), (200, 'v1')]  # first an error, then the old release still answering
    res = switch(run_module, root, release='v2', health_url=app.url, health_timeout=30)
    assert res.get('failed') is not True, res
    assert res['health']['attempts'] == 3 and res['health']['release'] == 'v2'
    assert len(app.requests) == 3 and link(root) == 'releases/v2'


def test_empty_header_checks_only_the_status(run_module, root, app):
    go_live(run_module, root)
    app.script = [(200, None)]
    res = switch(run_module, root, release='v2', health_url=app.url, health_release_header='')
    assert res.get('failed') is not True, res
    assert res['health']['attempts'] == 1 and res['health']['header'] is None and res['health']['expected'] is None


def test_already_live_runs_no_post_command_but_checks_health(run_module, root, app, tmp_path):
    go_live(run_module, root, 'v2')
    cmd, log = recorder(tmp_path, root)
    res = switch(run_module, root, release='v2', post_commands=[cmd], health_url=app.url)
    assert res['changed'] is False and res['health']['ok'] is True
    assert res['post_commands'] == [] and read_log(log) == []


# -- failures and the revert -------------------------------------------------------------
def test_failed_health_reverts_and_runs_post_commands_again(run_module, root, app, tmp_path, snapshot):
    go_live(run_module, root)
    set_health(root, 'v2', 500)
    meta_dir = os.path.join(str(root), '.stagehand')
    before = snapshot(meta_dir)
    cmd, log = recorder(tmp_path, root)
    res = switch(run_module, root, release='v2', post_commands=[cmd], health_url=app.url, health_timeout=0.2)
    assert res['failed'] is True and res['reverted'] is True and res['changed'] is True
    assert link(root) == 'releases/v1'
    assert 'reverted' in res['msg'] and 'HTTP status 500' in res['msg'] and app.url in res['msg']
    assert 'releases/v1 again' in res['msg'] and 'post_commands were run again' in res['msg']
    # post commands ran with v2 live, then again with v1 live
    assert read_log(log) == ['releases/v2', 'releases/v1']
    assert [c['phase'] for c in res['post_commands']] == ['switch', 'revert']
    assert res['health']['ok'] is False and res['health']['status'] == 500 and res['health']['attempts'] >= 1
    assert '"release": "v2"' in res['health']['body']
    assert res['current'] == 'v1' and res['previous'] == 'v1' and res['chain']['live'] == 'v1'
    assert res['path'] == os.path.join(str(root), 'releases', 'v1')
    # the chain is as it was: v2 never counted as activated, so a later retry links it normally
    after = contents(snapshot(meta_dir))
    # the revert was an exchange with the spare link, which now points at v2 (see docs/layout.md)
    assert after.pop('current.next')[2] == 'releases/v2'
    assert after == contents(before)  # rewritten with the same bytes
    assert meta(root, 'v2')['activated'] is None and meta(root, 'v1')['next'] is None


def test_wrong_release_header_reverts(run_module, root, app):
    go_live(run_module, root)
    app.script = [(200, 'v1')] * 1000  # an old worker still answering
    res = switch(run_module, root, release='v2', health_url=app.url, health_timeout=0.6)
    assert res['failed'] is True and res['reverted'] is True and link(root) == 'releases/v1'
    assert "X-Release is 'v1', expected 'v2'" in res['msg']
    assert res['health']['release'] == 'v1' and res['health']['attempts'] >= 1


def test_unreachable_health_url_times_out_and_reverts(run_module, root):
    go_live(run_module, root)
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    url = 'http://127.0.0.1:%d/health' % port  # nothing listens there any more
    res = switch(run_module, root, release='v2', health_url=url, health_timeout=0.1)
    assert res['failed'] is True and res['reverted'] is True and link(root) == 'releases/v1'
    assert res['health']['status'] is None and 'cannot connect' in res['health']['error']
    assert 'cannot connect' in res['msg']


def test_post_command_failure_reverts_without_health_check(run_module, root, app, tmp_path):
    go_live(run_module, root)
    cmd, log = recorder(tmp_path, root, rc=3)
    res = switch(run_module, root, release='v2', post_commands=[cmd, ['/bin/true']], health_url=app.url)
    assert res['failed'] is True and res['reverted'] is True and link(root) == 'releases/v1'
    assert 'failed with rc 3' in res['msg']
    assert app.requests == []  # the health check never ran
    assert res['health'] is None
    # first run stopped at the failing command; the revert ran the list again (stopping there again)
    assert [(c['phase'], c['rc']) for c in res['post_commands']] == [('switch', 3), ('revert', 3)]
    assert read_log(log) == ['releases/v2', 'releases/v1']
    assert 'post_commands were run again and post command' in res['msg']


def test_post_command_that_cannot_run_reverts(run_module, root, tmp_path):
    go_live(run_module, root)
    missing = str(tmp_path / 'no-such-program')
    res = switch(run_module, root, release='v2', post_commands=[[missing]], revert_on_failure=True)
    assert res['failed'] is True and res['reverted'] is True and link(root) == 'releases/v1'
    assert res['post_commands'][0]['rc'] is None and 'could not be run' in res['msg']


def test_post_command_failure_without_health_url_does_not_revert_by_default(run_module, root, tmp_path):
    go_live(run_module, root)
    res = switch(run_module, root, release='v2', post_commands=[['/bin/false']])
    assert res['failed'] is True and res['reverted'] is False
    assert link(root) == 'releases/v2'
    assert 'revert_on_failure is false' in res['msg'] and 'releases/v2' in res['msg']


def test_revert_on_failure_false_leaves_the_new_release_live(run_module, root, app):
    go_live(run_module, root)
    set_health(root, 'v2', 503)
    res = switch(run_module, root, release='v2', health_url=app.url, health_timeout=0.1, revert_on_failure=False)
    assert res['failed'] is True and res['reverted'] is False and link(root) == 'releases/v2'
    assert 'revert_on_failure is false' in res['msg'] and 'HTTP status 503' in res['msg']
    assert meta(root, 'v2')['activated'] is not None


def test_first_deploy_failing_health_removes_current_again(run_module, root, app):
    set_health(root, 'v1', 500)
    res = switch(run_module, root, release='v1', health_url=app.url, health_timeout=0.1)
    assert res['failed'] is True and res['reverted'] is True
    assert not os.path.lexists(os.path.join(str(root), 'current'))
    assert 'nothing was live before' in res['msg']
    assert res['current'] is None and meta(root, 'v1')['activated'] is None


def test_already_live_and_unhealthy_fails_without_revert(run_module, root, app, tmp_path):
    go_live(run_module, root, 'v2')
    set_health(root, 'v2', 500)
    cmd, log = recorder(tmp_path, root)
    res = switch(run_module, root, release='v2', post_commands=[cmd], health_url=app.url, health_timeout=0.1)
    assert res['failed'] is True and res['reverted'] is False and res['changed'] is False
    assert 'already live' in res['msg'] and link(root) == 'releases/v2' and read_log(log) == []


def test_rollback_to_previous_with_health(run_module, root, app):
    go_live(run_module, root)
    go_live(run_module, root, 'v2')
    set_health(root, 'v1', 500)
    res = switch(run_module, root, target='previous', health_url=app.url, health_timeout=0.1)
    assert res['failed'] is True and res['reverted'] is True and link(root) == 'releases/v2'
    set_health(root, 'v1', 200)
    res = switch(run_module, root, target='previous', health_url=app.url)
    assert res.get('failed') is not True and link(root) == 'releases/v1' and res['health']['release'] == 'v1'


def test_migrated_directory_stays_a_release_after_a_revert(run_module, root, app):
    legacy = os.path.join(str(root), 'current')
    os.makedirs(legacy)
    with open(os.path.join(legacy, 'RELEASE'), 'w') as f:
        f.write('legacy\n')
    set_health(root, 'v2', 500)
    res = switch(run_module, root, release='v2', migrate_name='legacy', health_url=app.url, health_timeout=0.1)
    assert res['failed'] is True and res['reverted'] is True
    assert link(root) == 'releases/legacy'
    legacy_meta = meta(root, 'legacy')
    assert legacy_meta['status'] == 'complete' and legacy_meta['next'] is None
    assert meta(root, 'v2')['previous'] is None and meta(root, 'v2')['activated'] is None
    with open(os.path.join(legacy, 'RELEASE')) as f:
        assert f.read() == 'legacy\n'


def test_slots_expect_the_slot_release_label(run_module, tmp_path, app):
    root = tmp_path / 'ab'
    for slot, label in (('a', 'v1'), ('b', 'v2')):
        path = root / 'slots' / slot
        path.mkdir(parents=True)
        (path / 'RELEASE').write_text(label + '\n')
        DeployRoot(str(root)).write_slot_meta(slot, {
            'name': slot, 'release': label, 'status': 'complete', 'manifest_digest': None, 'created': None,
            'source': 'test', 'files': 1, 'bytes': 3, 'previous': None, 'next': None, 'activated': None,
            'failed_reason': None})
    app.root = str(root)
    res = switch(run_module, root, mode='slots', target='a', health_url=app.url)
    assert res.get('failed') is not True, res
    assert res['health']['expected'] == 'v1'
    (root / 'slots' / 'b' / 'HEALTH').write_text('500\n')
    res = switch(run_module, root, mode='slots', target='inactive', health_url=app.url, health_timeout=0.1)
    assert res['failed'] is True and res['reverted'] is True and link(root) == 'slots/a'
    assert res['current'] == 'a' and res['health']['expected'] == 'v2'


# -- check mode and refused input -------------------------------------------------------
def test_check_mode_runs_nothing(run_module, root, app, tmp_path, snapshot):
    go_live(run_module, root)
    set_health(root, 'v2', 500)
    cmd, log = recorder(tmp_path, root)
    before = snapshot(str(root))
    res = switch(run_module, root, check_mode=True, release='v2', post_commands=[cmd], health_url=app.url)
    assert res.get('failed') is not True and res['changed'] is True
    assert res['health'] is None and res['post_commands'] == [] and res['reverted'] is False
    assert app.requests == [] and read_log(log) == [] and snapshot(str(root)) == before


@pytest.mark.parametrize('args, words', [
    ({'post_commands': ['systemctl reload php8.2-fpm']}, ["post_commands[0] is the string", "['systemctl', 'reload', 'php8.2-fpm']"]),
    ({'post_commands': [[]]}, ['post_commands[0] [] is invalid', 'non-empty list']),
    ({'post_commands': [['echo', 1]]}, ['post_commands[0]', '1 is not a string']),
    ({'post_commands': [{'cmd': 'x'}]}, ['post_commands[0]', 'non-empty list of strings']),
    ({'health_url': 'ftp://127.0.0.1/health'}, ["health_url 'ftp://127.0.0.1/health' is invalid", 'http://']),
    ({'health_url': 'http:///health'}, ["health_url 'http:///health' is invalid"]),
    ({'health_url': 'http://127.0.0.1/', 'health_timeout': 0}, ['health_timeout 0.0 is invalid', 'greater than 0']),
    ({'health_url': 'http://127.0.0.1/', 'health_release_header': 'X Release'}, ["health_release_header 'X Release' is invalid"]),
])
def test_bad_arguments_change_nothing(run_module, root, snapshot, args, words):
    go_live(run_module, root)
    before = snapshot(str(root))
    res = switch(run_module, root, release='v2', **args)
    assert res['failed'] is True
    for word in words:
        assert word in res['msg']
    assert snapshot(str(root)) == before


def test_refused_switch_runs_nothing(run_module, root, app, tmp_path, snapshot):
    go_live(run_module, root)
    cmd, log = recorder(tmp_path, root)
    before = snapshot(str(root))
    res = switch(run_module, root, release='nope', post_commands=[cmd], health_url=app.url)
    assert res['failed'] is True and 'does not exist' in res['msg']
    assert app.requests == [] and read_log(log) == [] and snapshot(str(root)) == before


# -- the helpers directly ------------------------------------------------------------------
def test_wait_healthy_gives_up_at_the_deadline_with_a_fake_clock():
    moments = iter([0.0] + [x * 0.5 for x in range(1, 100) for _twice in (0, 1)])
    slept = []
    calls = []

    def fetch(url, header, timeout):
        calls.append(timeout)
        return 500, 'v2', 'down', None

    res = _switch.wait_healthy('http://x/health', 'v2', timeout=2.0, fetch=fetch,
                               clock=lambda: next(moments), sleep=slept.append)
    assert res['ok'] is False and res['error'] == 'HTTP status 500, expected 200'
    assert res['attempts'] == len(calls) and res['attempts'] >= 2
    assert all(s == 0.5 for s in slept) and len(slept) == res['attempts'] - 1
    assert all(0 < c <= 2.0 for c in calls)


def test_check_post_commands_accepts_tuples_and_returns_lists():
    assert _switch.check_post_commands((('a', 'b'), ['c'])) == [['a', 'b'], ['c']]
    assert _switch.check_post_commands(None) == []
    with pytest.raises(_switch.SwitchError):
        _switch.check_post_commands('reload')
