# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What may be a deploy root: the path checks of every module, and the marker the lock writes."""

from __future__ import annotations

import json
import os

import pytest

from ansible_collections.stagehand.deploy.plugins.module_utils import _lock
from ansible_collections.stagehand.deploy.plugins.module_utils._root import (
    MARKER,
    InvalidRoot,
    check_root_path,
    claim_decision,
    is_marked,
    mark_root,
)
from ansible_collections.stagehand.deploy.plugins.modules import (
    cleanup,
    delta,
    history,
    lock,
    opcache,
    patch,
    release,
    release_info,
    ship,
    switch,
)

RECORD = dict(action='deploy', user='u', controller='c', start='2026-01-01T00:00:00Z', outcome='success')


@pytest.mark.parametrize('root, fragment', [
    ('/', "'/' is a system directory"),
    ('/etc', "is inside the system directory '/etc'"),
    ('/etc/app', "is inside the system directory '/etc'"),
    ('/usr/local/app', "is inside the system directory '/usr'"),
    ('/proc/self', "is inside the system directory '/proc'"),
    ('/srv', 'is a system directory'),
    ('/var/www', 'is a system directory'),
    ('/home', 'is a system directory'),
    ('/srv/www/../../etc', "is not normalised: write it as '/etc'"),
    ('/srv/www/./shop', "write it as '/srv/www/shop'"),
    ('/srv/www/shop/', "write it as '/srv/www/shop'"),
    ('//srv/www/shop', "write it as '/srv/www/shop'"),
    ('/srv//www/shop', "write it as '/srv/www/shop'"),
    ('srv/www/shop', 'is not absolute'),
    ('~/shop', 'is not absolute'),
    ('/srv/www/shop\n', "'/srv/www/shop\\n' contains a control character"),
    ('', "'' is not a path"),
])
def test_a_root_that_may_not_be_a_deploy_root_is_refused_naming_it(root, fragment):
    with pytest.raises(InvalidRoot) as exc:
        check_root_path(root)
    assert fragment in str(exc.value)


@pytest.mark.parametrize('root', ['/srv/www/shop', '/var/www/shop', '/opt/shop', '/home/deploy/shop', '/srv/shop-2.0_x'])
def test_an_application_directory_is_a_possible_root(root):
    assert check_root_path(root) == root


def test_a_root_that_resolves_into_a_system_directory_is_refused(tmp_path):
    link = tmp_path / 'shop'
    os.symlink('/etc', str(link))
    with pytest.raises(InvalidRoot) as exc:
        check_root_path(str(link))
    assert "resolves to '/etc'" in str(exc.value)


def test_claim_decisions(tmp_path):
    assert claim_decision(str(tmp_path / 'new')) == 'create'
    (tmp_path / 'empty').mkdir()
    assert claim_decision(str(tmp_path / 'empty')) == 'claim'
    provisioned = tmp_path / 'provisioned'
    (provisioned / 'shared' / 'storage').mkdir(parents=True)
    assert claim_decision(str(provisioned)) == 'claim'
    legacy = tmp_path / 'legacy'
    for entry in ('releases/v1', 'shared', '.stagehand/releases'):
        (legacy / entry).mkdir(parents=True)
    os.symlink('releases/v1', str(legacy / 'current'))
    assert claim_decision(str(legacy)) == 'claim'
    mark_root(str(legacy), '2026-01-01T00:00:00Z')
    assert is_marked(str(legacy)) and claim_decision(str(legacy)) == 'marked'
    with open(os.path.join(str(legacy), '.stagehand', MARKER)) as f:
        assert json.load(f) == {'format': 1, 'root': str(legacy), 'claimed': '2026-01-01T00:00:00Z'}


def test_a_directory_holding_other_files_is_not_claimed(tmp_path):
    foreign = tmp_path / 'opt-app'
    foreign.mkdir()
    for name in ('bin', 'config.ini', 'data', 'shared'):
        (foreign / name).write_text('x')
    with pytest.raises(InvalidRoot) as exc:
        claim_decision(str(foreign))
    msg = str(exc.value)
    assert "holds 'bin', 'config.ini', 'data' and no .stagehand/deploy-root.json marker" in msg
    assert 'Nothing was written' in msg
    (tmp_path / 'file').write_text('x')
    with pytest.raises(InvalidRoot, match='exists but is not a directory'):
        claim_decision(str(tmp_path / 'file'))


def test_the_lock_marks_a_new_root_and_refuses_a_foreign_directory_writing_nothing(tmp_path, snapshot):
    new = str(tmp_path / 'new')
    got = _lock.acquire(new, owner='a', controller='c', pid=1, purpose='deploy v1')
    assert got['acquired'] and is_marked(new)
    foreign = tmp_path / 'foreign'
    foreign.mkdir()
    (foreign / 'index.html').write_text('<h1>not ours</h1>')
    before = snapshot(str(tmp_path))
    with pytest.raises(_lock.LockError) as exc:
        _lock.acquire(str(foreign), owner='a', controller='c', pid=1, purpose='deploy v1')
    assert "holds 'index.html'" in exc.value.msg
    assert snapshot(str(tmp_path)) == before


def test_a_refused_lock_does_not_mark_the_root(tmp_path, snapshot):
    root = str(tmp_path / 'app')
    os.makedirs(os.path.join(root, 'releases'))
    _lock.acquire(root, token='other-holder', owner='b', controller='c', pid=1, purpose='deploy v0')
    os.unlink(os.path.join(root, '.stagehand', MARKER))  # a root of an earlier version, held by a deploy
    before = snapshot(root)
    with pytest.raises(_lock.LockHeld):
        _lock.acquire(root, owner='a', controller='c', pid=2, purpose='deploy v1')
    assert snapshot(root) == before


@pytest.mark.parametrize('main, args', [
    (lock.main, {}),
    (cleanup.main, {'token': 't'}),
    (history.main, {'record': RECORD}),
    (release.main, {'name': 'v1', 'src': '/nonexistent'}),
    (release_info.main, {}),
    (switch.main, {'release': 'v1'}),
    (ship.main, {'release': 'v1', 'compose': {'compose_id': '0' * 64}}),
    (opcache.main, {'socket': '/run/php/app.sock'}),
    (delta.main, {'operation': 'rebuild', 'compose_id': '0' * 64, 'path': '/nonexistent'}),
    (patch.main, {'manifest': '/nonexistent'}),
])
@pytest.mark.parametrize('check_mode', [False, True])
def test_every_module_with_a_root_refuses_a_bad_one_before_anything(run_module, snapshot, tmp_path, main, args, check_mode):
    if check_mode and main is ship.main:
        pytest.skip('ship has no check mode (AnsibleModule skips it before the root is read)')
    # like /srv/www/../../etc, but where a module that wrongly accepted it would write into the test's own directory
    (tmp_path / 'www').mkdir()
    bad = '%s/www/../etc' % tmp_path
    before = snapshot(str(tmp_path))
    res = run_module(main, dict(args, root=bad), check_mode=check_mode)
    assert res.get('failed') is True, res
    assert res['msg'] == ("deploy root %r is not normalised: write it as %r (no '.', '..', '//' or trailing '/')"
                          % (bad, '%s/etc' % tmp_path))
    assert snapshot(str(tmp_path)) == before
