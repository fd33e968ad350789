# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import os
import re

import pytest

from ansible_collections.stagehand.deploy.plugins.module_utils._state import DeployRoot
from ansible_collections.stagehand.deploy.plugins.modules.switch import main
from ansible_collections.stagehand.deploy.tests.unit.releases import write_release

CHAIN_KEYS = ('previous', 'next', 'activated')


def make_release(root, name, status='complete', meta=True, **extra):
    """A release directory with two files naming it, and (unless meta=False) its metadata."""
    files = {'index.php': '<?php echo "%s";\n' % name, 'lib/x.php': '<?php // lib %s\n' % name}
    fields = dict({'manifest_digest': 'sha256:' + '0' * 64, 'failed_reason': 'smoke test failed' if status == 'failed' else None}, **extra)
    return write_release(root, name, files, status=status, meta=meta, **fields)


def make_slot(root, slot, label, status='complete', meta=True):
    path = os.path.join(str(root), 'slots', slot)
    os.makedirs(path)
    with open(os.path.join(path, 'index.php'), 'w') as f:
        f.write('slot %s %s\n' % (slot, label))
    if meta:
        DeployRoot(str(root)).write_slot_meta(slot, {
            'name': slot, 'release': label, 'status': status, 'manifest_digest': None,
            'created': '2026-01-01T00:00:00Z', 'source': 'test', 'files': 1, 'bytes': 10,
            'previous': None, 'next': None, 'activated': None, 'failed_reason': None,
        })
    return path


def meta(root, name):
    return DeployRoot(str(root)).read_meta(name)


def link(root, name='current'):
    return os.readlink(os.path.join(str(root), name))


@pytest.fixture
def root(tmp_path):
    r = tmp_path / 'app'
    r.mkdir()
    for name in ('v1', 'v2', 'v3'):
        make_release(r, name)
    return r


def switch(run_module, root, check_mode=False, diff=False, **args):
    args.setdefault('root', str(root))
    return run_module(main, args, check_mode=check_mode, diff=diff)


# -- switching and the chain -----------------------------------------------
def test_first_switch_creates_relative_link(run_module, root):
    res = switch(run_module, root, release='v1')
    assert res['changed'] is True
    assert link(root) == 'releases/v1'
    assert not os.path.isabs(link(root))
    with open(os.path.join(str(root), 'current', 'index.php')) as f:
        assert '"v1"' in f.read()
    assert res['previous'] is None
    assert res['current'] == 'v1'
    assert res['mode'] == 'releases'
    assert res['path'] == os.path.join(str(root), 'releases', 'v1')
    assert res['migrated'] is None
    assert res['chain'] == {'live': 'v1', 'previous': None, 'next': None}
    m = meta(root, 'v1')
    assert re.match(r'\A\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\Z', m['activated'])
    assert m['previous'] is None and m['next'] is None
    assert m['status'] == 'complete' and m['source'] == 'test'  # the release module's fields are preserved
    # no temporary entries left in the root
    assert sorted(os.listdir(str(root))) == ['.stagehand', 'current', 'releases']


def test_second_switch_links_the_chain(run_module, root):
    switch(run_module, root, release='v1')
    res = switch(run_module, root, release='v2')
    assert res['changed'] is True
    assert link(root) == 'releases/v2'
    assert res['previous'] == 'v1'
    assert res['chain'] == {'live': 'v2', 'previous': 'v1', 'next': None}
    assert meta(root, 'v2')['previous'] == 'v1'
    assert meta(root, 'v1')['next'] == 'v2'
    assert meta(root, 'v2')['activated']


def test_rerun_is_idempotent(run_module, root, snapshot):
    switch(run_module, root, release='v1')
    switch(run_module, root, release='v2')
    before = snapshot(str(root))
    res = switch(run_module, root, release='v2')
    assert res['changed'] is False
    assert res['previous'] == 'v2' and res['current'] == 'v2'
    assert res['chain'] == {'live': 'v2', 'previous': 'v1', 'next': None}
    assert snapshot(str(root)) == before


def test_check_mode_predicts_and_changes_nothing(run_module, root, snapshot):
    switch(run_module, root, release='v1')
    before = snapshot(str(root))
    res = switch(run_module, root, check_mode=True, diff=True, release='v2')
    assert snapshot(str(root)) == before
    assert link(root) == 'releases/v1'
    assert res['changed'] is True
    assert res['diff']['before'] == 'releases/v1\n'
    assert res['diff']['after'] == 'releases/v2\n'
    real = switch(run_module, root, diff=True, release='v2')
    for key in ('changed', 'previous', 'current', 'chain', 'mode', 'path', 'migrated'):
        assert res[key] == real[key], key
    assert real['diff']['before'] == 'releases/v1\n' and real['diff']['after'] == 'releases/v2\n'


def test_check_mode_first_deploy(run_module, root, snapshot):
    before = snapshot(str(root))
    res = switch(run_module, root, check_mode=True, diff=True, release='v1')
    assert snapshot(str(root)) == before
    assert not os.path.lexists(os.path.join(str(root), 'current'))
    assert res['changed'] is True
    assert res['diff']['before'] == '' and res['diff']['after'] == 'releases/v1\n'


def test_diff_only_when_asked(run_module, root):
    res = switch(run_module, root, release='v1')
    assert 'diff' not in res
    res = switch(run_module, root, diff=True, release='v1')
    assert res['diff']['before'] == res['diff']['after'] == 'releases/v1\n'


def test_rollback_twice_through_three_releases(run_module, root):
    for name in ('v1', 'v2', 'v3'):
        switch(run_module, root, release=name)
    res = switch(run_module, root, target='previous')
    assert res['changed'] is True and res['previous'] == 'v3' and res['current'] == 'v2'
    assert link(root) == 'releases/v2'
    assert res['chain'] == {'live': 'v2', 'previous': 'v1', 'next': 'v3'}
    res = switch(run_module, root, target='previous')
    assert res['current'] == 'v1' and link(root) == 'releases/v1'
    assert res['chain'] == {'live': 'v1', 'previous': None, 'next': 'v2'}
    # rollbacks did not rewrite the chain
    assert meta(root, 'v3')['previous'] == 'v2' and meta(root, 'v2')['previous'] == 'v1'
    assert meta(root, 'v1')['next'] == 'v2' and meta(root, 'v2')['next'] == 'v3'
    # nothing before v1
    res = switch(run_module, root, target='previous')
    assert res['failed'] is True
    assert "'v1' has no previous release" in res['msg']
    assert link(root) == 'releases/v1'


def test_switching_forward_again_keeps_links(run_module, root, snapshot):
    for name in ('v1', 'v2', 'v3'):
        switch(run_module, root, release=name)
    switch(run_module, root, target='previous')
    switch(run_module, root, target='previous')
    metas_before = {n: meta(root, n) for n in ('v1', 'v2', 'v3')}
    res = switch(run_module, root, release='v3')
    assert res['changed'] is True and link(root) == 'releases/v3'
    assert res['previous'] == 'v1'  # what was live before this call
    assert res['chain'] == {'live': 'v3', 'previous': 'v2', 'next': None}
    assert {n: meta(root, n) for n in ('v1', 'v2', 'v3')} == metas_before


def test_new_release_after_rollback_links_to_live(run_module, root):
    for name in ('v1', 'v2'):
        switch(run_module, root, release=name)
    switch(run_module, root, target='previous')  # live v1
    res = switch(run_module, root, release='v3')
    assert res['chain'] == {'live': 'v3', 'previous': 'v1', 'next': None}
    assert meta(root, 'v1')['next'] == 'v3'
    assert meta(root, 'v2')['previous'] == 'v1'  # v2 left off the chain, not rewritten


def test_custom_link_name(run_module, root):
    res = switch(run_module, root, release='v1', link='live')
    assert res['changed'] is True
    assert link(root, 'live') == 'releases/v1'
    assert not os.path.lexists(os.path.join(str(root), 'current'))


def test_absolute_link_into_root_is_recognised_and_made_relative(run_module, root):
    os.symlink(os.path.join(str(root), 'releases', 'v1'), os.path.join(str(root), 'current'))
    DeployRoot(str(root)).write_meta('v1', dict(meta(root, 'v1'), activated='2026-01-01T00:00:00Z'))
    res = switch(run_module, root, release='v2')
    assert res['previous'] == 'v1'
    assert link(root) == 'releases/v2'
    assert meta(root, 'v2')['previous'] == 'v1'


# -- refusals: each leaves the tree exactly as it was ----------------------
@pytest.mark.parametrize('args, fragment', [
    ({'release': 'v9'}, "release 'v9' does not exist"),
    ({'release': 'v9', 'force': True}, "release 'v9' does not exist"),
    ({'release': 'inc'}, "release 'inc' is incomplete"),
    ({'release': 'nometa'}, "release 'nometa' is incomplete"),
    ({'release': 'bad'}, "release 'bad' is failed: smoke test failed"),
    ({'release': '../v1'}, "release name '../v1' is invalid"),
    ({'release': '.hidden'}, "release name '.hidden' is invalid"),
    ({'release': ''}, 'release name is empty'),
    ({'release': 'v1', 'mode': 'slots'}, "release='v1' is only valid in mode=releases"),
    ({'target': 'a'}, "target 'a' is only valid in mode=slots"),
    ({'target': 'inactive'}, "target 'inactive' is only valid in mode=slots"),
    ({'target': 'previous', 'mode': 'slots'}, "target 'previous' is invalid in mode=slots"),
    ({'target': 'b', 'mode': 'slots'}, "slot 'b' does not exist"),
    ({'release': 'v2', 'link': 'releases'}, "link name 'releases' is reserved"),
    ({'release': 'v2', 'link': 'a/b'}, "link name 'a/b' is invalid"),
    ({'release': 'v2', 'target': 'previous'}, 'mutually exclusive'),
    ({}, 'one of the following is required'),
    ({'target': 'sideways'}, 'value of target must be one of'),
])
def test_refusals_change_nothing(run_module, root, snapshot, args, fragment):
    make_release(root, 'inc', status='building')
    make_release(root, 'nometa', meta=False)
    make_release(root, 'bad', status='failed')
    switch(run_module, root, release='v1')
    before = snapshot(str(root))
    res = switch(run_module, root, **args)
    assert res['failed'] is True
    assert fragment in res['msg']
    assert snapshot(str(root)) == before


@pytest.mark.parametrize('check_mode', [False, True])
def test_refusal_in_check_mode_too(run_module, root, snapshot, check_mode):
    before = snapshot(str(root))
    res = switch(run_module, root, check_mode=check_mode, release='v9')
    assert res['failed'] is True and 'available: v1, v2, v3' in res['msg']
    assert snapshot(str(root)) == before


def test_refusal_does_not_repair_either(run_module, root, snapshot):
    # a live release whose activation was never committed, and a refused request: nothing may be written
    os.symlink('releases/v1', os.path.join(str(root), 'current'))
    before = snapshot(str(root))
    res = switch(run_module, root, release='v9')
    assert res['failed'] is True
    assert snapshot(str(root)) == before


def test_force_allows_failed_and_incomplete(run_module, root):
    make_release(root, 'bad', status='failed')
    make_release(root, 'nometa', meta=False)
    switch(run_module, root, release='v1')
    res = switch(run_module, root, release='bad', force=True)
    assert res['changed'] is True and link(root) == 'releases/bad'
    assert meta(root, 'bad')['status'] == 'failed'  # still marked failed
    assert meta(root, 'bad')['previous'] == 'v1'
    res = switch(run_module, root, release='nometa', force=True)
    assert res['changed'] is True and link(root) == 'releases/nometa'
    assert meta(root, 'nometa') is None  # no metadata is invented for it
    assert res['chain'] == {'live': 'nometa', 'previous': None, 'next': None}


def test_previous_without_live_release(run_module, root, snapshot):
    before = snapshot(str(root))
    res = switch(run_module, root, target='previous')
    assert res['failed'] is True
    assert 'target=previous needs a live release' in res['msg'] and 'does not exist' in res['msg']
    assert snapshot(str(root)) == before


def test_previous_that_was_removed(run_module, root, snapshot):
    switch(run_module, root, release='v1')
    switch(run_module, root, release='v2')
    os.rename(os.path.join(str(root), 'releases', 'v1'), os.path.join(str(root), 'v1-moved'))
    before = snapshot(str(root))
    res = switch(run_module, root, target='previous')
    assert res['failed'] is True
    assert "release 'v1' (the previous release of 'v2') does not exist" in res['msg']
    assert snapshot(str(root)) == before


@pytest.mark.parametrize('kind', ['file', 'outside', 'dangling-outside', 'slots-nonsense'])
def test_refuses_unknown_current(run_module, root, snapshot, kind):
    current = os.path.join(str(root), 'current')
    if kind == 'file':
        with open(current, 'w') as f:
            f.write('not a link')
        fragment = 'is neither a symlink nor a directory'
    elif kind == 'outside':
        os.symlink('/etc', current)
        fragment = "symlink to '/etc', which is outside"
    elif kind == 'dangling-outside':
        os.symlink('../elsewhere/v1', current)
        fragment = "symlink to '../elsewhere/v1', which is outside"
    else:
        os.symlink('slots/c', current)
        fragment = "symlink to 'slots/c', which is outside"
    before = snapshot(str(root))
    res = switch(run_module, root, release='v2')
    assert res['failed'] is True
    assert fragment in res['msg'] and current in res['msg']
    assert snapshot(str(root)) == before


@pytest.mark.parametrize('name', ['v1', 'v2'])
def test_corrupt_metadata_is_refused_clearly(run_module, root, snapshot, name):
    switch(run_module, root, release='v1')
    with open(os.path.join(str(root), '.stagehand', 'releases', name + '.json'), 'w') as f:
        f.write('{"name": ')
    before = snapshot(str(root))
    res = switch(run_module, root, release='v2')
    assert res['failed'] is True and 'cannot read the metadata under' in res['msg']
    assert snapshot(str(root)) == before


def test_missing_root(run_module, tmp_path, snapshot):
    before = snapshot(str(tmp_path))
    res = switch(run_module, tmp_path / 'nope', release='v1')
    assert res['failed'] is True and 'does not exist' in res['msg']
    assert snapshot(str(tmp_path)) == before


# -- migration of a plain current/ directory ---------------------------------
def make_plain_current(root):
    current = os.path.join(str(root), 'current')
    os.makedirs(os.path.join(current, 'lib'))
    with open(os.path.join(current, 'index.php'), 'w') as f:
        f.write('legacy site\n')
    with open(os.path.join(current, 'lib', 'x.php'), 'w') as f:
        f.write('legacy lib\n')
    return current


def test_migrates_plain_directory(run_module, root):
    make_plain_current(root)
    res = switch(run_module, root, diff=True, release='v2')
    assert res['changed'] is True
    migrated = res['migrated']
    assert re.match(r'\Amigrated-\d{8}T\d{6}\Z', migrated)
    assert res['previous'] == migrated
    assert res['chain'] == {'live': 'v2', 'previous': migrated, 'next': None}
    assert res['diff']['before'] == '(plain directory)\n' and res['diff']['after'] == 'releases/v2\n'
    current = os.path.join(str(root), 'current')
    assert os.path.islink(current) and link(root) == 'releases/v2'
    old = os.path.join(str(root), 'releases', migrated)
    with open(os.path.join(old, 'index.php')) as f:
        assert f.read() == 'legacy site\n'
    with open(os.path.join(old, 'lib', 'x.php')) as f:
        assert f.read() == 'legacy lib\n'
    m = meta(root, migrated)
    assert m['status'] == 'complete' and m['next'] == 'v2' and m['activated']
    assert m['files'] == 2 and m['bytes'] == len('legacy site\n') + len('legacy lib\n')
    assert DeployRoot(str(root)).release_status(migrated) == 'complete'
    assert meta(root, 'v2')['previous'] == migrated
    assert sorted(os.listdir(str(root))) == ['.stagehand', 'current', 'releases']
    # the rollback target is the migrated release, and going back does not rewrite the chain
    res = switch(run_module, root, target='previous')
    assert res['current'] == migrated and link(root) == 'releases/' + migrated
    with open(os.path.join(current, 'index.php')) as f:
        assert f.read() == 'legacy site\n'
    assert meta(root, migrated)['next'] == 'v2' and meta(root, 'v2')['previous'] == migrated


def test_migration_name_and_check_mode(run_module, root, snapshot):
    make_plain_current(root)
    before = snapshot(str(root))
    predicted = switch(run_module, root, check_mode=True, release='v1', migrate_name='legacy')
    assert snapshot(str(root)) == before
    assert predicted['changed'] is True and predicted['migrated'] == 'legacy'
    real = switch(run_module, root, release='v1', migrate_name='legacy')
    for key in ('changed', 'previous', 'current', 'chain', 'mode', 'path', 'migrated'):
        assert predicted[key] == real[key], key
    assert os.path.isdir(os.path.join(str(root), 'releases', 'legacy'))
    assert switch(run_module, root, release='v1', migrate_name='legacy')['changed'] is False


def test_migration_to_release_that_was_live_before(run_module, root):
    # v2 was live once (activated, with a next); then someone put a plain directory at current
    DeployRoot(str(root)).write_meta('v2', dict(meta(root, 'v2'), activated='2026-01-01T00:00:00Z', previous='v1', next='v3'))
    make_plain_current(root)
    res = switch(run_module, root, release='v2', migrate_name='legacy')
    assert res['chain'] == {'live': 'v2', 'previous': 'legacy', 'next': 'v3'}
    assert meta(root, 'v2')['activated'] == '2026-01-01T00:00:00Z'


@pytest.mark.parametrize('migrate_name, fragment', [
    ('v1', 'already exists'),
    ('bad/name', "migrate_name 'bad/name' is invalid"),
])
def test_migration_refusals(run_module, root, snapshot, migrate_name, fragment):
    make_plain_current(root)
    before = snapshot(str(root))
    res = switch(run_module, root, release='v2', migrate_name=migrate_name)
    assert res['failed'] is True and fragment in res['msg']
    assert snapshot(str(root)) == before


# -- crash repair ------------------------------------------------------------
def test_repairs_chain_after_crash_between_rename_and_metadata(run_module, root, snapshot):
    switch(run_module, root, release='v1')
    # What a crash right after the rename leaves: the intent (v2.previous) written, the link switched,
    # but neither v1.next nor v2.activated.
    DeployRoot(str(root)).write_meta('v2', dict(meta(root, 'v2'), previous='v1'))
    os.unlink(os.path.join(str(root), 'current'))
    os.symlink('releases/v2', os.path.join(str(root), 'current'))
    assert meta(root, 'v1')['next'] is None and meta(root, 'v2')['activated'] is None

    res = switch(run_module, root, check_mode=True, release='v2')
    assert res['changed'] is True  # the repair is a change
    res = switch(run_module, root, release='v2')
    assert res['changed'] is True
    assert res['chain'] == {'live': 'v2', 'previous': 'v1', 'next': None}
    assert meta(root, 'v1')['next'] == 'v2'
    assert meta(root, 'v2')['activated']
    before = snapshot(str(root))
    assert switch(run_module, root, release='v2')['changed'] is False
    assert snapshot(str(root)) == before


def test_repair_happens_before_switching_away(run_module, root):
    switch(run_module, root, release='v1')
    DeployRoot(str(root)).write_meta('v2', dict(meta(root, 'v2'), previous='v1'))
    os.unlink(os.path.join(str(root), 'current'))
    os.symlink('releases/v2', os.path.join(str(root), 'current'))
    # the symlink says v2 is live: deploying v3 links v3 after v2, and v2's activation is committed
    res = switch(run_module, root, release='v3')
    assert res['previous'] == 'v2'
    assert res['chain'] == {'live': 'v3', 'previous': 'v2', 'next': None}
    assert meta(root, 'v1')['next'] == 'v2'
    assert meta(root, 'v2')['next'] == 'v3' and meta(root, 'v2')['activated']
    # and rolling back walks the repaired chain
    assert switch(run_module, root, target='previous')['current'] == 'v2'
    assert switch(run_module, root, target='previous')['current'] == 'v1'


def test_stale_metadata_claiming_another_live_is_ignored(run_module, root):
    # metadata written as if v2 went live, but the rename never happened: the symlink (v1) wins
    switch(run_module, root, release='v1')
    DeployRoot(str(root)).write_meta('v2', dict(meta(root, 'v2'), previous='v1'))
    res = switch(run_module, root, release='v3')
    assert res['previous'] == 'v1'
    assert meta(root, 'v3')['previous'] == 'v1' and meta(root, 'v1')['next'] == 'v3'
    assert meta(root, 'v2')['activated'] is None  # never live, still first-activation material
    res = switch(run_module, root, release='v2')
    assert res['chain'] == {'live': 'v2', 'previous': 'v3', 'next': None}


# -- slots mode --------------------------------------------------------------
@pytest.fixture
def slots_root(tmp_path):
    r = tmp_path / 'ab'
    r.mkdir()
    make_slot(r, 'a', 'v1')
    make_slot(r, 'b', 'v2')
    return r


def test_slots_flip(run_module, slots_root, snapshot):
    res = switch(run_module, slots_root, mode='slots', target='a')
    assert res['changed'] is True and link(slots_root) == 'slots/a'
    assert res['previous'] is None and res['current'] == 'a'
    assert res['path'] == os.path.join(str(slots_root), 'slots', 'a')
    assert res['chain'] == {'live': 'a', 'previous': 'b', 'next': None}
    res = switch(run_module, slots_root, diff=True, mode='slots', target='inactive')
    assert res['changed'] is True and link(slots_root) == 'slots/b'
    assert res['previous'] == 'a' and res['current'] == 'b'
    assert res['chain'] == {'live': 'b', 'previous': 'a', 'next': None}
    assert res['diff']['before'] == 'slots/a\n' and res['diff']['after'] == 'slots/b\n'
    res = switch(run_module, slots_root, mode='slots', target='inactive')
    assert link(slots_root) == 'slots/a' and res['current'] == 'a'
    before = snapshot(str(slots_root))
    assert switch(run_module, slots_root, mode='slots', target='a')['changed'] is False
    predicted = switch(run_module, slots_root, check_mode=True, mode='slots', target='inactive')
    assert predicted['changed'] is True and predicted['current'] == 'b'
    assert snapshot(str(slots_root)) == before


@pytest.mark.parametrize('setup, args, fragment', [
    ('nometa', {'target': 'b'}, "slot 'b' has no metadata"),
    ('failed', {'target': 'b'}, "slot 'b' is failed"),
    ('nodir', {'target': 'b'}, "slot 'b' does not exist"),
    ('nodir', {'target': 'b', 'force': True}, "slot 'b' does not exist"),
    ('none', {'target': 'inactive', 'link': 'other'}, 'target=inactive needs a live slot'),
])
def test_slots_refusals(run_module, tmp_path, snapshot, setup, args, fragment):
    r = tmp_path / 'ab'
    r.mkdir()
    make_slot(r, 'a', 'v1')
    if setup == 'nometa':
        make_slot(r, 'b', 'v2', meta=False)
    elif setup == 'failed':
        make_slot(r, 'b', 'v2', status='failed')
    elif setup == 'none':
        make_slot(r, 'b', 'v2')
    switch(run_module, r, mode='slots', target='a')
    before = snapshot(str(r))
    res = switch(run_module, r, mode='slots', **args)
    assert res['failed'] is True and fragment in res['msg']
    assert snapshot(str(r)) == before


def test_slots_force_allows_failed(run_module, tmp_path):
    r = tmp_path / 'ab'
    r.mkdir()
    make_slot(r, 'a', 'v1')
    make_slot(r, 'b', 'v2', status='failed')
    switch(run_module, r, mode='slots', target='a')
    res = switch(run_module, r, mode='slots', target='inactive', force=True)
    assert res['changed'] is True and link(r) == 'slots/b'
    assert res['chain'] == {'live': 'b', 'previous': 'a', 'next': None}


def test_slots_migrates_plain_directory(run_module, slots_root):
    make_plain_current(slots_root)
    res = switch(run_module, slots_root, mode='slots', target='b', migrate_name='legacy')
    assert res['migrated'] == 'legacy' and res['previous'] == 'legacy'
    assert link(slots_root) == 'slots/b'
    with open(os.path.join(str(slots_root), 'releases', 'legacy', 'index.php')) as f:
        assert f.read() == 'legacy site\n'
    assert meta(slots_root, 'legacy')['status'] == 'complete'
    assert meta(slots_root, 'legacy')['next'] is None
