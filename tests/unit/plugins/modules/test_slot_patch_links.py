# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Slot patches hardlink unchanged content from the other slot instead of copying it, and never change its files."""

from __future__ import annotations

import hashlib
import os
import stat

import pytest

from ansible_collections.stagehand.deploy.plugins.module_utils import _manifest, _slot_patch
from ansible_collections.stagehand.deploy.plugins.module_utils._patch import PatchError, Recovery, Workdir
from ansible_collections.stagehand.deploy.plugins.module_utils._state import DeployRoot
from ansible_collections.stagehand.deploy.plugins.modules.patch import main
from ansible_collections.stagehand.deploy.tests.unit.plugins.modules.test_slot_patch import Crash, crash_slot_deploy_after, make_tar

FILES = 100
CHANGED = 'src/f007.php'
MODE_CHANGED = 'src/f042.php'


def content(number):
    return b'<?php // file %03d\n' % number + b'x' * (number * 37)


def write_tree(top, files, modes):
    for path, data in files.items():
        full = os.path.join(top, *path.split('/'))
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, 'wb') as f:
            f.write(data)
        os.chmod(full, modes.get(path, 0o644))
    return top


def save(manifest, path):
    _manifest.save_manifest(path, manifest)
    return path


def snap(top):
    """Content, mode, owner, mtime and inode of every entry (without the link count, which sharing changes)."""
    result = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            entry = {'mode': st.st_mode, 'uid': st.st_uid, 'gid': st.st_gid, 'ino': st.st_ino}
            if stat.S_ISREG(st.st_mode):
                with open(full, 'rb') as f:
                    entry['sha256'] = hashlib.sha256(f.read()).hexdigest()
                entry['mtime_ns'] = st.st_mtime_ns
            elif stat.S_ISLNK(st.st_mode):
                entry['target'] = os.readlink(full)
            result[os.path.relpath(full, top)] = entry
    return result


def nlinks(top):
    return {path: os.lstat(os.path.join(top, path)).st_nlink for path in snap(top)}


@pytest.fixture
def env(tmp_path):
    """Slot a filled with v1 (100 files) and live; v2 = v1 with one file changed and one file made executable."""
    v1_files = {'src/f%03d.php' % n: content(n) for n in range(FILES)}
    v2_files = dict(v1_files, **{CHANGED: b'<?php // changed in v2\n'})
    v1 = write_tree(str(tmp_path / 'build1'), v1_files, {})
    v2 = write_tree(str(tmp_path / 'build2'), v2_files, {MODE_CHANGED: 0o755})
    m1, m2 = _manifest.build_manifest(v1), _manifest.build_manifest(v2)
    root = str(tmp_path / 'srv')
    os.makedirs(root)
    man1 = save(m1, str(tmp_path / 'm1.json'))
    _slot_patch.patch_slot(root, 'a', man1, [make_tar(v1, str(tmp_path / 'v1.tar.gz'))], label='v1')
    os.symlink('slots/a', os.path.join(root, 'current'))
    return {
        'tmp': tmp_path, 'root': root, 'v2': v2, 'm2': m2, 'man2': save(m2, str(tmp_path / 'm2.json')),
        'delta': make_tar(v2, str(tmp_path / 'delta2.tar.gz'), only={CHANGED}),
        'a': os.path.join(root, 'slots', 'a'), 'b': os.path.join(root, 'slots', 'b'),
    }


def patch_b(env, run_module, **extra):
    params = {'root': env['root'], 'slot': 'inactive', 'manifest': env['man2'], 'release': 'v2',
              'sources': [env['delta'], env['a'], env['b']]}
    params.update(extra)
    return run_module(main, params)


def ino(top, path):
    return os.lstat(os.path.join(top, *path.split('/'))).st_ino


def test_filling_the_empty_slot_links_unchanged_files_from_the_live_slot(env, run_module):
    before = snap(env['a'])
    result = patch_b(env, run_module)
    assert result['changed'] is True and result['slot'] == 'b', result
    assert result['steps']['create'] == FILES
    assert (result['linked'], result['copied']) == (FILES - 2, 2)
    assert _manifest.verify_tree(env['b'], env['m2']) == []
    for number in range(FILES):
        path = 'src/f%03d.php' % number
        if path in (CHANGED, MODE_CHANGED):
            assert ino(env['b'], path) != ino(env['a'], path), path
        else:
            assert ino(env['b'], path) == ino(env['a'], path), path
    assert stat.S_IMODE(os.lstat(os.path.join(env['b'], 'src', 'f042.php')).st_mode) == 0o755
    # the live slot: same content, modes, owners, mtimes and inodes as before
    assert snap(env['a']) == before
    assert os.lstat(os.path.join(env['a'], 'src', 'f001.php')).st_nlink == 2
    assert os.lstat(os.path.join(env['a'], 'src', 'f042.php')).st_nlink == 1
    # nothing left in the work directory or the extraction
    state = DeployRoot(env['root']).state_dir
    assert not [n for n in os.listdir(state) if 'extract' in n]
    assert not os.path.exists(os.path.join(_slot_patch.workdir_path(DeployRoot(env['root']), 'b'), 'patch-journal.json'))


def test_patching_the_linked_slot_again_leaves_the_live_slot_alone(env, run_module):
    """b shares inodes with a; patching b to v1 (an update back, a mode change back) replaces names only."""
    patch_b(env, run_module)
    before = snap(env['a'])
    man1 = save(_manifest.build_manifest(os.path.join(str(env['tmp']), 'build1')), str(env['tmp'] / 'm1-again.json'))
    result = run_module(main, {'root': env['root'], 'manifest': man1, 'sources': [env['a']], 'release': 'v1'})
    assert result['changed'] is True and result['steps']['update'] == 2, result
    # the changed file is linked from a; the content of the mode change back is found in b itself first
    # (its 0755 file: another mode), so it is copied
    assert (result['linked'], result['copied']) == (1, 1)
    assert ino(env['b'], MODE_CHANGED) != ino(env['a'], MODE_CHANGED)
    assert snap(env['a']) == before
    assert ino(env['b'], CHANGED) == ino(env['a'], CHANGED)


def test_a_source_with_another_mode_or_owner_is_copied(env, run_module):
    os.chmod(os.path.join(env['a'], 'src', 'f001.php'), 0o640)  # the wanted mode is 0644
    if os.geteuid() == 0:
        os.chown(os.path.join(env['a'], 'src', 'f002.php'), 4321, -1)  # the wanted owner is root
    before = snap(env['a'])
    result = patch_b(env, run_module)
    assert result['changed'] is True, result
    assert ino(env['b'], 'src/f001.php') != ino(env['a'], 'src/f001.php')
    assert stat.S_IMODE(os.lstat(os.path.join(env['b'], 'src', 'f001.php')).st_mode) == 0o644
    if os.geteuid() == 0:
        assert ino(env['b'], 'src/f002.php') != ino(env['a'], 'src/f002.php')
        assert os.lstat(os.path.join(env['b'], 'src', 'f002.php')).st_uid == 0
    assert ino(env['b'], 'src/f003.php') == ino(env['a'], 'src/f003.php')
    assert snap(env['a']) == before
    assert _manifest.verify_tree(env['b'], env['m2']) == []


def test_the_wanted_owner_must_match_to_link(env, run_module):
    owner = os.lstat(os.path.join(env['a'], 'src', 'f001.php'))
    result = patch_b(env, run_module, owner=str(owner.st_uid), group=str(owner.st_gid))
    assert result['linked'] == FILES - 2, result
    if os.geteuid() != 0:
        return
    # another wanted owner: everything is copied and chowned, nothing of the live slot changes
    os.symlink('slots/b', os.path.join(env['root'], 'current.tmp'))
    os.replace(os.path.join(env['root'], 'current.tmp'), os.path.join(env['root'], 'current'))
    before = snap(env['b'])
    result = run_module(main, {'root': env['root'], 'manifest': env['man2'], 'sources': [env['b']], 'release': 'v2',
                               'owner': '4321', 'group': '4321'})
    assert result['changed'] is True and result['linked'] == 0, result
    assert os.lstat(os.path.join(env['a'], 'src', 'f001.php')).st_uid == 4321
    assert snap(env['b']) == before


def test_the_link_count_limit_makes_copies(env, run_module, monkeypatch):
    monkeypatch.setattr(_slot_patch, 'MAX_NLINK', 1)
    result = patch_b(env, run_module)
    assert (result['linked'], result['copied']) == (0, FILES)
    a_inodes = {entry['ino'] for entry in snap(env['a']).values()}
    assert not a_inodes & {entry['ino'] for entry in snap(env['b']).values()}


def test_a_failed_verification_rolls_back_and_leaves_the_live_slot_untouched(env, run_module, monkeypatch):
    before, links = snap(env['a']), nlinks(env['a'])
    monkeypatch.setattr(_slot_patch, 'verify_tree', lambda top, tree: ['sha256: src/f001.php is wrong'])
    result = patch_b(env, run_module)
    assert result['failed'] is True and result['restored'] is True, result
    assert snap(env['a']) == before
    assert nlinks(env['a']) == links  # every name the patch gave the live slot's inodes is gone again
    assert not os.path.isdir(env['b']) or not os.listdir(env['b'])


def test_a_crash_mid_deploy_recovered_leaves_the_live_slot_untouched(env, monkeypatch):
    before, links = snap(env['a']), nlinks(env['a'])
    crash_slot_deploy_after(monkeypatch, 40)
    with pytest.raises(Crash):
        _slot_patch.patch_slot(env['root'], 'inactive', env['man2'], [env['delta'], env['a'], env['b']], label='v2')
    monkeypatch.undo()
    assert snap(env['a']) == before
    assert nlinks(env['a']) != links  # some names of the live slot's inodes are in slot b and the cache now
    recovered, _removed, _warning = Recovery(Workdir(_slot_patch.workdir_path(DeployRoot(env['root']), 'b'), False)).recover()
    assert recovered is True
    assert snap(env['a']) == before
    assert nlinks(env['a']) == links


def test_a_source_changed_after_it_was_found_is_refused(env, run_module, monkeypatch):
    """A directory source rewritten in place between the search and the staging: its link is refused by hash."""
    extra = os.path.join(str(env['tmp']), 'extra')
    os.makedirs(os.path.join(extra, 'src'))
    same = os.path.join(extra, 'src', 'f001.php')
    with open(same, 'wb') as f:
        f.write(content(1))
    os.chmod(same, 0o644)
    real_gather = _slot_patch._gather

    def gather(*args, **kwargs):
        index = real_gather(*args, **kwargs)
        with open(same, 'r+b') as f:
            f.write(b'EVIL')  # same size, other content
        return index

    monkeypatch.setattr(_slot_patch, '_gather', gather)
    before = snap(env['a'])
    params = {'root': env['root'], 'manifest': env['man2'], 'release': 'v2', 'sources': [extra, env['delta'], env['a']]}
    result = run_module(main, params)
    assert result['failed'] is True, result
    assert 'src/f001.php' in result['msg'] and extra in result['msg'] and 'expected sha256' in result['msg']
    assert snap(env['a']) == before
    assert not os.path.exists(env['b'])  # the slot this run created is removed again
    assert not os.path.exists(_slot_patch.workdir_path(DeployRoot(env['root']), 'b') + '/patch-journal.json')


def test_link_checked_refuses_wrong_content(env, tmp_path):
    """The helper itself: a mismatching inode is a PatchError naming the path and what was expected."""
    droot = DeployRoot(env['root'])
    work = Workdir(_slot_patch.workdir_path(droot, 'b'), is_default=False)
    os.makedirs(droot.state_dir, exist_ok=True)
    work.ensure()
    transaction = _slot_patch.SlotTransaction(env['b'], work, [], None, None)
    transaction._cache_dev = os.stat(work.cache_dir).st_dev
    src = os.path.join(env['a'], 'src', 'f001.php')
    st = os.lstat(src)
    transaction._owner = (st.st_uid, st.st_gid)
    entry = {'path': 'src/f001.php', 'type': 'file', 'mode': '0644', 'size': st.st_size, 'sha256': '0' * 64}
    with pytest.raises(PatchError) as info:
        transaction._link_checked(src, work.cache_path(0), entry, os.path.join(env['b'], 'src', 'f001.php'))
    assert 'src/f001.php' in info.value.msg and src in info.value.msg and '0' * 64 in info.value.msg
    work.remove_garbage()
    assert os.lstat(src).st_nlink == 1
