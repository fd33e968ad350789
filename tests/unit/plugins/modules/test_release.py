# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import json
import os
import stat
import tarfile

import pytest

from ansible_collections.stagehand.deploy.plugins.module_utils import _manifest
from ansible_collections.stagehand.deploy.plugins.module_utils._state import DeployRoot
from ansible_collections.stagehand.deploy.plugins.modules.release import main
from ansible_collections.stagehand.deploy.tests.unit.releases import raw_tar, tar_of, write_tree

APP = {
    'index.php': b'<?php require "app/Kernel.php";',
    'app/Kernel.php': b'<?php class Kernel {}',
    'app/config.php': b'<?php return [];',
    'bin/console': (b'#!/usr/bin/env php', 0o755),
    'storage/logs/.gitkeep': b'',
}


def read_json(path):
    with open(str(path)) as f:
        return json.load(f)


@pytest.fixture
def app(tmp_path):
    return write_tree(tmp_path / 'build', APP, links={'public': 'app'})


@pytest.fixture
def root(tmp_path):
    return str(tmp_path / 'srv')


@pytest.fixture
def deployed(run_module, root, app):
    """A root that already has release v1 from ``app``."""
    result = run_module(main, {'root': root, 'name': 'v1', 'src': app})
    assert result['changed'] is True, result
    return root


# -- creation ---------------------------------------------------------------------------------
def test_create_from_directory(run_module, root, app):
    result = run_module(main, {'root': root, 'name': 'v1', 'src': app})
    assert result['changed'] is True and result['rc_exit'] == 0
    release = os.path.join(root, 'releases', 'v1')
    source = _manifest.build_manifest(app)
    assert result['path'] == release
    assert result['manifest_digest'] == source.digest
    assert result['files'] == 5 and result['bytes'] == source.bytes
    assert (result['linked'], result['copied']) == (0, 5)
    assert _manifest.verify_tree(release, source) == []
    assert stat.S_IMODE(os.lstat(release).st_mode) == 0o755
    meta = read_json(os.path.join(root, '.stagehand', 'releases', 'v1.json'))
    assert meta['status'] == 'complete'
    assert meta['manifest_digest'] == source.digest
    assert meta['source'] == app
    assert (meta['files'], meta['bytes']) == (5, source.bytes)
    assert (meta['previous'], meta['next'], meta['activated'], meta['failed_reason']) == (None, None, None, None)
    assert meta['created'].endswith('Z')
    stored = _manifest.load_manifest(os.path.join(root, '.stagehand', 'manifests', 'v1.json'))
    assert stored == source
    assert os.listdir(os.path.join(root, '.stagehand', 'stage')) == []


def test_create_from_tarball(run_module, root, app, tmp_path):
    tarball = tar_of(tmp_path / 'build.tar.gz', app)
    result = run_module(main, {'root': root, 'name': 'v1', 'src': tarball})
    assert result['changed'] is True
    assert result['manifest_digest'] == _manifest.build_manifest(app).digest
    release = os.path.join(root, 'releases', 'v1')
    assert _manifest.verify_tree(release, _manifest.build_manifest(app)) == []
    assert os.readlink(os.path.join(release, 'public')) == 'app'
    assert stat.S_IMODE(os.stat(os.path.join(release, 'bin', 'console')).st_mode) == 0o755
    again = run_module(main, {'root': root, 'name': 'v1', 'src': tarball})
    assert again['changed'] is False
    # the directory holding the same content is the same release
    assert run_module(main, {'root': root, 'name': 'v1', 'src': app})['changed'] is False


def test_tgz_suffix_and_relative_src(run_module, root, app, tmp_path, monkeypatch):
    tar_of(tmp_path / 'build.tgz', app)
    monkeypatch.chdir(tmp_path)
    result = run_module(main, {'root': root, 'name': 'v1', 'src': 'build.tgz'})
    assert result['changed'] is True
    assert read_json(os.path.join(root, '.stagehand', 'releases', 'v1.json'))['source'] == str(tmp_path / 'build.tgz')


def test_check_mode_creates_nothing(run_module, root, app, tmp_path):
    result = run_module(main, {'root': root, 'name': 'v1', 'src': app}, check_mode=True, diff=True)
    assert result['changed'] is True
    assert result['manifest_digest'] == _manifest.build_manifest(app).digest
    assert result['files'] == 5
    assert not os.path.lexists(root)
    assert result['diff']['before'] == 'release v1: absent\n'
    assert result['manifest_digest'] in result['diff']['after']
    assert 'files: 5' in result['diff']['after']
    real = run_module(main, {'root': root, 'name': 'v1', 'src': app})
    assert real['manifest_digest'] == result['manifest_digest']


def test_check_mode_on_existing_root_changes_nothing(run_module, deployed, app, tmp_path, snapshot):
    write_tree(app, {'index.php': b'changed'})
    tarball = tar_of(tmp_path / 'v2.tar.gz', app)
    before = snapshot(deployed)
    for src in (app, tarball):
        result = run_module(main, {'root': deployed, 'name': 'v2', 'src': src}, check_mode=True)
        assert result['changed'] is True
        assert result['linked'] == 4 and result['copied'] == 1
    assert snapshot(deployed) == before


def test_diff_mode(run_module, root, app):
    first = run_module(main, {'root': root, 'name': 'v1', 'src': app, 'shared': ['storage']}, diff=True)
    assert first['diff']['before'] == 'release v1: absent\n'
    assert first['diff']['after'].startswith('release v1: complete\nmanifest_digest: sha256:')
    assert 'shared: storage' in first['diff']['after']
    second = run_module(main, {'root': root, 'name': 'v1', 'src': app, 'shared': ['storage']}, diff=True)
    assert second['changed'] is False
    assert second['diff']['before'] == second['diff']['after'] == first['diff']['after']
    assert first['manifest_digest'] in second['diff']['before']
    without = run_module(main, {'root': root, 'name': 'v1', 'src': app, 'shared': ['storage']})
    assert 'diff' not in without


def test_second_run_is_idempotent(run_module, deployed, app, snapshot):
    before = snapshot(deployed)
    result = run_module(main, {'root': deployed, 'name': 'v1', 'src': app})
    assert result['changed'] is False
    assert result['manifest_digest'] == _manifest.build_manifest(app).digest
    assert snapshot(deployed) == before
    check = run_module(main, {'root': deployed, 'name': 'v1', 'src': app}, check_mode=True)
    assert check['changed'] is False


def test_different_content_under_existing_name_is_refused(run_module, deployed, app, snapshot):
    old_digest = _manifest.build_manifest(app).digest
    write_tree(app, {'index.php': b'new'})
    new_digest = _manifest.build_manifest(app).digest
    before = snapshot(deployed)
    result = run_module(main, {'root': deployed, 'name': 'v1', 'src': app})
    assert result['failed'] is True
    assert old_digest in result['msg'] and new_digest in result['msg']
    assert 'immutable' in result['msg'] and 'new release name' in result['msg']
    assert snapshot(deployed) == before


def test_mode_change_is_different_content(run_module, deployed, app):
    os.chmod(os.path.join(app, 'index.php'), 0o600)
    assert run_module(main, {'root': deployed, 'name': 'v1', 'src': app})['failed'] is True


# -- hardlinks -------------------------------------------------------------------------------------
def _ino(path):
    return os.lstat(path).st_ino


def test_unchanged_files_are_hardlinked(run_module, deployed, app):
    write_tree(app, {'app/config.php': b'<?php return ["debug" => false];'})
    result = run_module(main, {'root': deployed, 'name': 'v2', 'src': app})
    assert result['changed'] is True
    assert (result['linked'], result['copied']) == (4, 1)
    v1 = os.path.join(deployed, 'releases', 'v1')
    v2 = os.path.join(deployed, 'releases', 'v2')
    for path in ('index.php', 'app/Kernel.php', 'bin/console', 'storage/logs/.gitkeep'):
        assert _ino(os.path.join(v1, path)) == _ino(os.path.join(v2, path)), path
        assert os.lstat(os.path.join(v2, path)).st_nlink == 2
    assert _ino(os.path.join(v1, 'app/config.php')) != _ino(os.path.join(v2, 'app/config.php'))
    assert _manifest.verify_tree(v2, _manifest.build_manifest(app)) == []
    # the old release is intact
    assert open(os.path.join(v1, 'app/config.php'), 'rb').read() == APP['app/config.php']


def test_tarball_files_are_hardlinked(run_module, deployed, app, tmp_path):
    write_tree(app, {'index.php': b'v2'})
    tarball = tar_of(tmp_path / 'v2.tar.gz', app)
    result = run_module(main, {'root': deployed, 'name': 'v2', 'src': tarball})
    assert (result['linked'], result['copied']) == (4, 1)
    v1 = os.path.join(deployed, 'releases', 'v1')
    v2 = os.path.join(deployed, 'releases', 'v2')
    assert _ino(os.path.join(v1, 'app/Kernel.php')) == _ino(os.path.join(v2, 'app/Kernel.php'))
    assert _ino(os.path.join(v1, 'index.php')) != _ino(os.path.join(v2, 'index.php'))
    assert not [n for n in os.listdir(os.path.join(v2)) if n.startswith('.')]


def test_same_hash_different_mode_is_not_linked(run_module, deployed, app):
    os.chmod(os.path.join(app, 'index.php'), 0o640)
    result = run_module(main, {'root': deployed, 'name': 'v2', 'src': app})
    assert (result['linked'], result['copied']) == (4, 1)
    v2_index = os.path.join(deployed, 'releases', 'v2', 'index.php')
    assert stat.S_IMODE(os.lstat(v2_index).st_mode) == 0o640
    assert stat.S_IMODE(os.lstat(os.path.join(deployed, 'releases', 'v1', 'index.php')).st_mode) == 0o644


def test_tampered_candidate_is_copied_not_linked(run_module, deployed, app):
    """A release file that no longer matches its manifest is hashed before linking and not used."""
    v1_kernel = os.path.join(deployed, 'releases', 'v1', 'app', 'Kernel.php')
    with open(v1_kernel, 'r+b') as f:
        f.write(b'<?PHP')  # same size, different content
    result = run_module(main, {'root': deployed, 'name': 'v2', 'src': app})
    assert (result['linked'], result['copied']) == (4, 1)
    v2_kernel = os.path.join(deployed, 'releases', 'v2', 'app', 'Kernel.php')
    assert _ino(v2_kernel) != _ino(v1_kernel)
    assert open(v2_kernel, 'rb').read() == APP['app/Kernel.php']


def test_failed_releases_are_not_link_sources(run_module, deployed, app):
    assert run_module(main, {'root': deployed, 'name': 'v1', 'state': 'failed'})['changed'] is True
    result = run_module(main, {'root': deployed, 'name': 'v2', 'src': app})
    assert (result['linked'], result['copied']) == (0, 5)


@pytest.mark.skipif(os.geteuid() != 0, reason='chown to another user needs root')
def test_owner_group_applied_and_respected_by_links(run_module, root, app):
    result = run_module(main, {'root': root, 'name': 'v1', 'src': app, 'owner': 'nobody', 'group': '65534'})
    assert result['changed'] is True
    release = os.path.join(root, 'releases', 'v1')
    for dirpath, dirnames, filenames in os.walk(release):
        for name in dirnames + filenames + ['']:
            st = os.lstat(os.path.join(dirpath, name))
            assert (st.st_uid, st.st_gid) == (65534, 65534)
    assert os.readlink(os.path.join(release, 'public')) == 'app'
    # a release owned by someone else cannot share inodes with v1 (chown would change v1)
    other = run_module(main, {'root': root, 'name': 'v2', 'src': app})
    assert (other['linked'], other['copied']) == (0, 5)
    assert os.lstat(os.path.join(root, 'releases', 'v2', 'index.php')).st_uid == os.geteuid()
    same = run_module(main, {'root': root, 'name': 'v3', 'src': app, 'owner': 'nobody', 'group': 'nogroup'})
    assert (same['linked'], same['copied']) == (5, 0)


def test_unknown_owner_is_refused(run_module, deployed, app, snapshot):
    before = snapshot(deployed)
    result = run_module(main, {'root': deployed, 'name': 'v2', 'src': app, 'owner': 'no-such-user-xyz'})
    assert result['failed'] is True and "'no-such-user-xyz'" in result['msg']
    result = run_module(main, {'root': deployed, 'name': 'v2', 'src': app, 'group': 'no-such-group-xyz'})
    assert result['failed'] is True and "'no-such-group-xyz'" in result['msg']
    assert snapshot(deployed) == before


# -- shared paths ------------------------------------------------------------------------------------
def test_shared_paths_become_relative_symlinks(run_module, root, app):
    result = run_module(main, {'root': root, 'name': 'v1', 'src': app, 'shared': ['storage', 'config/.env']})
    assert result['changed'] is True
    assert result['shared'] == ['config/.env', 'storage']
    assert result['manifest_digest'] == _manifest.build_manifest(app).digest  # shared links are not part of it
    release = os.path.join(root, 'releases', 'v1')
    assert os.readlink(os.path.join(release, 'storage')) == '../../shared/storage'
    assert os.readlink(os.path.join(release, 'config', '.env')) == '../../../shared/config/.env'
    os.makedirs(os.path.join(root, 'shared', 'storage'))
    assert os.path.samefile(os.path.join(release, 'storage'), os.path.join(root, 'shared', 'storage'))
    meta = read_json(os.path.join(root, '.stagehand', 'releases', 'v1.json'))
    assert meta['shared'] == ['config/.env', 'storage']
    stored, doc = _manifest.load_manifest_document(os.path.join(root, '.stagehand', 'manifests', 'v1.json'))
    assert _manifest.verify_tree(release, stored) == []
    assert doc['source_digest'] == result['manifest_digest'] and doc['digest'] == meta['tree_digest']
    # same input again: unchanged; order of the list does not matter
    assert run_module(main, {'root': root, 'name': 'v1', 'src': app, 'shared': ['storage', 'config/.env']})['changed'] is False
    assert run_module(main, {'root': root, 'name': 'v1', 'src': app, 'shared': ['config/.env', 'storage']})['changed'] is False
    # a different shared list is different content
    refused = run_module(main, {'root': root, 'name': 'v1', 'src': app, 'shared': ['storage']})
    assert refused['failed'] is True and 'immutable' in refused['msg']


def test_shared_paths_from_tarball(run_module, root, app, tmp_path):
    tarball = tar_of(tmp_path / 'a.tar.gz', app)
    result = run_module(main, {'root': root, 'name': 'v1', 'src': tarball, 'shared': ['storage/logs', 'var/cache']})
    assert result['changed'] is True
    release = os.path.join(root, 'releases', 'v1')
    assert os.readlink(os.path.join(release, 'storage', 'logs')) == '../../../shared/storage/logs'
    assert os.readlink(os.path.join(release, 'var', 'cache')) == '../../../shared/var/cache'
    assert stat.S_IMODE(os.lstat(os.path.join(release, 'var')).st_mode) == 0o755
    assert run_module(main, {'root': root, 'name': 'v1', 'src': tarball, 'shared': ['storage/logs', 'var/cache']})['changed'] is False
    assert run_module(main, {'root': root, 'name': 'v1', 'src': app, 'shared': ['var/cache', 'storage/logs']})['changed'] is False


@pytest.mark.parametrize('shared', [['../etc'], ['/etc'], ['storage', 'storage/logs'], ['index.php/x'], ['a//b']])
def test_bad_shared_paths_are_refused(run_module, deployed, app, snapshot, shared):
    before = snapshot(deployed)
    result = run_module(main, {'root': deployed, 'name': 'v2', 'src': app, 'shared': shared})
    assert result['failed'] is True
    assert 'shared path' in result['msg']
    assert snapshot(deployed) == before


# -- the manifest option ------------------------------------------------------------------------------
def test_manifest_option_match(run_module, root, app, tmp_path):
    manifest_file = str(tmp_path / 'build.manifest.json')
    _manifest.save_manifest(manifest_file, _manifest.build_manifest(app))
    result = run_module(main, {'root': root, 'name': 'v1', 'src': app, 'manifest': manifest_file})
    assert result['changed'] is True
    tarball = tar_of(tmp_path / 'a.tgz', app)
    result = run_module(main, {'root': root, 'name': 'v2', 'src': tarball, 'manifest': manifest_file})
    assert result['changed'] is True


@pytest.mark.parametrize('as_tar', [False, True])
def test_manifest_option_mismatch_is_refused(run_module, deployed, app, tmp_path, snapshot, as_tar):
    manifest_file = str(tmp_path / 'build.manifest.json')
    _manifest.save_manifest(manifest_file, _manifest.build_manifest(app))
    write_tree(app, {'index.php': b'tampered'})
    src = tar_of(tmp_path / 'a.tgz', app) if as_tar else app
    before = snapshot(deployed)
    for check_mode in (True, False):
        result = run_module(main, {'root': deployed, 'name': 'v2', 'src': src, 'manifest': manifest_file}, check_mode=check_mode)
        assert result['failed'] is True
        assert manifest_file in result['msg'] and 'index.php' in result['msg']
        assert any(p.startswith('s') and 'index.php' in p for p in result['problems'])
    assert snapshot(deployed) == before
    assert not os.path.lexists(os.path.join(deployed, 'releases', 'v2'))


def test_manifest_option_bad_file(run_module, deployed, app, tmp_path, snapshot):
    bad = tmp_path / 'bad.json'
    bad.write_text('{"version": 1, "entries": [{"path": "../x", "type": "dir", "mode": "0755"}]}')
    before = snapshot(deployed)
    for manifest_file in (str(bad), str(tmp_path / 'missing.json')):
        result = run_module(main, {'root': deployed, 'name': 'v2', 'src': app, 'manifest': manifest_file})
        assert result['failed'] is True and manifest_file in result['msg']
    assert snapshot(deployed) == before


# -- bad input: nothing changes ---------------------------------------------------------------------
BAD_NAMES = ['', '..', 'a/b', 'a\x00b', 'a\nb', 'x' * 129, '.hidden', 'sp ace']


@pytest.mark.parametrize('name', BAD_NAMES)
@pytest.mark.parametrize('state', ['present', 'absent', 'failed'])
def test_bad_names_are_refused_and_nothing_created(run_module, root, app, name, state):
    result = run_module(main, {'root': root, 'name': name, 'src': app, 'state': state})
    assert result['failed'] is True
    assert 'release name' in result['msg'] and "letters, digits" in result['msg']
    assert not os.path.lexists(root)


@pytest.mark.parametrize('name', BAD_NAMES)
def test_bad_names_leave_existing_root_untouched(run_module, deployed, app, snapshot, name):
    before = snapshot(deployed)
    result = run_module(main, {'root': deployed, 'name': name, 'src': app})
    assert result['failed'] is True
    assert snapshot(deployed) == before


def _bad_sources(tmp_path, app):
    """name -> (src path, fragment of the message)."""
    out = {}
    out['missing'] = (str(tmp_path / 'nope.tar.gz'), 'does not exist')
    (tmp_path / 'build.zip').write_bytes(b'PK')
    out['not-tar'] = (str(tmp_path / 'build.zip'), 'neither a directory nor a .tar.gz/.tgz')
    out['dotdot'] = (raw_tar(tmp_path / 'dotdot.tgz', [
        ('ok.php', tarfile.REGTYPE, b'ok', 0o644, ''), ('../evil.php', tarfile.REGTYPE, b'x', 0o644, '')]), "'..'")
    out['absolute'] = (raw_tar(tmp_path / 'abs.tgz', [
        ('ok.php', tarfile.REGTYPE, b'ok', 0o644, ''), (str(tmp_path / 'outside' / 'evil.php'), tarfile.REGTYPE, b'x', 0o644, '')]),
        'absolute')
    out['escaping-symlink'] = (raw_tar(tmp_path / 'esc.tgz', [
        ('ok.php', tarfile.REGTYPE, b'ok', 0o644, ''), ('etc', tarfile.SYMTYPE, b'', 0o777, '../../../etc')]), 'escapes')
    out['symlink-chain'] = (raw_tar(tmp_path / 'chain.tgz', [
        ('d', tarfile.SYMTYPE, b'', 0o777, '.'), ('e', tarfile.SYMTYPE, b'', 0o777, 'd/..')]), 'escapes')
    os.makedirs(str(tmp_path / 'outside'))
    out['write-through-symlink'] = (raw_tar(tmp_path / 'through.tgz', [
        ('l', tarfile.SYMTYPE, b'', 0o777, str(tmp_path / 'outside')), ('l/evil', tarfile.REGTYPE, b'x', 0o644, '')]), 'symlink')
    out['device'] = (raw_tar(tmp_path / 'dev.tgz', [
        ('ok.php', tarfile.REGTYPE, b'ok', 0o644, ''), ('null', tarfile.CHRTYPE, b'', 0o666, '')]), 'device file')
    out['fifo'] = (raw_tar(tmp_path / 'fifo.tgz', [('p', tarfile.FIFOTYPE, b'', 0o644, '')]), 'fifo')
    out['duplicate'] = (raw_tar(tmp_path / 'dup.tgz', [
        ('a.php', tarfile.REGTYPE, b'1', 0o644, ''), ('a.php', tarfile.REGTYPE, b'2', 0o644, '')]), 'duplicate')
    out['setuid'] = (raw_tar(tmp_path / 'suid.tgz', [('su', tarfile.REGTYPE, b'x', 0o4755, '')]), 'setuid')
    out['hardlink-outside'] = (raw_tar(tmp_path / 'hl.tgz', [
        ('h', tarfile.LNKTYPE, b'', 0o644, '/etc/shadow')]), 'outside')
    out['hardlink-missing'] = (raw_tar(tmp_path / 'hlm.tgz', [
        ('h', tarfile.LNKTYPE, b'', 0o644, 'nothing')]), 'not an earlier member')
    big = b''.join(bytes([i % 251]) * 7 + os.urandom(1) for i in range(40000))
    full = raw_tar(tmp_path / 'full.tgz', [('a.php', tarfile.REGTYPE, b'a', 0o644, ''), ('big', tarfile.REGTYPE, big, 0o644, '')])
    with open(full, 'rb') as f:
        raw = f.read()
    (tmp_path / 'truncated.tgz').write_bytes(raw[:-4])
    out['truncated'] = (str(tmp_path / 'truncated.tgz'), 'truncated or corrupt')
    (tmp_path / 'garbage.tar.gz').write_bytes(b'this is not gzip')
    out['garbage'] = (str(tmp_path / 'garbage.tar.gz'), 'not a readable .tar.gz')
    escaping_dir = write_tree(tmp_path / 'escdir', {'a.php': b'a'}, links={'d': '.', 'e': 'd/..'})
    out['dir-escaping-symlink'] = (escaping_dir, 'escapes')
    fifo_dir = write_tree(tmp_path / 'fifodir', {'a.php': b'a'})
    os.mkfifo(os.path.join(fifo_dir, 'pipe'))
    out['dir-fifo'] = (fifo_dir, 'fifo')
    return out


BAD_SOURCE_NAMES = ['missing', 'not-tar', 'dotdot', 'absolute', 'escaping-symlink', 'symlink-chain', 'write-through-symlink',
                    'device', 'fifo', 'duplicate', 'setuid', 'hardlink-outside', 'hardlink-missing', 'truncated', 'garbage',
                    'dir-escaping-symlink', 'dir-fifo']


@pytest.mark.parametrize('case', BAD_SOURCE_NAMES)
def test_bad_sources_are_refused_and_nothing_changes(run_module, deployed, app, tmp_path, snapshot, case):
    os.makedirs(str(tmp_path / 'bad'))
    src, fragment = _bad_sources(tmp_path / 'bad', app)[case]
    before = snapshot(deployed)
    for check_mode in (True, False):
        result = run_module(main, {'root': deployed, 'name': 'v2', 'src': src}, check_mode=check_mode)
        assert result['failed'] is True, result
        assert fragment in result['msg'], result['msg']
    assert snapshot(deployed) == before
    assert not os.path.lexists(os.path.join(deployed, 'releases', 'v2'))
    assert os.listdir(str(tmp_path / 'bad' / 'outside')) == []  # nothing written through links or absolute names
    # an existing release with the same name is not an excuse either
    result = run_module(main, {'root': deployed, 'name': 'v1', 'src': src})
    assert result['failed'] is True
    assert snapshot(deployed) == before


@pytest.mark.parametrize('case', ['dotdot', 'truncated', 'device', 'symlink-chain'])
def test_bad_source_on_fresh_root_leaves_nothing(run_module, root, app, tmp_path, case):
    os.makedirs(str(tmp_path / 'bad'))
    src, _fragment = _bad_sources(tmp_path / 'bad', app)[case]
    result = run_module(main, {'root': root, 'name': 'v1', 'src': src})
    assert result['failed'] is True
    assert not os.path.lexists(root)


@pytest.mark.skipif(os.geteuid() == 0, reason='root can read everything')
def test_unreadable_source_is_refused(run_module, deployed, app, snapshot):
    os.chmod(os.path.join(app, 'index.php'), 0)
    before = snapshot(deployed)
    result = run_module(main, {'root': deployed, 'name': 'v2', 'src': app})
    assert result['failed'] is True and 'index.php' in result['msg']
    assert snapshot(deployed) == before


def test_missing_name_or_src(run_module, root, app):
    assert 'src' in run_module(main, {'root': root, 'name': 'v1'})['msg']
    assert 'name is required' in run_module(main, {'root': root, 'src': app})['msg']
    assert 'name' in run_module(main, {'root': root, 'state': 'absent'})['msg']
    assert run_module(main, {'root': root, 'name': 'v1', 'state': 'absent', 'slot': 'a'})['failed'] is True
    assert not os.path.lexists(root)


# -- crash recovery ---------------------------------------------------------------------------------
def test_directory_without_metadata_is_adopted(run_module, deployed, app, snapshot):
    meta_path = os.path.join(deployed, '.stagehand', 'releases', 'v1.json')
    manifest_path = os.path.join(deployed, '.stagehand', 'manifests', 'v1.json')
    expected_meta = read_json(meta_path)
    os.unlink(meta_path)
    os.unlink(manifest_path)
    before = snapshot(deployed)
    check = run_module(main, {'root': deployed, 'name': 'v1', 'src': app}, check_mode=True)
    assert check['changed'] is True and check['recovered'] is True
    assert snapshot(deployed) == before
    result = run_module(main, {'root': deployed, 'name': 'v1', 'src': app})
    assert result['changed'] is True and result['recovered'] is True
    meta = read_json(meta_path)
    assert meta['status'] == 'complete' and meta['manifest_digest'] == expected_meta['manifest_digest']
    assert _manifest.load_manifest(manifest_path) == _manifest.build_manifest(app)
    assert run_module(main, {'root': deployed, 'name': 'v1', 'src': app})['changed'] is False


def test_incomplete_metadata_is_recovered_keeping_chain(run_module, deployed, app):
    droot = DeployRoot(deployed)
    meta = droot.read_meta('v1')
    meta.update({'status': 'incomplete', 'previous': 'v0', 'activated': '2026-01-01T00:00:00Z'})
    droot.write_meta('v1', meta)
    result = run_module(main, {'root': deployed, 'name': 'v1', 'src': app})
    assert result['recovered'] is True
    meta = droot.read_meta('v1')
    assert meta['status'] == 'complete'
    assert (meta['previous'], meta['activated']) == ('v0', '2026-01-01T00:00:00Z')


def test_mismatching_directory_without_metadata_is_refused(run_module, deployed, app, snapshot):
    os.unlink(os.path.join(deployed, '.stagehand', 'releases', 'v1.json'))
    with open(os.path.join(deployed, 'releases', 'v1', 'extra.txt'), 'w') as f:
        f.write('x')
    before = snapshot(deployed)
    result = run_module(main, {'root': deployed, 'name': 'v1', 'src': app})
    assert result['failed'] is True
    assert 'without complete metadata' in result['msg'] and 'extra: extra.txt' in result['msg']
    assert snapshot(deployed) == before


def test_staging_leftovers_do_not_matter(run_module, root, app):
    leftover = os.path.join(root, '.stagehand', 'stage', '.release-v1.deadbeef.tmp')
    os.makedirs(os.path.join(leftover, 'half'))
    result = run_module(main, {'root': root, 'name': 'v1', 'src': app})
    assert result['changed'] is True
    assert os.path.isdir(leftover)  # someone else's business (cleanup), never reused
    assert sorted(os.listdir(os.path.join(root, '.stagehand', 'stage'))) == ['.release-v1.deadbeef.tmp']


# -- state=absent ---------------------------------------------------------------------------------
@pytest.fixture
def chain(run_module, root, app):
    """Releases v1, v2, v3; current -> releases/v3 whose previous is v2."""
    for i, name in enumerate(('v1', 'v2', 'v3')):
        write_tree(app, {'index.php': b'version %d' % i})
        assert run_module(main, {'root': root, 'name': name, 'src': app})['changed'] is True
    droot = DeployRoot(root)
    meta = droot.read_meta('v3')
    meta['previous'] = 'v2'
    droot.write_meta('v3', meta)
    os.symlink('releases/v3', os.path.join(root, 'current'))
    return root


def test_absent_removes_release_and_metadata(run_module, chain, snapshot):
    before = snapshot(chain)
    check = run_module(main, {'root': chain, 'name': 'v1', 'state': 'absent'}, check_mode=True, diff=True)
    assert check['changed'] is True
    assert check['diff']['after'] == 'release v1: absent\n' and 'complete' in check['diff']['before']
    assert snapshot(chain) == before
    v2_index_nlink = os.lstat(os.path.join(chain, 'releases', 'v2', 'app', 'Kernel.php')).st_nlink
    result = run_module(main, {'root': chain, 'name': 'v1', 'state': 'absent'})
    assert result['changed'] is True
    assert not os.path.lexists(os.path.join(chain, 'releases', 'v1'))
    assert not os.path.lexists(os.path.join(chain, '.stagehand', 'releases', 'v1.json'))
    assert not os.path.lexists(os.path.join(chain, '.stagehand', 'manifests', 'v1.json'))
    assert os.listdir(os.path.join(chain, '.stagehand', 'stage')) == []
    # hardlinked files of the other releases survive
    assert os.lstat(os.path.join(chain, 'releases', 'v2', 'app', 'Kernel.php')).st_nlink == v2_index_nlink - 1
    assert _manifest.verify_tree(os.path.join(chain, 'releases', 'v2'),
                                 _manifest.load_manifest(os.path.join(chain, '.stagehand', 'manifests', 'v2.json'))) == []
    again = run_module(main, {'root': chain, 'name': 'v1', 'state': 'absent'})
    assert again['changed'] is False


def test_absent_of_unknown_release_is_unchanged(run_module, chain, snapshot):
    before = snapshot(chain)
    assert run_module(main, {'root': chain, 'name': 'nope', 'state': 'absent'})['changed'] is False
    assert run_module(main, {'root': str(chain) + '-missing', 'name': 'nope', 'state': 'absent'})['changed'] is False
    assert snapshot(chain) == before


def test_absent_refuses_live_release_even_with_force(run_module, chain, snapshot):
    before = snapshot(chain)
    for force in (False, True):
        for check_mode in (False, True):
            result = run_module(main, {'root': chain, 'name': 'v3', 'state': 'absent', 'force': force}, check_mode=check_mode)
            assert result['failed'] is True
            assert 'live' in result['msg'] and 'v3' in result['msg']
    assert snapshot(chain) == before


def test_absent_refuses_rollback_target_without_force(run_module, chain, snapshot):
    before = snapshot(chain)
    result = run_module(main, {'root': chain, 'name': 'v2', 'state': 'absent'})
    assert result['failed'] is True
    assert 'rollback target' in result['msg'] and 'force' in result['msg']
    assert snapshot(chain) == before
    forced = run_module(main, {'root': chain, 'name': 'v2', 'state': 'absent', 'force': True})
    assert forced['changed'] is True
    assert not os.path.lexists(os.path.join(chain, 'releases', 'v2'))
    assert os.path.isdir(os.path.join(chain, 'releases', 'v3'))


def test_absent_removes_read_only_directories(run_module, root, tmp_path):
    src = write_tree(tmp_path / 'ro', {'locked/file.php': b'x'})
    os.chmod(os.path.join(src, 'locked'), 0o555)
    assert run_module(main, {'root': root, 'name': 'v1', 'src': src})['changed'] is True
    assert stat.S_IMODE(os.lstat(os.path.join(root, 'releases', 'v1', 'locked')).st_mode) == 0o555
    assert run_module(main, {'root': root, 'name': 'v1', 'state': 'absent'})['changed'] is True
    assert os.listdir(os.path.join(root, 'releases')) == []


def test_absent_cleans_metadata_left_by_interrupted_removal(run_module, chain):
    aside = os.path.join(chain, '.stagehand', 'stage', 'gone')
    os.rename(os.path.join(chain, 'releases', 'v1'), aside)
    result = run_module(main, {'root': chain, 'name': 'v1', 'state': 'absent'})
    assert result['changed'] is True
    assert not os.path.lexists(os.path.join(chain, '.stagehand', 'releases', 'v1.json'))


# -- state=failed ----------------------------------------------------------------------------------
def test_mark_failed(run_module, chain, snapshot):
    before = snapshot(chain)
    check = run_module(main, {'root': chain, 'name': 'v1', 'state': 'failed', 'reason': 'smoke test'}, check_mode=True, diff=True)
    assert check['changed'] is True and 'failed_reason: smoke test' in check['diff']['after']
    assert snapshot(chain) == before
    result = run_module(main, {'root': chain, 'name': 'v1', 'state': 'failed', 'reason': 'smoke test'})
    assert result['changed'] is True and result['status'] == 'failed'
    meta = DeployRoot(chain).read_meta('v1')
    assert (meta['status'], meta['failed_reason']) == ('failed', 'smoke test')
    assert meta['manifest_digest'] == result['manifest_digest']
    assert os.path.isdir(os.path.join(chain, 'releases', 'v1'))
    snap = snapshot(chain)
    again = run_module(main, {'root': chain, 'name': 'v1', 'state': 'failed', 'reason': 'other'})
    assert again['changed'] is False
    assert snapshot(chain) == snap


def test_mark_failed_preserves_chain(run_module, chain):
    result = run_module(main, {'root': chain, 'name': 'v3', 'state': 'failed'})
    assert result['changed'] is True
    meta = DeployRoot(chain).read_meta('v3')
    assert meta['previous'] == 'v2' and meta['status'] == 'failed' and meta['failed_reason'] is None


def test_mark_failed_missing_release(run_module, chain, snapshot):
    before = snapshot(chain)
    result = run_module(main, {'root': chain, 'name': 'v9', 'state': 'failed'})
    assert result['failed'] is True and 'v9' in result['msg'] and 'does not exist' in result['msg']
    assert snapshot(chain) == before


def test_failed_release_same_content_is_unchanged(run_module, deployed, app):
    run_module(main, {'root': deployed, 'name': 'v1', 'state': 'failed'})
    result = run_module(main, {'root': deployed, 'name': 'v1', 'src': app})
    assert result['changed'] is False and result['status'] == 'failed'
