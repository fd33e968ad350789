# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import socket
import stat
import tarfile

import pytest

from ansible_collections.stagehand.deploy.plugins.module_utils import _manifest as m


# -- helpers ----------------------------------------------------------------------
def make_tree(top, files=None, dirs=(), links=None):
    """files: {path: bytes or (bytes, mode)}, dirs: paths, links: {path: target}."""
    os.makedirs(top, exist_ok=True)
    for d in dirs:
        os.makedirs(os.path.join(top, d), exist_ok=True)
    for path, content in (files or {}).items():
        mode = 0o644
        if isinstance(content, tuple):
            content, mode = content
        full = os.path.join(top, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, 'wb') as f:
            f.write(content)
        os.chmod(full, mode)
    for path, target in (links or {}).items():
        full = os.path.join(top, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        os.symlink(target, full)
    return str(top)


def tar_member(name, kind=tarfile.REGTYPE, data=b'', mode=0o644, linkname=''):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.linkname = linkname
    info.size = len(data) if kind in (tarfile.REGTYPE, tarfile.AREGTYPE) else 0
    return info, (io.BytesIO(data) if info.size else None)


def make_tar(path, members):
    """members: list of (TarInfo, fileobj) as returned by tar_member."""
    with tarfile.open(str(path), 'w:gz') as tar:
        for info, fileobj in members:
            tar.addfile(info, fileobj)
    return str(path)


def sha(data):
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def sample(tmp_path):
    return make_tree(tmp_path / 'src', files={
        'index.php': b'<?php echo 1;',
        'app/Kernel.php': (b'kernel', 0o640),
        'bin/console': (b'#!/bin/sh', 0o755),
    }, dirs=['empty'], links={'public/index.php': '../index.php'})


# -- building and digests ----------------------------------------------------------------
def test_build_manifest_entries(sample):
    manifest = m.build_manifest(sample)
    assert manifest.entries == [
        {'path': 'app', 'type': 'dir', 'mode': '0755'},
        {'path': 'app/Kernel.php', 'type': 'file', 'mode': '0640', 'sha256': sha(b'kernel'), 'size': 6},
        {'path': 'bin', 'type': 'dir', 'mode': '0755'},
        {'path': 'bin/console', 'type': 'file', 'mode': '0755', 'sha256': sha(b'#!/bin/sh'), 'size': 9},
        {'path': 'empty', 'type': 'dir', 'mode': '0755'},
        {'path': 'index.php', 'type': 'file', 'mode': '0644', 'sha256': sha(b'<?php echo 1;'), 'size': 13},
        {'path': 'public', 'type': 'dir', 'mode': '0755'},
        {'path': 'public/index.php', 'type': 'symlink', 'target': '../index.php'},
    ]
    assert manifest.files == 3
    assert manifest.bytes == 6 + 9 + 13


def test_digest_is_sha256_of_canonical_json(sample):
    manifest = m.build_manifest(sample)
    expected = json.dumps(manifest.entries, sort_keys=True, separators=(',', ':')).encode()
    assert m.canonical_json(manifest) == expected
    assert m.digest(manifest) == 'sha256:' + hashlib.sha256(expected).hexdigest()
    assert manifest.digest == m.digest(manifest)


def test_digest_ignores_mtime_and_creation_order(tmp_path, sample):
    before = m.build_manifest(sample).digest
    for dirpath, _dirs, files in os.walk(sample):
        for name in files:
            os.utime(os.path.join(dirpath, name), (1, 1))
    assert m.build_manifest(sample).digest == before
    # the same content created in another order, elsewhere
    other = tmp_path / 'other'
    make_tree(other, links={'public/index.php': '../index.php'}, dirs=['empty'])
    make_tree(other, files={'bin/console': (b'#!/bin/sh', 0o755)})
    make_tree(other, files={'index.php': b'<?php echo 1;', 'app/Kernel.php': (b'kernel', 0o640)})
    assert m.build_manifest(str(other)).digest == before


def test_digest_independent_of_entry_order(sample):
    entries = m.build_manifest(sample).entries
    shuffled = list(entries)
    random.Random(4).shuffle(shuffled)
    shuffled = [dict(reversed(list(e.items()))) for e in shuffled]
    assert m.Manifest(shuffled).digest == m.Manifest(entries).digest
    assert m.Manifest(shuffled) == m.Manifest(entries)


@pytest.mark.parametrize('change', ['content', 'mode', 'target', 'extra'])
def test_digest_changes_with_content(sample, change):
    before = m.build_manifest(sample).digest
    if change == 'content':
        with open(os.path.join(sample, 'index.php'), 'ab') as f:
            f.write(b'!')
    elif change == 'mode':
        os.chmod(os.path.join(sample, 'index.php'), 0o600)
    elif change == 'target':
        os.unlink(os.path.join(sample, 'public/index.php'))
        os.symlink('../bin/console', os.path.join(sample, 'public/index.php'))
    else:
        os.mkdir(os.path.join(sample, 'new'))
    assert m.build_manifest(sample).digest != before


def test_dir_and_tar_of_same_content_have_same_digest(tmp_path, sample):
    tar_path = str(tmp_path / 'src.tar.gz')
    with tarfile.open(tar_path, 'w:gz') as tar:
        tar.add(sample, arcname='.')
    assert m.manifest_from_tar(tar_path) == m.build_manifest(sample)
    assert m.source_manifest(tar_path).digest == m.source_manifest(sample).digest


def test_tar_implied_directories_and_dot_slash(tmp_path):
    tar_path = make_tar(tmp_path / 'a.tgz', [
        tar_member('./', tarfile.DIRTYPE, mode=0o755),
        tar_member('./a/b/c.txt', data=b'c'),
        tar_member('./a/', tarfile.DIRTYPE, mode=0o750),  # explicit dir after an implied one
    ])
    manifest = m.manifest_from_tar(tar_path)
    assert [(e['path'], e['type'], e.get('mode')) for e in manifest] == [
        ('a', 'dir', '0750'), ('a/b', 'dir', '0755'), ('a/b/c.txt', 'file', '0644')]


def test_scan_tar_extracts_with_private_modes(tmp_path):
    tar_path = make_tar(tmp_path / 'a.tgz', [
        tar_member('d', tarfile.DIRTYPE, mode=0o755),
        tar_member('d/f', data=b'data', mode=0o644),
        tar_member('d/h', tarfile.LNKTYPE, linkname='d/f', mode=0o600),
        tar_member('l', tarfile.SYMTYPE, linkname='d/f'),
    ])
    dest = tmp_path / 'dest'
    dest.mkdir()
    manifest = m.scan_tar(tar_path, str(dest))
    assert (dest / 'd' / 'f').read_bytes() == b'data'
    assert (dest / 'd' / 'h').read_bytes() == b'data'
    assert os.lstat(dest / 'd' / 'h').st_ino != os.lstat(dest / 'd' / 'f').st_ino  # independent copy
    assert os.readlink(dest / 'l') == 'd/f'
    assert stat.S_IMODE(os.lstat(dest / 'd' / 'f').st_mode) == 0o600
    assert manifest.get('d/h') == {'path': 'd/h', 'type': 'file', 'mode': '0600', 'sha256': sha(b'data'), 'size': 4}


# -- unsafe directory sources ---------------------------------------------------------------
@pytest.mark.parametrize('links, bad', [
    ({'l': '/etc/passwd'}, 'l'),
    ({'l': '../outside'}, 'l'),
    ({'a/l': '../../outside'}, 'a/l'),
    ({'d': '.', 'e': 'd/..'}, 'e'),
    ({'d': 'x/../..'}, 'd'),
    ({'up': '..', 'z': 'up/y'}, 'up'),
    ({'a/d': '..', 'a/e': 'd/a/d/..'}, 'a/e'),
    ({'loop1': 'loop2', 'loop2': 'loop1'}, 'loop1'),
    ({'abs': 'b', 'b': '/tmp'}, 'abs'),
])
def test_dir_with_escaping_symlink_is_refused(tmp_path, links, bad):
    top = make_tree(tmp_path / 'src', files={'x/y': b'1', 'a/f': b'2'}, links=links)
    with pytest.raises(m.UnsafeSource) as exc:
        m.build_manifest(top)
    assert exc.value.path == bad
    assert repr(bad) in exc.value.msg


def test_symlinks_inside_the_tree_are_allowed(tmp_path):
    top = make_tree(tmp_path / 'src', files={'x/y': b'1'}, links={
        'd': '.', 'e': 'd/x/../x/y', 'root': 'x/..', 'dangling': 'x/not-there', 'deep': 'x/../d/d/d/x',
        'x/up': '../x/y', 'a/q': '..', 'a/e': 'q/q/..',
    })
    manifest = m.build_manifest(top)
    assert m.resolve_symlink(manifest, 'e') == 'x/y'
    assert m.resolve_symlink(manifest, 'root') == ''
    assert m.resolve_symlink(manifest, 'deep') == 'x'
    assert m.resolve_symlink(manifest, 'x/up') == 'x/y'
    assert m.resolve_symlink(manifest, 'a/e') == ''  # a/q/q does not exist: the kernel would fail, never escape


def test_resolution_is_not_only_lexical(tmp_path):
    """``e -> d/..`` looks harmless lexically (it normalizes to ``.``), but d is ``.``, so it is ``..``."""
    assert os.path.normpath('d/..') == '.'
    top = make_tree(tmp_path / 'src', links={'d': '.', 'e': 'd/..'})
    with pytest.raises(m.UnsafeSource, match="'e'.*escapes"):
        m.build_manifest(top)
    # the kernel agrees: e really is the parent of the tree
    assert os.path.samefile(os.path.join(top, 'e'), str(tmp_path))


def test_dir_with_fifo_is_refused(tmp_path):
    top = make_tree(tmp_path / 'src', files={'a': b''})
    os.mkfifo(os.path.join(top, 'pipe'))
    with pytest.raises(m.UnsafeSource, match="'pipe'.*fifo"):
        m.build_manifest(top)


def test_dir_with_device_is_refused(tmp_path):
    top = make_tree(tmp_path / 'src', files={'a': b''})
    try:
        os.mknod(os.path.join(top, 'null'), 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    except PermissionError:
        pytest.skip('mknod needs privileges')
    with pytest.raises(m.UnsafeSource, match="'null'.*device file"):
        m.build_manifest(top)


def test_dir_with_socket_is_refused(tmp_path):
    top = make_tree(tmp_path / 's', files={'a': b''})
    cwd = os.getcwd()
    os.chdir(top)  # keep the socket path short
    try:
        sock = socket.socket(socket.AF_UNIX)
        sock.bind('sock')
        sock.close()
    finally:
        os.chdir(cwd)
    with pytest.raises(m.UnsafeSource, match="'sock'.*socket"):
        m.build_manifest(top)


@pytest.mark.parametrize('path, mode, bit', [
    ('bin/su', 0o4755, 'setuid'), ('bin/sg', 0o2755, 'setgid'), ('dir', 0o2775, 'setgid'),
    ('bin/su', 0o666, 'writable by every user'), ('dir', 0o777, 'writable by every user'),
])
def test_dir_with_setuid_setgid_is_refused(tmp_path, path, mode, bit):
    top = make_tree(tmp_path / 'src', files={'bin/su': b'x', 'bin/sg': b'y'}, dirs=['dir'])
    os.chmod(os.path.join(top, path), mode)
    with pytest.raises(m.UnsafeSource) as exc:
        m.build_manifest(top)
    assert exc.value.path == path
    assert bit in exc.value.msg


def test_dir_with_non_utf8_name_is_refused(tmp_path):
    top = make_tree(tmp_path / 'src')
    with open(os.path.join(os.fsencode(top), b'bad\xff'), 'wb'):
        pass
    with pytest.raises(m.UnsafeSource, match='UTF-8'):
        m.build_manifest(top)


def test_missing_dir_source(tmp_path):
    with pytest.raises(m.CorruptSource, match='does not exist'):
        m.source_manifest(str(tmp_path / 'nope'))
    (tmp_path / 'file.zip').write_bytes(b'x')
    with pytest.raises(m.CorruptSource, match='neither a directory nor a .tar.gz'):
        m.source_manifest(str(tmp_path / 'file.zip'))


# -- unsafe tar sources -------------------------------------------------------------------
BAD_TARS = {
    'dotdot': ([tar_member('../evil', data=b'x')], '../evil', "'..'"),
    'dotdot-inside': ([tar_member('a/../../evil', data=b'x')], 'a/../../evil', "'..'"),
    'absolute': ([tar_member('/etc/cron.d/evil', data=b'x')], '/etc/cron.d/evil', 'absolute'),
    'symlink-abs': ([tar_member('l', tarfile.SYMTYPE, linkname='/etc')], 'l', 'absolute'),
    'symlink-up': ([tar_member('a', tarfile.DIRTYPE, mode=0o755), tar_member('a/l', tarfile.SYMTYPE, linkname='../..')], 'a/l', 'escapes'),
    'symlink-chain': ([tar_member('d', tarfile.SYMTYPE, linkname='.'), tar_member('e', tarfile.SYMTYPE, linkname='d/..')], 'e', 'escapes'),
    'below-symlink': ([tar_member('l', tarfile.SYMTYPE, linkname='sub'), tar_member('l/x', data=b'x')], 'l/x', 'symlink'),
    'below-file': ([tar_member('f', data=b'x'), tar_member('f/x', data=b'x')], 'f/x', 'file'),
    'chr-device': ([tar_member('dev', tarfile.CHRTYPE)], 'dev', 'device file'),
    'blk-device': ([tar_member('dev', tarfile.BLKTYPE)], 'dev', 'device file'),
    'fifo': ([tar_member('p', tarfile.FIFOTYPE)], 'p', 'fifo'),
    'duplicate': ([tar_member('a.php', data=b'1'), tar_member('a.php', data=b'2')], 'a.php', 'duplicate'),
    'duplicate-dotslash': ([tar_member('a.php', data=b'1'), tar_member('./a.php', data=b'1')], 'a.php', 'duplicate'),
    'duplicate-dir': ([tar_member('d', tarfile.DIRTYPE), tar_member('d/', tarfile.DIRTYPE)], 'd', 'duplicate'),
    'file-over-implied-dir': ([tar_member('d/x', data=b'1'), tar_member('d', data=b'2')], 'd', 'earlier members'),
    'setuid': ([tar_member('su', data=b'x', mode=0o4755)], 'su', 'setuid'),
    'setgid-dir': ([tar_member('d', tarfile.DIRTYPE, mode=0o2755)], 'd', 'setgid'),
    'world-writable': ([tar_member('w.php', data=b'x', mode=0o666)], 'w.php', 'writable by every user'),
    'world-writable-dir': ([tar_member('d', tarfile.DIRTYPE, mode=0o777)], 'd', 'writable by every user'),
    'hardlink-outside': ([tar_member('h', tarfile.LNKTYPE, linkname='../etc/passwd')], 'h', 'outside'),
    'hardlink-absolute': ([tar_member('h', tarfile.LNKTYPE, linkname='/etc/passwd')], 'h', 'outside'),
    'hardlink-missing': ([tar_member('h', tarfile.LNKTYPE, linkname='later'), tar_member('later', data=b'x')], 'h', 'not an earlier member'),
    'hardlink-to-dir': ([tar_member('d', tarfile.DIRTYPE), tar_member('h', tarfile.LNKTYPE, linkname='d')], 'h', 'not a file'),
    'hardlink-to-symlink': ([tar_member('s', tarfile.SYMTYPE, linkname='x'), tar_member('h', tarfile.LNKTYPE, linkname='s')], 'h', 'not a file'),
}


@pytest.mark.parametrize('case', sorted(BAD_TARS))
@pytest.mark.parametrize('extract', [False, True])
def test_unsafe_tar_is_refused(tmp_path, case, extract):
    members, bad, fragment = BAD_TARS[case]
    tar_path = make_tar(tmp_path / 'bad.tar.gz', [tar_member(i.name, i.type, b'x' * i.size, i.mode, i.linkname) for i, _f in members])
    dest = tmp_path / 'dest'
    dest.mkdir()
    with pytest.raises(m.UnsafeSource) as exc:
        m.scan_tar(tar_path, str(dest) if extract else None)
    assert exc.value.path == bad
    assert fragment in exc.value.msg
    # nothing was ever written outside dest
    assert sorted(os.listdir(tmp_path)) == ['bad.tar.gz', 'dest']


@pytest.mark.parametrize('damage', ['half', 'last-byte', 'trailer', 'flipped-byte', 'crc'])
def test_truncated_or_damaged_tar_is_corrupt(tmp_path, damage):
    """Includes archives whose tar part is complete and only the gzip trailer is cut or wrong."""
    data = b''.join(hashlib.sha256(b'%d' % i).digest() for i in range(3200))  # incompressible
    tar_path = make_tar(tmp_path / 'full.tar.gz', [tar_member('big.bin', data=data)])
    with open(tar_path, 'rb') as f:
        raw = bytearray(f.read())
    m.manifest_from_tar(tar_path)  # the intact archive is fine
    if damage == 'half':
        raw = raw[: len(raw) // 2]
    elif damage == 'last-byte':
        raw = raw[:-1]
    elif damage == 'trailer':
        raw = raw[:-8]
    elif damage == 'flipped-byte':
        raw[len(raw) // 2] ^= 0xff
    else:
        raw[-6] ^= 0xff
    cut = tmp_path / 'cut.tar.gz'
    cut.write_bytes(bytes(raw))
    with pytest.raises(m.CorruptSource, match='truncated or corrupt'):
        m.manifest_from_tar(str(cut))
    dest = tmp_path / 'dest'
    dest.mkdir()
    with pytest.raises(m.CorruptSource):
        m.scan_tar(str(cut), str(dest))


@pytest.mark.parametrize('content', [b'', b'not a tarball at all', b'\x1f\x8b\x08\x00garbage'])
def test_garbage_tar_is_corrupt(tmp_path, content):
    path = tmp_path / 'x.tgz'
    path.write_bytes(content)
    with pytest.raises(m.CorruptSource) as exc:
        m.manifest_from_tar(str(path))
    assert str(path) in exc.value.msg


def test_uncompressed_tar_with_gz_name_is_corrupt(tmp_path):
    path = str(tmp_path / 'plain.tar.gz')
    with tarfile.open(path, 'w') as tar:
        info, fileobj = tar_member('a', data=b'a')
        tar.addfile(info, fileobj)
    with pytest.raises(m.CorruptSource):
        m.manifest_from_tar(path)


# -- manifest validation, files ------------------------------------------------------------
@pytest.mark.parametrize('entries, fragment', [
    ([{'path': 'a', 'type': 'file', 'mode': '0644', 'sha256': '0' * 64}], 'keys'),
    ([{'path': 'a', 'type': 'fifo'}], 'type'),
    ([{'path': 'a', 'type': 'dir', 'mode': '755'}], 'mode'),
    ([{'path': 'a', 'type': 'file', 'mode': '0644', 'sha256': 'XYZ', 'size': 1}], 'sha256'),
    ([{'path': 'a', 'type': 'file', 'mode': '0644', 'sha256': '0' * 64, 'size': -1}], 'size'),
    ([{'path': 'a', 'type': 'symlink', 'target': ''}], 'target'),
    ([{'path': '/a', 'type': 'dir', 'mode': '0755'}], 'absolute'),
    ([{'path': 'a/../b', 'type': 'dir', 'mode': '0755'}], "'..'"),
    ([{'path': 'a//b', 'type': 'dir', 'mode': '0755'}], 'empty'),
    ([{'path': './a', 'type': 'dir', 'mode': '0755'}], "'.'"),
    ([{'path': 'a', 'type': 'dir', 'mode': '0755'}, {'path': 'a', 'type': 'dir', 'mode': '0755'}], 'duplicate'),
    ([{'path': 'a/b', 'type': 'dir', 'mode': '0755'}], 'missing'),
    ([{'path': 'a', 'type': 'symlink', 'target': 'x'}, {'path': 'a/b', 'type': 'dir', 'mode': '0755'}], 'a symlink'),
])
def test_invalid_manifest_entries(entries, fragment):
    with pytest.raises(m.ManifestError) as exc:
        m.Manifest(entries)
    assert fragment in exc.value.msg


def test_save_and_load_roundtrip(tmp_path, sample):
    manifest = m.build_manifest(sample)
    path = str(tmp_path / 'manifest.json')
    m.save_manifest(path, manifest, source_digest='sha256:' + '0' * 64)
    doc = json.loads(open(path).read())
    assert doc['version'] == 1 and doc['digest'] == manifest.digest and doc['entries'] == manifest.entries
    loaded, extra = m.load_manifest_document(path)
    assert loaded == manifest
    assert extra['source_digest'] == 'sha256:' + '0' * 64
    assert m.load_manifest(path) == manifest


def test_load_detects_corruption(tmp_path, sample):
    manifest = m.build_manifest(sample)
    doc = manifest.to_json()
    doc['entries'][0]['mode'] = '0700'
    path = tmp_path / 'm.json'
    path.write_text(json.dumps(doc))
    with pytest.raises(m.ManifestError, match='corrupt'):
        m.load_manifest(str(path))
    path.write_text(json.dumps({'version': 2, 'entries': []}))
    with pytest.raises(m.ManifestError, match='version'):
        m.load_manifest(str(path))
    path.write_text('{not json')
    with pytest.raises(m.ManifestError, match='cannot read'):
        m.load_manifest(str(path))
    with pytest.raises(m.ManifestError, match='does not exist'):
        m.load_manifest(str(tmp_path / 'missing.json'))


# -- verify_tree -------------------------------------------------------------------------
def test_verify_tree_exact_match(sample):
    assert m.verify_tree(sample, m.build_manifest(sample)) == []


def test_verify_tree_reports_every_problem(tmp_path, sample):
    manifest = m.build_manifest(sample)
    os.unlink(os.path.join(sample, 'app/Kernel.php'))                       # missing
    make_tree(sample, files={'extra.php': b'x'})                            # extra
    os.chmod(os.path.join(sample, 'bin/console'), 0o700)                    # mode
    with open(os.path.join(sample, 'index.php'), 'r+b') as f:               # content, same size
        f.write(b'<?PHP')
    os.rmdir(os.path.join(sample, 'empty'))                                 # type
    make_tree(sample, files={'empty': b''})
    os.unlink(os.path.join(sample, 'public/index.php'))                     # target
    os.symlink('../bin/console', os.path.join(sample, 'public/index.php'))
    os.mkfifo(os.path.join(sample, 'pipe'))                                 # odd type, extra
    problems = m.verify_tree(sample, manifest)
    assert problems == [
        'missing: app/Kernel.php (file)',
        'mode: bin/console is 0700, expected 0755',
        'type: empty is file, expected dir',
        'extra: extra.php (file)',
        'sha256: index.php has content %s, expected %s' % (sha(b'<?PHP echo 1;'), sha(b'<?php echo 1;')),
        'extra: pipe (fifo)',
        'target: public/index.php -> ../bin/console, expected -> ../index.php',
    ]


def test_verify_tree_size(sample):
    manifest = m.build_manifest(sample)
    with open(os.path.join(sample, 'index.php'), 'ab') as f:
        f.write(b'more')
    assert m.verify_tree(sample, manifest) == ['size: index.php is 17 bytes, expected 13']


def test_verify_tree_missing_root(tmp_path, sample):
    assert m.verify_tree(str(tmp_path / 'nope'), m.build_manifest(sample))[0].startswith('missing')


def test_compare_manifests(sample):
    a = m.build_manifest(sample)
    entries = a.entries
    entries = [e for e in entries if e['path'] != 'empty']
    assert m.compare_manifests(a, m.Manifest(entries)) == ['missing: empty (dir)']
    assert m.compare_manifests(a, a) == []


# -- shared paths --------------------------------------------------------------------------
def test_with_shared_replaces_and_links(sample):
    source = m.build_manifest(sample)
    tree = m.with_shared(source, ['app', 'var/log', 'bin/console'])
    assert tree.get('app') == {'path': 'app', 'type': 'symlink', 'target': '../../shared/app'}
    assert 'app/Kernel.php' not in tree
    assert tree.get('var') == {'path': 'var', 'type': 'dir', 'mode': '0755'}
    assert tree.get('var/log') == {'path': 'var/log', 'type': 'symlink', 'target': '../../../shared/var/log'}
    assert tree.get('bin/console')['target'] == '../../../shared/bin/console'
    assert tree.digest != source.digest
    assert m.with_shared(source, []) == source


@pytest.mark.parametrize('shared, fragment', [
    (['../x'], "'..'"), (['/abs'], 'absolute'), ([''], 'empty'), (['a', 'a'], 'twice'), (['a', 'a/b'], 'inside'),
    (['a/./b'], "'.'"),
])
def test_invalid_shared_paths(shared, fragment):
    with pytest.raises(m.ManifestError) as exc:
        m.check_shared_paths(shared)
    assert fragment in exc.value.msg


def test_shared_below_file_is_refused(sample):
    with pytest.raises(m.ManifestError, match="'index.php' is a file"):
        m.with_shared(m.build_manifest(sample), ['index.php/x'])


def test_shared_link_target_resolves_to_shared_dir(tmp_path):
    root = tmp_path / 'root'
    (root / 'shared' / 'var' / 'log').mkdir(parents=True)
    (root / 'releases' / 'r' / 'var').mkdir(parents=True)
    link = root / 'releases' / 'r' / 'var' / 'log'
    os.symlink(m.shared_link_target('var/log'), link)
    assert os.path.samefile(link, root / 'shared' / 'var' / 'log')
