# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Slot mode of the ``patch`` module: an A/B slot patched in place to a wanted manifest."""

from __future__ import annotations

import json
import os
import stat
import tarfile

import pytest

from ansible_collections.stagehand.deploy.plugins.module_utils import _manifest, _slot_patch
from ansible_collections.stagehand.deploy.plugins.module_utils._patch import PatchError
from ansible_collections.stagehand.deploy.plugins.module_utils._release import populate_slot, slot_manifest_path
from ansible_collections.stagehand.deploy.plugins.module_utils._state import DeployRoot
from ansible_collections.stagehand.deploy.plugins.modules.patch import main

V1 = {
    'RELEASE': b'v1\n',
    'public/index.php': b'<?php echo "v1";',
    'src/A.php': b'<?php class A {}',
    'src/old/Gone.php': b'<?php class Gone {}',
    'becomes_dir': b'a file in v1',
    'lib/becomes_file/x.php': b'<?php // x',
    'bin/tool': b'#!/bin/sh\necho v1\n',
}
V2 = {
    'RELEASE': b'v2\n',
    'public/index.php': b'<?php echo "v2";',
    'src/A.php': b'<?php class A {}',
    'src/new/B.php': b'<?php class B {}',
    'becomes_dir/inner.php': b'<?php // inner',
    'lib/becomes_file': b'now a file',
    'bin/tool': b'#!/bin/sh\necho v1\n',
    'moved.php': b'<?php class Gone {}',
}
SHARED = ['.env', 'storage']


def write_tree(top, files, symlinks=None, modes=None):
    os.makedirs(str(top), exist_ok=True)
    for path, content in files.items():
        full = os.path.join(str(top), path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, 'wb') as f:
            f.write(content)
        os.chmod(full, 0o644)
    for path, target in (symlinks or {}).items():
        full = os.path.join(str(top), path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        os.symlink(target, full)
    for path, mode in (modes or {}).items():
        os.chmod(os.path.join(str(top), path), mode)
    return str(top)


def make_tar(tree, dest, only=None):
    with tarfile.open(dest, 'w:gz') as tar:
        for dirpath, dirnames, filenames in os.walk(tree):
            dirnames.sort()
            for name in sorted(filenames):
                full = os.path.join(dirpath, name)
                rel = os.path.relpath(full, tree)
                if only is None or rel in only:
                    tar.add(full, rel, recursive=False)
    return str(dest)


def save(manifest, path):
    _manifest.save_manifest(str(path), manifest)
    return str(path)


@pytest.fixture
def env(tmp_path):
    """Two builds (v1, v2), their manifests and full archives, and a deploy root."""
    v1 = write_tree(tmp_path / 'build1', V1, symlinks={'public/link.php': '../src/A.php'}, modes={'bin/tool': 0o755})
    v2 = write_tree(tmp_path / 'build2', V2, symlinks={'public/link.php': '../src/new/B.php'}, modes={'bin/tool': 0o750})
    os.chmod(os.path.join(v2, 'src'), 0o750)
    m1 = _manifest.build_manifest(v1)
    m2 = _manifest.build_manifest(v2)
    root = str(tmp_path / 'srv')
    os.makedirs(os.path.join(root, 'shared', 'storage'))
    return {
        'tmp': tmp_path, 'root': root, 'v1': v1, 'v2': v2, 'm1': m1, 'm2': m2,
        'man1': save(m1, tmp_path / 'm1.json'), 'man2': save(m2, tmp_path / 'm2.json'),
        'tar1': make_tar(v1, tmp_path / 'v1.tar.gz'), 'tar2': make_tar(v2, tmp_path / 'v2.tar.gz'),
    }


def args(env, manifest, sources, slot='inactive', release='v1', **extra):
    result = {'root': env['root'], 'slot': slot, 'manifest': manifest, 'sources': sources, 'shared': SHARED,
              'release': release}
    result.update(extra)
    return result


def go_live(root, slot):
    link = os.path.join(root, 'current')
    if os.path.lexists(link):
        os.unlink(link)
    os.symlink('slots/' + slot, link)


def read_json(path):
    with open(path) as f:
        return json.load(f)


def tree_of(env, manifest):
    return _manifest.with_shared(manifest, SHARED, 2)


def without_nlink(snap):
    return {path: {key: value for key, value in entry.items() if key != 'nlink'} for path, entry in snap.items()}


class Crash(BaseException):
    """A kill of the process, as far as the code under test can tell."""


def crash_slot_deploy_after(monkeypatch: pytest.MonkeyPatch, renames: int) -> None:
    """Make the next slot patch die (:class:`Crash`) after ``renames`` renames of its deploy step, leaving its journal.

    A crash is normally rolled back right away by the run itself; here the process "dies" instead:
    no rollback, and the slot metadata is not restored.
    """
    original = _slot_patch.SlotTransaction.deploy
    real_rename = os.rename
    state = {'renames': 0}

    def crashing_rename(src, dst):
        state['renames'] += 1
        if state['renames'] > renames:
            raise Crash()
        return real_rename(src, dst)

    def deploy(self):
        monkeypatch.setattr(os, 'rename', crashing_rename)
        try:
            original(self)
        finally:
            monkeypatch.setattr(os, 'rename', real_rename)

    monkeypatch.setattr(_slot_patch.SlotTransaction, 'deploy', deploy)
    monkeypatch.setattr(_slot_patch.SlotTransaction, 'rollback', lambda self: None)
    monkeypatch.setattr(_slot_patch, '_restore_slot_meta', lambda *a: None)


def test_first_patch_fills_an_empty_slot_and_records_it(env, run_module):
    result = run_module(main, args(env, env['man1'], [env['tar1']]))
    assert result['changed'] is True, result
    assert result['slot'] == 'a'
    slot = os.path.join(env['root'], 'slots', 'a')
    assert _manifest.verify_tree(slot, tree_of(env, env['m1'])) == []
    droot = DeployRoot(env['root'])
    meta = droot.read_slot_meta('a')
    assert meta['status'] == 'complete' and meta['release'] == 'v1'
    assert meta['manifest_digest'] == env['m1'].digest
    assert meta['tree_digest'] == tree_of(env, env['m1']).digest
    assert _manifest.load_manifest(slot_manifest_path(droot, 'a')) == tree_of(env, env['m1'])
    assert os.readlink(os.path.join(slot, 'storage')) == '../../shared/storage'
    assert result['steps']['create'] == env['m1'].files
    # nothing left behind in the work directory
    work = _slot_patch.workdir_path(droot, 'a')
    assert not os.path.exists(os.path.join(work, 'patch-journal.json'))
    assert not [n for n in os.listdir(droot.state_dir) if n.startswith('.patch-extract') or 'extract' in n]


def test_second_identical_run_reports_no_change(env, run_module, snapshot):
    run_module(main, args(env, env['man1'], [env['tar1']]))
    before = snapshot(env['root'])
    again = run_module(main, args(env, env['man1'], [env['tar1']]))
    assert again['changed'] is False, again
    assert set(again['steps'].values()) == {0}
    assert snapshot(env['root']) == before


def test_patch_in_place_from_delta_and_other_slot(env, run_module, snapshot):
    """v1 in a, v2 in b (live), then a is patched in place to v2 with a delta holding only what neither slot has."""
    run_module(main, args(env, env['man1'], [env['tar1']]))
    go_live(env['root'], 'a')
    run_module(main, args(env, env['man2'], [env['tar2']], release='v2'))
    go_live(env['root'], 'b')
    slot_a = os.path.join(env['root'], 'slots', 'a')
    inode = os.stat(slot_a).st_ino
    untouched = os.stat(os.path.join(slot_a, 'src', 'A.php')).st_ino
    # a v3 = v2 plus one new file: the delta holds that file only; the rest comes from slot b (or a itself)
    v3 = write_tree(env['tmp'] / 'build3', dict(V2, **{'RELEASE': b'v3\n', 'src/C.php': b'<?php class C {}'}),
                    symlinks={'public/link.php': '../src/new/B.php'}, modes={'bin/tool': 0o750})
    os.chmod(os.path.join(v3, 'src'), 0o750)
    m3 = _manifest.build_manifest(v3)
    man3 = save(m3, env['tmp'] / 'm3.json')
    delta = make_tar(v3, env['tmp'] / 'delta3.tar.gz', only={'RELEASE', 'src/C.php'})
    sources = [delta, os.path.join(env['root'], 'slots', 'a'), os.path.join(env['root'], 'slots', 'b')]
    live_before = snapshot(os.path.join(env['root'], 'slots', 'b'))
    result = run_module(main, args(env, man3, sources, release='v3'), diff=True)
    assert result['changed'] is True, result
    assert result['slot'] == 'a'
    assert os.stat(slot_a).st_ino == inode  # patched in place, not replaced
    assert os.stat(os.path.join(slot_a, 'src', 'A.php')).st_ino == untouched  # unchanged file left alone
    assert _manifest.verify_tree(slot_a, tree_of(env, m3)) == []
    # live slot untouched: same content, modes and mtimes; only the link counts of the files now shared grew
    assert without_nlink(snapshot(os.path.join(env['root'], 'slots', 'b'))) == without_nlink(live_before)
    steps = result['steps']
    assert steps['rmdir'] >= 2 and steps['mkdir'] >= 2 and steps['delete'] >= 3 and steps['chmod'] == 1
    assert 'public/index.php' in result['changed_files'] and 'src/old/Gone.php' in result['changed_files']
    assert 'src/A.php' not in result['changed_files']
    assert 'rmdir src/old' in result['diff']['prepared']
    assert 'release: v3' in result['diff']['after']
    meta = DeployRoot(env['root']).read_slot_meta('a')
    assert meta['release'] == 'v3' and meta['manifest_digest'] == m3.digest


def test_check_mode_changes_nothing_and_is_honest(env, run_module, snapshot):
    run_module(main, args(env, env['man1'], [env['tar1']]))
    go_live(env['root'], 'a')
    before = snapshot(env['root'])
    result = run_module(main, args(env, env['man2'], [env['tar2']], release='v2'), check_mode=True, diff=True)
    assert result['changed'] is True and result['slot'] == 'b'
    assert result['steps']['create'] == env['m2'].files
    assert 'create public/index.php' in result['diff']['prepared']
    assert snapshot(env['root']) == before
    # and a slot already matching reports no change in check mode either
    run_module(main, args(env, env['man2'], [env['tar2']], release='v2'))
    same = run_module(main, args(env, env['man2'], [env['tar2']], release='v2'), check_mode=True)
    assert same['changed'] is False, same


def test_new_release_label_only_rewrites_the_metadata(env, run_module):
    run_module(main, args(env, env['man1'], [env['tar1']]))
    result = run_module(main, args(env, env['man1'], [env['tar1']], release='v1b'))
    assert result['changed'] is True and set(result['steps'].values()) == {0}
    assert DeployRoot(env['root']).read_slot_meta('a')['release'] == 'v1b'


def test_live_slot_is_refused_and_nothing_changes(env, run_module, snapshot):
    run_module(main, args(env, env['man1'], [env['tar1']]))
    go_live(env['root'], 'a')
    before = snapshot(env['root'])
    result = run_module(main, args(env, env['man2'], [env['tar2']], slot='a', release='v2'))
    assert result['failed'] is True
    assert 'slot a is live' in result['msg']
    assert snapshot(env['root']) == before


def test_unknown_content_is_refused_and_nothing_changes(env, run_module, snapshot):
    run_module(main, args(env, env['man1'], [env['tar1']]))
    go_live(env['root'], 'a')
    run_module(main, args(env, env['man1'], [env['tar1']]))  # slot b = v1 too
    before = snapshot(env['root'])
    # the delta lacks the new files of v2
    delta = make_tar(env['v2'], env['tmp'] / 'partial.tar.gz', only={'RELEASE'})
    result = run_module(main, args(env, env['man2'], [delta, os.path.join(env['root'], 'slots', 'a')], release='v2'))
    assert result['failed'] is True
    assert 'found in none of the sources' in result['msg'] and 'src/new/B.php' in result['msg']
    assert snapshot(env['root']) == before


def test_tampered_archive_content_is_not_used(env, run_module, snapshot):
    """A file whose hash is not in the manifest is never copied; the missing content is refused."""
    tampered = write_tree(env['tmp'] / 'evil', dict(V1, **{'public/index.php': b'<?php system($_GET["c"]);'}),
                          symlinks={'public/link.php': '../src/A.php'}, modes={'bin/tool': 0o755})
    tar = make_tar(tampered, env['tmp'] / 'evil.tar.gz')
    before = snapshot(env['root'])
    result = run_module(main, args(env, env['man1'], [tar]))
    assert result['failed'] is True and 'public/index.php' in result['msg']
    assert snapshot(env['root']) == before


@pytest.mark.parametrize('bad_path', ['../escape.php', '/etc/passwd', 'a/../../b'])
def test_unsafe_manifest_paths_are_refused(env, run_module, snapshot, bad_path):
    doc = env['m1'].to_json()
    doc['entries'].append({'path': bad_path, 'type': 'file', 'mode': '0644', 'sha256': '0' * 64, 'size': 1})
    del doc['digest']
    path = env['tmp'] / 'bad.json'
    path.write_text(json.dumps(doc))
    before = snapshot(env['root'])
    result = run_module(main, args(env, str(path), [env['tar1']]))
    assert result['failed'] is True
    assert bad_path in result['msg']
    assert snapshot(env['root']) == before


def test_escaping_symlink_and_bad_digest_are_refused(env, run_module, snapshot):
    doc = env['m1'].to_json()
    doc['entries'].append({'path': 'up', 'type': 'symlink', 'target': '../../../etc'})
    del doc['digest']
    path = env['tmp'] / 'escape.json'
    path.write_text(json.dumps(doc))
    corrupt = env['m1'].to_json()
    corrupt['digest'] = 'sha256:' + '1' * 64
    path2 = env['tmp'] / 'corrupt.json'
    path2.write_text(json.dumps(corrupt))
    before = snapshot(env['root'])
    result = run_module(main, args(env, str(path), [env['tar1']]))
    assert result['failed'] is True and 'escapes' in result['msg']
    result = run_module(main, args(env, str(path2), [env['tar1']]))
    assert result['failed'] is True and 'digest' in result['msg']
    assert snapshot(env['root']) == before


def test_truncated_archive_is_refused(env, run_module, snapshot):
    data = open(env['tar1'], 'rb').read()
    short = env['tmp'] / 'short.tar.gz'
    short.write_bytes(data[:len(data) // 2])
    before = snapshot(env['root'])
    result = run_module(main, args(env, env['man1'], [str(short)]))
    assert result['failed'] is True and 'short.tar.gz' in result['msg']
    assert snapshot(env['root']) == before


def test_bad_options_are_refused(env, run_module):
    result = run_module(main, {'root': env['root'], 'manifest': env['man1'], 'operations': []})
    assert result['failed'] is True and 'mutually exclusive' in result['msg']
    result = run_module(main, {'root': env['root']})
    assert result['failed'] is True and 'manifest is required' in result['msg']
    result = run_module(main, args(env, env['man1'], ['relative/path.tar.gz']))
    assert result['failed'] is True and 'relative/path.tar.gz' in result['msg']
    result = run_module(main, args(env, env['man1'], [env['tar1']], release='../x'))
    assert result['failed'] is True and '../x' in result['msg']


def test_verification_failure_rolls_everything_back(env, run_module, snapshot, monkeypatch):
    run_module(main, args(env, env['man1'], [env['tar1']]))
    go_live(env['root'], 'a')
    run_module(main, args(env, env['man1'], [env['tar1']]))  # b = v1
    before = snapshot(env['root'])
    monkeypatch.setattr(_slot_patch, 'verify_tree', lambda top, tree, known=None, stats=None: ['sha256: public/index.php is wrong'])
    result = run_module(main, args(env, env['man2'], [env['tar2']], release='v2'))
    assert result['failed'] is True and result['restored'] is True
    assert 'does not match the manifest' in result['msg']
    after = snapshot(env['root'])
    # the slot metadata is rewritten with its old content (the marker "incomplete" is undone): same bytes
    for snap in (before, after):
        snap['.stagehand/slots/b.json'].pop('mtime_ns')
    assert after == before


def test_crash_mid_deploy_is_rolled_back_by_the_next_run(env, run_module, monkeypatch):
    """Kill the deploy after some steps (journal on disk); the next run rolls back, then patches."""
    run_module(main, args(env, env['man1'], [env['tar1']]))
    go_live(env['root'], 'a')
    run_module(main, args(env, env['man1'], [env['tar1']]))  # b = v1
    slot_b = os.path.join(env['root'], 'slots', 'b')
    crash_slot_deploy_after(monkeypatch, 5)
    with pytest.raises(Crash):
        _slot_patch.patch_slot(env['root'], 'inactive', env['man2'], [env['tar2']], SHARED, 'v2')
    journal = os.path.join(_slot_patch.workdir_path(DeployRoot(env['root']), 'b'), 'patch-journal.json')
    assert os.path.exists(journal)
    assert DeployRoot(env['root']).read_slot_meta('b')['status'] == 'incomplete'
    monkeypatch.undo()
    result = run_module(main, args(env, env['man2'], [env['tar2']], release='v2'))
    assert result['changed'] is True and result['recovered'] is True, result
    assert 'an interrupted patch run was found' in json.dumps(result['warnings'])
    assert _manifest.verify_tree(slot_b, tree_of(env, env['m2'])) == []
    assert DeployRoot(env['root']).read_slot_meta('b')['status'] == 'complete'
    assert not os.path.exists(journal)


def test_modes_and_owner_are_applied(env, run_module):
    result = run_module(main, args(env, env['man2'], [env['tar2']], release='v2',
                                   owner=str(os.geteuid()), group=str(os.getegid())))
    assert result['changed'] is True
    slot = os.path.join(env['root'], 'slots', 'a')
    assert stat.S_IMODE(os.stat(os.path.join(slot, 'bin', 'tool')).st_mode) == 0o750
    assert stat.S_IMODE(os.stat(os.path.join(slot, 'src')).st_mode) == 0o750
    assert os.lstat(os.path.join(slot, 'public', 'link.php')).st_uid == os.geteuid()


def test_plan_steps_order_and_counts(tmp_path):
    top = write_tree(tmp_path / 't', {'x': b'file', 'd/e/f': b'deep'})
    wanted = _manifest.Manifest([
        {'path': 'x', 'type': 'dir', 'mode': '0755'},
        {'path': 'x/y', 'type': 'file', 'mode': '0644', 'sha256': '0' * 64, 'size': 3},
    ])
    steps = _slot_patch.plan_steps(top, _slot_patch.scan_slot(top), wanted)
    assert [(s.op, s.path) for s in steps] == [
        ('delete', 'd/e/f'), ('rmdir', 'd/e'), ('rmdir', 'd'), ('delete', 'x'), ('mkdir', 'x'), ('create', 'x/y')]
    assert _slot_patch.counts(steps)['rmdir'] == 2


def test_patch_slot_error_type(env):
    with pytest.raises(PatchError):
        _slot_patch.patch_slot(env['root'], 'c', env['man1'], [env['tar1']])


def test_a_slot_populated_by_the_release_module_is_patched_in_place(env, run_module):
    """populate_slot and the slot patch write the same files: one can follow the other."""
    populate_slot(env['root'], 'a', env['v1'], label='v1', shared=SHARED)
    slot = os.path.join(env['root'], 'slots', 'a')
    inode = os.stat(slot).st_ino
    first = run_module(main, args(env, env['man1'], [], slot='a'))
    assert first['changed'] is False, first  # same content, same record: nothing to do
    result = run_module(main, args(env, env['man2'], [env['tar2']], slot='a', release='v2'))
    assert result['changed'] is True and os.stat(slot).st_ino == inode
    assert _manifest.verify_tree(slot, tree_of(env, env['m2'])) == []
    assert DeployRoot(env['root']).read_slot_meta('a')['release'] == 'v2'
