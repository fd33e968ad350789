# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""A/B mode of the ``release`` module: populating ``slots/a`` and ``slots/b``."""

from __future__ import annotations

import json
import os
import tarfile

import pytest

from ansible_collections.stagehand.deploy.plugins.module_utils import _manifest
from ansible_collections.stagehand.deploy.plugins.module_utils._state import DeployRoot
from ansible_collections.stagehand.deploy.plugins.modules.release import main

APP = {
    'index.php': b'<?php echo "hello";',
    'src/Controller.php': b'<?php class Controller {}',
    'src/Model.php': b'<?php class Model {}',
}


def write_tree(top, files):
    for path, content in files.items():
        full = os.path.join(str(top), path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, 'wb') as f:
            f.write(content)
    return str(top)


def read_json(path):
    with open(path) as f:
        return json.load(f)


@pytest.fixture
def app(tmp_path):
    return write_tree(tmp_path / 'build', APP)


@pytest.fixture
def root(tmp_path):
    return str(tmp_path / 'srv')


def slot_dir(root, slot):
    return os.path.join(root, 'slots', slot)


def go_live(root, slot):
    """What the switch module would do; done by hand here."""
    link = os.path.join(root, 'current')
    if os.path.lexists(link):
        os.unlink(link)
    os.symlink('slots/' + slot, link)


def test_populate_slot(run_module, root, app):
    result = run_module(main, {'root': root, 'slot': 'a', 'src': app, 'name': 'v1'}, diff=True)
    assert result['changed'] is True
    assert result['slot'] == 'a' and result['release'] == 'v1'
    assert result['path'] == slot_dir(root, 'a')
    source = _manifest.build_manifest(app)
    assert result['manifest_digest'] == source.digest
    assert _manifest.verify_tree(slot_dir(root, 'a'), source) == []
    meta = read_json(os.path.join(root, '.stagehand', 'slots', 'a.json'))
    assert meta['name'] == 'a' and meta['release'] == 'v1'
    assert meta['status'] == 'complete' and meta['manifest_digest'] == source.digest
    stored = _manifest.load_manifest(os.path.join(root, '.stagehand', 'slots', 'a.manifest.json'))
    assert stored == source
    assert result['diff']['before'] == 'slot a: absent\n'
    assert 'release: v1' in result['diff']['after']
    assert not os.path.lexists(os.path.join(root, 'releases'))
    assert os.listdir(os.path.join(root, '.stagehand', 'stage')) == []


def test_same_digest_in_slot_is_unchanged(run_module, root, app, tmp_path, snapshot):
    run_module(main, {'root': root, 'slot': 'a', 'src': app, 'name': 'v1'})
    before = snapshot(root)
    assert run_module(main, {'root': root, 'slot': 'a', 'src': app, 'name': 'v1'})['changed'] is False
    tarball = str(tmp_path / 'a.tgz')
    with tarfile.open(tarball, 'w:gz') as tar:
        tar.add(app, arcname='.')
    assert run_module(main, {'root': root, 'slot': 'a', 'src': tarball, 'name': 'v1'}, check_mode=True)['changed'] is False
    assert run_module(main, {'root': root, 'slot': 'a', 'src': tarball, 'name': 'v1'})['changed'] is False
    assert snapshot(root) == before
    # a new label for the same content only rewrites the metadata
    index_ino = os.lstat(os.path.join(slot_dir(root, 'a'), 'index.php')).st_ino
    relabel = run_module(main, {'root': root, 'slot': 'a', 'src': app, 'name': 'v1-again'})
    assert relabel['changed'] is True and relabel['linked'] == 0 and relabel['copied'] == 0
    assert read_json(os.path.join(root, '.stagehand', 'slots', 'a.json'))['release'] == 'v1-again'
    assert os.lstat(os.path.join(slot_dir(root, 'a'), 'index.php')).st_ino == index_ino


def test_inactive_slot_and_hardlinks_from_live_slot(run_module, root, app):
    run_module(main, {'root': root, 'slot': 'a', 'src': app, 'name': 'v1'})
    go_live(root, 'a')
    write_tree(app, {'index.php': b'<?php echo "v2";'})
    check = run_module(main, {'root': root, 'slot': 'inactive', 'src': app, 'name': 'v2'}, check_mode=True)
    assert check['changed'] is True and check['slot'] == 'b'
    assert (check['linked'], check['copied']) == (2, 1)
    assert not os.path.lexists(slot_dir(root, 'b'))
    result = run_module(main, {'root': root, 'slot': 'inactive', 'src': app, 'name': 'v2'})
    assert result['changed'] is True and result['slot'] == 'b'
    assert (result['linked'], result['copied']) == (2, 1)
    for path in ('src/Controller.php', 'src/Model.php'):
        assert os.lstat(os.path.join(slot_dir(root, 'a'), path)).st_ino == os.lstat(os.path.join(slot_dir(root, 'b'), path)).st_ino
    assert os.lstat(os.path.join(slot_dir(root, 'a'), 'index.php')).st_ino != os.lstat(os.path.join(slot_dir(root, 'b'), 'index.php')).st_ino
    assert open(os.path.join(slot_dir(root, 'a'), 'index.php'), 'rb').read() == APP['index.php']
    assert run_module(main, {'root': root, 'slot': 'inactive', 'src': app, 'name': 'v2'})['changed'] is False


def test_live_slot_is_refused(run_module, root, app, snapshot):
    run_module(main, {'root': root, 'slot': 'a', 'src': app, 'name': 'v1'})
    go_live(root, 'a')
    write_tree(app, {'index.php': b'changed'})
    before = snapshot(root)
    for check_mode in (False, True):
        result = run_module(main, {'root': root, 'slot': 'a', 'src': app, 'name': 'v2'}, check_mode=check_mode)
        assert result['failed'] is True
        assert 'slot a is live' in result['msg'] and 'slot b' in result['msg']
    assert snapshot(root) == before


def test_live_slot_made_by_hand_is_refused(run_module, root, app, snapshot):
    os.makedirs(slot_dir(root, 'a'))
    go_live(root, 'a')
    before = snapshot(root)
    result = run_module(main, {'root': root, 'slot': 'a', 'src': app})
    assert result['failed'] is True and 'live' in result['msg']
    assert snapshot(root) == before
    other = run_module(main, {'root': root, 'slot': 'inactive', 'src': app})
    assert other['slot'] == 'b' and other['changed'] is True and other['release'] is None


def test_replacing_a_slot(run_module, root, app):
    run_module(main, {'root': root, 'slot': 'b', 'src': app, 'name': 'v1'})
    go_live(root, 'a')
    write_tree(app, {'new.php': b'new'})
    os.unlink(os.path.join(app, 'src', 'Model.php'))
    result = run_module(main, {'root': root, 'slot': 'b', 'src': app, 'name': 'v2'}, diff=True)
    assert result['changed'] is True
    assert (result['linked'], result['copied']) == (2, 1)  # from the old content of the same slot
    assert _manifest.verify_tree(slot_dir(root, 'b'), _manifest.build_manifest(app)) == []
    assert 'release: v1' in result['diff']['before'] and 'release: v2' in result['diff']['after']
    assert os.listdir(os.path.join(root, '.stagehand', 'stage')) == []
    meta = read_json(os.path.join(root, '.stagehand', 'slots', 'b.json'))
    assert meta['release'] == 'v2' and meta['manifest_digest'] == result['manifest_digest']


def test_bad_source_leaves_slot_untouched(run_module, root, app, tmp_path, snapshot):
    run_module(main, {'root': root, 'slot': 'b', 'src': app, 'name': 'v1'})
    bad = str(tmp_path / 'bad.tgz')
    with tarfile.open(bad, 'w:gz') as tar:
        info = tarfile.TarInfo('e')
        info.type = tarfile.SYMTYPE
        info.linkname = '../../..'
        tar.addfile(info)
    before = snapshot(root)
    result = run_module(main, {'root': root, 'slot': 'b', 'src': bad, 'name': 'v2'})
    assert result['failed'] is True and 'escapes' in result['msg']
    assert snapshot(root) == before


def test_slot_with_bad_label_is_refused(run_module, root, app):
    result = run_module(main, {'root': root, 'slot': 'a', 'src': app, 'name': '../x'})
    assert result['failed'] is True and 'release name' in result['msg']
    assert not os.path.lexists(root)


def test_slot_with_shared_paths(run_module, root, app):
    result = run_module(main, {'root': root, 'slot': 'a', 'src': app, 'shared': ['var/sessions']})
    assert result['changed'] is True
    link = os.path.join(slot_dir(root, 'a'), 'var', 'sessions')
    assert os.readlink(link) == '../../../shared/var/sessions'
    os.makedirs(os.path.join(root, 'shared', 'var', 'sessions'))
    assert os.path.samefile(link, os.path.join(root, 'shared', 'var', 'sessions'))
    assert run_module(main, {'root': root, 'slot': 'a', 'src': app, 'shared': ['var/sessions']})['changed'] is False
    changed = run_module(main, {'root': root, 'slot': 'a', 'src': app})
    assert changed['changed'] is True and not os.path.lexists(os.path.join(slot_dir(root, 'a'), 'var'))


def test_state_failed_marks_a_slot_failed_and_a_switch_refuses_it(run_module, tmp_path, snapshot):
    root = tmp_path / 'ab'
    DeployRoot(str(root)).write_slot_meta('b', {'name': 'b', 'release': 'v2', 'status': 'complete',
                                                'manifest_digest': 'sha256:' + '2' * 64, 'failed_reason': None})
    os.makedirs(str(root / 'slots' / 'b'))
    res = run_module(main, {'root': str(root), 'slot': 'b', 'state': 'failed', 'reason': 'health: HTTP 500'})
    assert res['changed'] is True and res['status'] == 'failed' and res['slot'] == 'b' and res['release'] == 'v2'
    meta = DeployRoot(str(root)).read_slot_meta('b')
    assert meta['status'] == 'failed' and meta['failed_reason'] == 'health: HTTP 500' and meta['release'] == 'v2'
    # a second run changes nothing
    before = snapshot(str(root))
    again = run_module(main, {'root': str(root), 'slot': 'b', 'state': 'failed', 'reason': 'other'})
    assert again['changed'] is False and snapshot(str(root)) == before
    assert DeployRoot(str(root)).slot_status('b') == 'failed'


@pytest.mark.parametrize('args, fragment', [
    ({'slot': 'inactive', 'state': 'failed'}, "slot 'inactive' cannot be marked failed"),
    ({'slot': 'a', 'state': 'failed'}, 'slot a has no metadata'),
    ({'slot': 'a', 'state': 'absent', 'name': 'v1'}, 'never removed'),
])
def test_slot_states_refused(run_module, tmp_path, snapshot, args, fragment):
    root = tmp_path / 'ab'
    os.makedirs(str(root / 'slots' / 'a'))
    before = snapshot(str(root))
    res = run_module(main, dict(args, root=str(root)))
    assert res['failed'] is True and fragment in res['msg'], res['msg']
    assert snapshot(str(root)) == before
