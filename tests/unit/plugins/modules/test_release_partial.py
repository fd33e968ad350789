# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The release module with partial: true (a delta holding only what the host lacks)."""

from __future__ import annotations

import os
import stat
import tarfile

import pytest

from ansible_collections.stagehand.deploy.plugins.module_utils import _manifest
from ansible_collections.stagehand.deploy.plugins.modules.release import main
from ansible_collections.stagehand.deploy.tests.unit.releases import raw_tar, tar_of, write_tree

V1 = {
    'index.php': b'<?php require "app/Kernel.php";',
    'app/Kernel.php': b'<?php class Kernel {}',
    'app/config.php': b'<?php return [];',
    'bin/console': (b'#!/usr/bin/env php', 0o755),
    'vendor/lib/a.php': b'<?php // a',
    'vendor/lib/b.php': b'<?php // b',
}


def delta_tar(path, files):
    """A delta: only the given files (path -> bytes or (bytes, mode))."""
    members = []
    for name, content in sorted(files.items()):
        mode = 0o644
        if isinstance(content, tuple):
            content, mode = content
        members.append((name, tarfile.REGTYPE, content, mode, ''))
    return raw_tar(path, members)


def manifest_file(tmp_path, top, name='manifest.json'):
    path = str(tmp_path / name)
    _manifest.save_manifest(path, _manifest.build_manifest(top))
    return path


def inode(path):
    st = os.lstat(path)
    return st.st_dev, st.st_ino


@pytest.fixture
def root(tmp_path):
    return str(tmp_path / 'srv')


@pytest.fixture
def v1(run_module, root, tmp_path):
    top = write_tree(tmp_path / 'v1', V1, links={'public': 'app'})
    result = run_module(main, {'root': root, 'name': 'v1', 'src': tar_of(tmp_path / 'v1.tar.gz', top)})
    assert result['changed'] is True, result
    return top


def v2_tree(tmp_path, changes):
    files = dict(V1)
    files.update(changes)
    return write_tree(tmp_path / 'v2', {k: v for k, v in files.items() if v is not None}, links={'public': 'app'})


# -- assembly -----------------------------------------------------------------------------------
def test_partial_hardlinks_every_unchanged_file(run_module, root, v1, tmp_path):
    top = v2_tree(tmp_path, {'app/Kernel.php': b'<?php class Kernel { /* v2 */ }', 'app/new.php': b'<?php // new'})
    manifest = manifest_file(tmp_path, top)
    delta = delta_tar(tmp_path / 'delta.tar.gz', {'app/Kernel.php': b'<?php class Kernel { /* v2 */ }', 'app/new.php': b'<?php // new'})
    result = run_module(main, {'root': root, 'name': 'v2', 'src': delta, 'manifest': manifest, 'partial': True})
    assert result['changed'] is True, result
    assert (result['linked'], result['copied']) == (5, 2)
    expected = _manifest.build_manifest(top)
    assert result['manifest_digest'] == expected.digest
    r1, r2 = os.path.join(root, 'releases', 'v1'), os.path.join(root, 'releases', 'v2')
    assert _manifest.verify_tree(r2, expected) == []
    for unchanged in ('index.php', 'app/config.php', 'bin/console', 'vendor/lib/a.php', 'vendor/lib/b.php'):
        assert inode(os.path.join(r1, unchanged)) == inode(os.path.join(r2, unchanged)), unchanged
    assert inode(os.path.join(r1, 'app/Kernel.php')) != inode(os.path.join(r2, 'app/Kernel.php'))
    assert stat.S_IMODE(os.stat(os.path.join(r2, 'bin/console')).st_mode) == 0o755
    assert os.readlink(os.path.join(r2, 'public')) == 'app'
    # v1 is untouched
    assert _manifest.verify_tree(r1, _manifest.build_manifest(v1)) == []
    assert os.listdir(os.path.join(root, '.stagehand', 'stage')) == []
    # the same deploy again changes nothing, with or without the delta
    assert run_module(main, {'root': root, 'name': 'v2', 'src': delta, 'manifest': manifest, 'partial': True})['changed'] is False
    assert run_module(main, {'root': root, 'name': 'v2', 'manifest': manifest, 'partial': True})['changed'] is False


def test_partial_without_src_takes_everything_from_the_host(run_module, root, v1, tmp_path):
    manifest = manifest_file(tmp_path, v1)
    result = run_module(main, {'root': root, 'name': 'v1-again', 'manifest': manifest, 'partial': True})
    assert result['changed'] is True, result
    assert (result['linked'], result['copied']) == (6, 0)
    assert _manifest.verify_tree(os.path.join(root, 'releases', 'v1-again'), _manifest.build_manifest(v1)) == []


def test_same_content_other_mode_is_copied_with_the_manifest_mode(run_module, root, v1, tmp_path):
    top = v2_tree(tmp_path, {'index.php': (V1['index.php'], 0o600)})
    manifest = manifest_file(tmp_path, top)
    result = run_module(main, {'root': root, 'name': 'v2', 'manifest': manifest, 'partial': True})
    assert result['changed'] is True, result
    assert (result['linked'], result['copied']) == (5, 1)
    r1, r2 = os.path.join(root, 'releases', 'v1'), os.path.join(root, 'releases', 'v2')
    assert inode(os.path.join(r1, 'index.php')) != inode(os.path.join(r2, 'index.php'))
    assert stat.S_IMODE(os.stat(os.path.join(r2, 'index.php')).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.join(r1, 'index.php')).st_mode) == 0o644
    assert _manifest.verify_tree(r2, _manifest.build_manifest(top)) == []


def test_duplicate_new_content_is_sent_once(run_module, root, v1, tmp_path):
    same = b'<?php // twice'
    top = v2_tree(tmp_path, {'app/x.php': same, 'app/y.php': same})
    manifest = manifest_file(tmp_path, top)
    delta = delta_tar(tmp_path / 'delta.tar.gz', {'app/x.php': same})
    result = run_module(main, {'root': root, 'name': 'v2', 'src': delta, 'manifest': manifest, 'partial': True})
    assert result['changed'] is True, result
    assert _manifest.verify_tree(os.path.join(root, 'releases', 'v2'), _manifest.build_manifest(top)) == []


def test_partial_with_shared_paths(run_module, root, v1, tmp_path):
    top = v2_tree(tmp_path, {'storage/logs/.gitkeep': b'', '.env': b'X=1'})
    manifest = manifest_file(tmp_path, top)
    result = run_module(main, {'root': root, 'name': 'v2', 'manifest': manifest, 'partial': True,
                               'src': delta_tar(tmp_path / 'd.tar.gz', {'storage/logs/.gitkeep': b'', '.env': b'X=1'}),
                               'shared': ['storage', '.env']})
    assert result['changed'] is True, result
    r2 = os.path.join(root, 'releases', 'v2')
    assert os.readlink(os.path.join(r2, 'storage')) == '../../shared/storage'
    assert os.readlink(os.path.join(r2, '.env')) == '../../shared/.env'
    assert result['manifest_digest'] == _manifest.build_manifest(top).digest


def test_content_can_come_from_a_slot(run_module, root, tmp_path):
    top = write_tree(tmp_path / 'v1', V1)
    assert run_module(main, {'root': root, 'slot': 'a', 'name': 'v1', 'src': top})['changed'] is True
    manifest = manifest_file(tmp_path, top)
    result = run_module(main, {'root': root, 'name': 'v1', 'manifest': manifest, 'partial': True})
    assert result['changed'] is True, result
    assert result['linked'] == 6
    assert inode(os.path.join(root, 'slots', 'a', 'index.php')) == inode(os.path.join(root, 'releases', 'v1', 'index.php'))


def test_check_mode_reports_and_writes_nothing(run_module, root, v1, tmp_path, snapshot):
    top = v2_tree(tmp_path, {'app/Kernel.php': b'changed'})
    manifest = manifest_file(tmp_path, top)
    delta = delta_tar(tmp_path / 'delta.tar.gz', {'app/Kernel.php': b'changed'})
    before = snapshot(root)
    result = run_module(main, {'root': root, 'name': 'v2', 'src': delta, 'manifest': manifest, 'partial': True}, check_mode=True)
    assert result['changed'] is True, result
    assert (result['linked'], result['copied']) == (5, 1)
    assert snapshot(root) == before


# -- refusals -----------------------------------------------------------------------------------
def test_missing_content_is_refused_listing_it(run_module, root, v1, tmp_path, snapshot):
    top = v2_tree(tmp_path, {'app/Kernel.php': b'new kernel', 'app/other.php': b'other'})
    manifest = manifest_file(tmp_path, top)
    delta = delta_tar(tmp_path / 'delta.tar.gz', {'app/other.php': b'other'})
    before = snapshot(root)
    for check_mode in (True, False):
        result = run_module(main, {'root': root, 'name': 'v2', 'src': delta, 'manifest': manifest, 'partial': True}, check_mode=check_mode)
        assert result.get('failed') is True, result
        assert 'app/Kernel.php' in result['msg'] and 'Nothing was staged' in result['msg']
        assert result['missing'] == ['app/Kernel.php']
        assert snapshot(root) == before


def test_tampered_file_in_the_delta_is_refused(run_module, root, v1, tmp_path, snapshot):
    top = v2_tree(tmp_path, {'app/Kernel.php': b'the real v2'})
    manifest = manifest_file(tmp_path, top)
    delta = delta_tar(tmp_path / 'delta.tar.gz', {'app/Kernel.php': b'the evil v2'})
    before = snapshot(root)
    result = run_module(main, {'root': root, 'name': 'v2', 'src': delta, 'manifest': manifest, 'partial': True})
    assert result.get('failed') is True, result
    assert 'does not match the manifest' in result['msg'] and 'app/Kernel.php' in result['msg']
    assert any(p.startswith('sha256: app/Kernel.php') for p in result['problems'])
    assert snapshot(root) == before


@pytest.mark.parametrize('files, what', [
    ({'app/extra.php': b'not in the manifest'}, 'extra: app/extra.php'),
    ({'bin/console': (b'#!/usr/bin/env php', 0o644)}, 'mode: bin/console'),
])
def test_delta_entries_must_match_the_manifest(run_module, root, v1, tmp_path, snapshot, files, what):
    manifest = manifest_file(tmp_path, v1)
    delta = delta_tar(tmp_path / 'delta.tar.gz', files)
    before = snapshot(root)
    result = run_module(main, {'root': root, 'name': 'v2', 'src': delta, 'manifest': manifest, 'partial': True})
    assert result.get('failed') is True, result
    assert what in result['msg']
    assert snapshot(root) == before


@pytest.mark.parametrize('members, truncate, what', [
    ([('../evil.php', tarfile.REGTYPE, b'x', 0o644, '')], None, "'..'"),
    (([('/etc/evil.php', tarfile.REGTYPE, b'x', 0o644, '')]), None, 'absolute'),
    ([('app/up', tarfile.SYMTYPE, b'', 0o777, '../../..')], None, 'escapes'),
    ([('app/dev', tarfile.CHRTYPE, b'', 0o644, '')], None, 'device file'),
    ([('app/a.php', tarfile.REGTYPE, b'1', 0o644, ''), ('app/a.php', tarfile.REGTYPE, b'1', 0o644, '')], None, 'duplicate'),
    ([('app/Kernel.php', tarfile.REGTYPE, os.urandom(50000), 0o644, '')], 20000, 'truncated'),
])
def test_bad_partial_sources_are_refused(run_module, root, v1, tmp_path, snapshot, members, truncate, what):
    manifest = manifest_file(tmp_path, v1)
    delta = raw_tar(tmp_path / 'bad.tar.gz', members, truncate=truncate)
    before = snapshot(root)
    result = run_module(main, {'root': root, 'name': 'v2', 'src': delta, 'manifest': manifest, 'partial': True})
    assert result.get('failed') is True, result
    assert what in result['msg'], result['msg']
    assert snapshot(root) == before


def test_partial_needs_a_manifest(run_module, root, v1, tmp_path, snapshot):
    before = snapshot(root)
    result = run_module(main, {'root': root, 'name': 'v2', 'src': delta_tar(tmp_path / 'd.tar.gz', {'a': b'1'}), 'partial': True})
    assert result.get('failed') is True
    assert 'manifest' in result['msg']
    assert snapshot(root) == before


def test_src_is_still_required_without_partial(run_module, root, tmp_path):
    result = run_module(main, {'root': root, 'name': 'v1'})
    assert result.get('failed') is True
    assert 'src is required' in result['msg']


def test_existing_release_with_other_content_is_refused(run_module, root, v1, tmp_path, snapshot):
    top = v2_tree(tmp_path, {'index.php': b'other'})
    manifest = manifest_file(tmp_path, top)
    before = snapshot(root)
    result = run_module(main, {'root': root, 'name': 'v1', 'manifest': manifest, 'partial': True,
                               'src': delta_tar(tmp_path / 'd.tar.gz', {'index.php': b'other'})})
    assert result.get('failed') is True
    assert 'immutable' in result['msg']
    assert snapshot(root) == before


def test_tampered_file_on_the_host_is_not_used(run_module, root, v1, tmp_path, snapshot):
    # someone edited v1 in place: its manifest still says the old content, so it must not be linked
    kernel = os.path.join(root, 'releases', 'v1', 'app', 'Kernel.php')
    os.chmod(kernel, 0o644)
    with open(kernel, 'wb') as f:  # same size, other content
        f.write(b'<?php class Kernel {}'.replace(b'Kernel', b'Kernal'))
    manifest = manifest_file(tmp_path, v1)
    before = snapshot(root)
    result = run_module(main, {'root': root, 'name': 'v1b', 'manifest': manifest, 'partial': True})
    assert result.get('failed') is True, result
    assert result['missing'] == ['app/Kernel.php']
    assert snapshot(root) == before
