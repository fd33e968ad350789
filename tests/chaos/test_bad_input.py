# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The bad-input suite: every case is a command a user could type, with one bad value in it.

Each case runs deploy.yml, rollback.yml or cleanup.yml as a user does (harness.Bed.run) on the bed
where v2 is live. It passes when the command

* ends with rc != 0,
* prints a clear message: the expected fragment (naming the bad value or what is wrong with it) is
  in the output, and no raw failure is (a Python traceback, MODULE FAILURE, "unknown error"), and
* changed nothing on the host: the snapshot of harness.Bed.snapshot() (the deploy root's tree with
  modes, sizes, times and link targets, every file's digest, the history, the database checksums,
  the top directories and the site's answer) is the same before and after. One difference is
  allowed, and counted apart: a refusal that needs the host to decide (the lock, the release
  asked for, the keep value, the schema guard) is recorded there as one history line with
  outcome ``refused``, which also touches the ``.stagehand`` directory. "Strictly unchanged"
  counts the cases without even that line; every refusal made on the controller (names,
  versions, artifacts, stagehand.yml, roots, hooks, variable types) must be strictly unchanged.

Artifacts are built on the controller in the bed's work directory with Python's tarfile, zipfile and
gzip. The figures go to .build/chaos/badinput.jsonl (one line per case, written before the
assertions, so failures count too); tests/chaos/report.py prints the table of docs/reliability.md.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import shutil
import socket
import subprocess
import tarfile
import typing as t
import zipfile

import pytest

from harness import ROOT, Bed  # pylint: disable=import-error

# What a refusal must never print: a raw failure instead of a message for the user.
RAW = ('Traceback (most recent call last)', 'MODULE FAILURE', 'unknown error', 'An exception occurred during task execution')

PHP = b'<?php header("X-Release: bad"); echo "bad input was deployed\\n";\n'


# -- artifacts, built on the controller ----------------------------------------------------------
def _info(name: str, kind: bytes = tarfile.REGTYPE, mode: int = 0o644, size: int = 0, link: str = '') -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.size = size
    info.linkname = link
    info.mtime = 1767268800
    return info


def _base() -> list[tuple[tarfile.TarInfo, bytes | None]]:
    """A small release that would deploy: public/index.php."""
    return [(_info('public', tarfile.DIRTYPE, 0o755), None), (_info('public/index.php', size=len(PHP)), PHP)]


def _file(name: str, data: bytes = b'x\n', mode: int = 0o644) -> tuple[tarfile.TarInfo, bytes]:
    return _info(name, size=len(data), mode=mode), data


def _member(name: str, kind: bytes, link: str = '', mode: int = 0o644) -> tuple[tarfile.TarInfo, None]:
    info = _info(name, kind, mode, link=link)
    if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        info.devmajor, info.devminor = 1, 3
    return info, None


def _tar_bytes(members: list[tuple[tarfile.TarInfo, bytes | None]], fmt: int = tarfile.GNU_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode='w', format=fmt) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _gz(raw: bytes) -> bytes:
    return gzip.compress(raw, mtime=0)


def tgz(*extra: tuple[tarfile.TarInfo, bytes | None], base: bool = True) -> t.Callable[[str], bytes]:
    return lambda _work: _gz(_tar_bytes((_base() if base else []) + list(extra)))


def _corrupt(_work: str) -> bytes:
    good = _gz(_tar_bytes(_base() + [_file('public/big.txt', os.urandom(64 * 1024))]))
    return good[:10] + bytes(b ^ 0x5A for b in good[10:200]) + good[200:]


def _truncated(_work: str) -> bytes:
    good = _gz(_tar_bytes(_base() + [_file('public/big.txt', os.urandom(64 * 1024))]))
    return good[:len(good) // 2]


def _bad_crc(_work: str) -> bytes:
    good = bytearray(_gz(_tar_bytes(_base())))
    good[-8] ^= 0xFF  # the CRC32 of the gzip trailer
    return bytes(good)


def _zip(_work: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, 'w') as z:
        z.writestr('public/index.php', PHP)
    return buf.getvalue()


def _ustar_long(_work: str) -> bytes:
    return _gz(_tar_bytes(_base() + [_file('public/' + 'n' * 300 + '.txt')], fmt=tarfile.PAX_FORMAT))


def _stagehand_yml(text: str) -> t.Callable[[str], bytes]:
    return tgz(_file('stagehand.yml', text.encode()))


def put_artifact(bed: Bed, name: str, build: t.Callable[[str], bytes]) -> str:
    directory = os.path.join(bed.work, 'bad-artifacts')
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, name)
    with open(path, 'wb') as f:
        f.write(build(bed.work))
    return path


# -- artifact directories -------------------------------------------------------------------------
def _dir_base(path: str) -> None:
    os.makedirs(os.path.join(path, 'public'))
    with open(os.path.join(path, 'public', 'index.php'), 'wb') as f:
        f.write(PHP)


def _with(action: t.Callable[[str], None], base: bool = True) -> t.Callable[[str], None]:
    def make(path: str) -> None:
        if base:
            _dir_base(path)
        else:
            os.makedirs(path)
        action(path)
    return make


def _write(rel: str, data: bytes = b'x\n', mode: int | None = None) -> t.Callable[[str], None]:
    def make(path: str) -> None:
        full = os.path.join(path, rel)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, 'wb') as f:
            f.write(data)
        if mode is not None:
            os.chmod(full, mode)
    return make


def _symlink(rel: str, target: str) -> t.Callable[[str], None]:
    return lambda path: os.symlink(target, os.path.join(path, rel))


def _socket(rel: str) -> t.Callable[[str], None]:
    def make(path: str) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(os.path.join(path, rel))
        finally:
            sock.close()
    return make


def put_dir(bed: Bed, name: str, make: t.Callable[[str], None]) -> str:
    path = os.path.join(bed.work, 'bad-artifacts', name)
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    make(path)
    return path


# -- the cases ------------------------------------------------------------------------------------
class Case(t.NamedTuple):
    kind: str
    name: str
    playbook: str
    args: t.Callable[[Bed], list[str]]
    expect: str          # a fragment of the message (a regular expression, case-insensitive)
    slow: bool = False   # not in the CI sample (STAGEHAND_CHAOS_FULL=1 runs it)


def ev(**values: t.Any) -> t.Callable[[Bed], list[str]]:
    """-e with a JSON document: values of any type, with newlines or quotes, exactly as given."""
    return lambda _bed: ['-e', json.dumps(values)]


def deploy_v2(**values: t.Any) -> t.Callable[[Bed], list[str]]:
    return lambda _bed: ['-e', json.dumps(dict({'version': 'v2'}, **values))]


def artifact(name: str, build: t.Callable[[str], bytes], **values: t.Any) -> t.Callable[[Bed], list[str]]:
    return lambda bed: ['-e', json.dumps(dict({'artifact': put_artifact(bed, name, build)}, **values))]


def artifact_dir(name: str, make: t.Callable[[str], None]) -> t.Callable[[Bed], list[str]]:
    return lambda bed: ['-e', json.dumps({'artifact': put_dir(bed, name, make)})]


def q(value: str) -> str:
    """The bad value as a message fragment (a regular expression matching it literally)."""
    return re.escape(value)


CASES: list[Case] = [
    # release names given to a deploy
    Case('release name', 'traversal', 'deploy.yml', deploy_v2(release='../evil'), q('../evil')),
    Case('release name', 'dot-first', 'deploy.yml', deploy_v2(release='.hidden'), q('.hidden')),
    Case('release name', 'slash', 'deploy.yml', deploy_v2(release='a/b'), q('a/b')),
    Case('release name', 'absolute', 'deploy.yml', deploy_v2(release='/etc'), q('/etc')),
    Case('release name', '129 chars', 'deploy.yml', deploy_v2(release='r' * 129), '129 characters long'),
    Case('release name', 'space', 'deploy.yml', deploy_v2(release='v 9'), q('v 9')),
    Case('release name', 'trailing newline', 'deploy.yml', deploy_v2(release='v9\n'), q('v9\\n')),
    Case('release name', 'shell', 'deploy.yml', deploy_v2(release='$(reboot)'), q('$(reboot)')),
    Case('release name', 'artifact with a bad name', 'deploy.yml',
         artifact('.hidden.tar.gz', tgz()), q('.hidden')),
    # versions (git refs of deploy_repo)
    Case('version', 'unknown tag', 'deploy.yml', ev(version='v99'), q('v99')),
    Case('version', 'option injection', 'deploy.yml', ev(version='--output=/tmp/x'), q('--output=/tmp/x')),
    Case('version', 'shell', 'deploy.yml', ev(version='v2; touch /tmp/pwned'), q('v2; touch /tmp/pwned')),
    Case('version', 'range', 'deploy.yml', ev(version='v1..v2'), q('v1..v2')),
    Case('version', 'trailing newline', 'deploy.yml', ev(version='v2\n'), q('v2\\n')),
    Case('version', 'version and artifact', 'deploy.yml', ev(version='v2', artifact='/nonexistent.tar.gz'), 'exactly one'),
    Case('version', 'neither', 'deploy.yml', ev(), 'exactly one'),
    Case('version', 'repo missing', 'deploy.yml', ev(version='v2', deploy_repo='/nonexistent/repo'), q('/nonexistent/repo')),
    # artifact archives (.tar.gz built with tarfile and gzip)
    Case('artifact archive', 'member ../x', 'deploy.yml', artifact('a-dotdot.tar.gz', tgz(_file('../x'))), q("'../x'")),
    Case('artifact archive', 'member public/../../x', 'deploy.yml',
         artifact('a-dotdot2.tar.gz', tgz(_file('public/../../x'))), q('public/../../x')),
    Case('artifact archive', 'absolute member /etc/x', 'deploy.yml', artifact('a-abs.tar.gz', tgz(_file('/etc/x'))), q('/etc/x')),
    Case('artifact archive', 'symlink to ../../etc/passwd', 'deploy.yml',
         artifact('a-sym-rel.tar.gz', tgz(_member('public/passwd', tarfile.SYMTYPE, '../../etc/passwd'))), q('public/passwd')),
    Case('artifact archive', 'symlink to /etc/shadow', 'deploy.yml',
         artifact('a-sym-abs.tar.gz', tgz(_member('public/shadow', tarfile.SYMTYPE, '/etc/shadow'))), q('public/shadow')),
    Case('artifact archive', 'file below a symlink out', 'deploy.yml',
         artifact('a-sym-below.tar.gz', tgz(_member('public/l', tarfile.SYMTYPE, '/tmp'), _file('public/l/x'))), q('public/l')),
    Case('artifact archive', 'hardlink to ../../etc/passwd', 'deploy.yml',
         artifact('a-hard-rel.tar.gz', tgz(_member('public/passwd', tarfile.LNKTYPE, '../../etc/passwd'))), q('../../etc/passwd')),
    Case('artifact archive', 'hardlink to /etc/passwd', 'deploy.yml',
         artifact('a-hard-abs.tar.gz', tgz(_member('public/passwd', tarfile.LNKTYPE, '/etc/passwd'))), q('/etc/passwd')),
    Case('artifact archive', 'char device', 'deploy.yml',
         artifact('a-chr.tar.gz', tgz(_member('public/null', tarfile.CHRTYPE))), q('public/null')),
    Case('artifact archive', 'block device', 'deploy.yml',
         artifact('a-blk.tar.gz', tgz(_member('public/sda', tarfile.BLKTYPE))), q('public/sda')),
    Case('artifact archive', 'fifo', 'deploy.yml', artifact('a-fifo.tar.gz', tgz(_member('public/pipe', tarfile.FIFOTYPE))),
         q('public/pipe')),
    Case('artifact archive', 'setuid file', 'deploy.yml',
         artifact('a-suid.tar.gz', tgz(_file('public/suid', mode=0o4755))), 'setuid'),
    Case('artifact archive', 'setgid directory', 'deploy.yml',
         artifact('a-sgid.tar.gz', tgz(_member('public/sgid', tarfile.DIRTYPE, mode=0o2755))), 'setgid'),
    Case('artifact archive', 'world-writable file', 'deploy.yml',
         artifact('a-ow.tar.gz', tgz(_file('public/ww.php', mode=0o666))), q('public/ww.php')),
    Case('artifact archive', 'world-writable directory', 'deploy.yml',
         artifact('a-owd.tar.gz', tgz(_member('public/up', tarfile.DIRTYPE, mode=0o777))), q('public/up')),
    Case('artifact archive', 'file and directory of one name', 'deploy.yml',
         artifact('a-below-file.tar.gz', tgz(_file('public/index.php/x'))), q('public/index.php')),
    Case('artifact archive', 'corrupt gzip', 'deploy.yml', artifact('a-corrupt.tar.gz', _corrupt), 'corrupt'),
    Case('artifact archive', 'truncated gzip', 'deploy.yml', artifact('a-truncated.tar.gz', _truncated), 'truncated'),
    Case('artifact archive', 'gzip trailer CRC wrong', 'deploy.yml', artifact('a-crc.tar.gz', _bad_crc), 'corrupt'),
    Case('artifact archive', 'zip named .tar.gz', 'deploy.yml', artifact('a-zip.tar.gz', _zip), 'a-zip.tar.gz'),
    Case('artifact archive', 'plain tar named .tar.gz', 'deploy.yml',
         artifact('a-plain.tar.gz', lambda _w: _tar_bytes(_base())), 'a-plain.tar.gz'),
    Case('artifact archive', 'zero bytes', 'deploy.yml', artifact('a-zero.tar.gz', lambda _w: b''), 'a-zero.tar.gz'),
    Case('artifact archive', 'empty archive', 'deploy.yml', artifact('a-empty.tar.gz', tgz(base=False)), 'empty'),
    Case('artifact archive', '300-char member name', 'deploy.yml', artifact('a-long.tar.gz', _ustar_long), 'n' * 40),
    Case('artifact archive', 'no public/ (web root)', 'deploy.yml',
         artifact('a-nopublic.tar.gz', tgz(_file('src/app.php', PHP), base=False)), 'public'),
    Case('artifact archive', '.zip file', 'deploy.yml', artifact('a.zip', _zip), q('a.zip')),
    Case('artifact archive', 'does not exist', 'deploy.yml', ev(artifact='/nonexistent/a.tar.gz'), q('/nonexistent/a.tar.gz')),
    # artifact directories
    Case('artifact directory', 'symlink to /etc/shadow', 'deploy.yml',
         artifact_dir('d-sym-abs', _with(_symlink('public/shadow', '/etc/shadow'))), q('public/shadow')),
    Case('artifact directory', 'symlink out of the tree', 'deploy.yml',
         artifact_dir('d-sym-rel', _with(_symlink('public/up', '../../..'))), q('public/up')),
    Case('artifact directory', 'fifo', 'deploy.yml', artifact_dir('d-fifo', _with(lambda p: os.mkfifo(os.path.join(p, 'public', 'pipe')))),
         q('public/pipe')),
    Case('artifact directory', 'socket', 'deploy.yml', artifact_dir('d-sock', _with(_socket('public/s'))), q('public/s')),
    Case('artifact directory', 'setuid file', 'deploy.yml', artifact_dir('d-suid', _with(_write('public/suid', mode=0o4755))), 'setuid'),
    Case('artifact directory', 'world-writable file', 'deploy.yml',
         artifact_dir('d-ow', _with(_write('public/ww.php', mode=0o666))), q('public/ww.php')),
    Case('artifact directory', 'empty directory', 'deploy.yml', artifact_dir('d-empty', _with(lambda p: None, base=False)), 'empty'),
    Case('artifact directory', 'no public/ (web root)', 'deploy.yml',
         artifact_dir('d-nopublic', _with(_write('src/app.php', PHP), base=False)), 'public'),
    # stagehand.yml of an artifact, and of a version of the repository
    Case('stagehand.yml', 'not YAML', 'deploy.yml', artifact('y-notyaml.tar.gz', _stagehand_yml('version: [1\n')), 'not valid YAML'),
    Case('stagehand.yml', 'a list', 'deploy.yml', artifact('y-list.tar.gz', _stagehand_yml('- version: 1\n')), 'must be a mapping'),
    Case('stagehand.yml', 'version 2', 'deploy.yml', artifact('y-v2.tar.gz', _stagehand_yml('version: 2\n')), 'version 2'),
    Case('stagehand.yml', 'unknown key', 'deploy.yml', artifact('y-key.tar.gz', _stagehand_yml('version: 1\nbuidl: []\n')), 'buidl'),
    Case('stagehand.yml', 'build as a string', 'deploy.yml',
         artifact('y-build.tar.gz', _stagehand_yml('version: 1\nbuild: composer install\n')), 'composer install'),
    Case('stagehand.yml', 'shared ../etc', 'deploy.yml',
         artifact('y-shared-up.tar.gz', _stagehand_yml('version: 1\nshared: [../etc]\n')), q('../etc')),
    Case('stagehand.yml', 'shared /etc/passwd', 'deploy.yml',
         artifact('y-shared-abs.tar.gz', _stagehand_yml('version: 1\nshared: [/etc/passwd]\n')), q('/etc/passwd')),
    Case('stagehand.yml', 'include ../x', 'deploy.yml',
         artifact('y-include.tar.gz', _stagehand_yml('version: 1\ninclude: [../x]\n')), q('../x')),
    Case('stagehand.yml', 'platform.php a list', 'deploy.yml',
         artifact('y-php.tar.gz', _stagehand_yml('version: 1\nplatform: {php: [">=8.2"]}\n')), 'platform.php'),
    Case('stagehand.yml', 'platform unknown key', 'deploy.yml',
         artifact('y-plat-key.tar.gz', _stagehand_yml('version: 1\nplatform: {python: "3"}\n')), 'python'),
    # refused in phase platform before the compose (issue 14): the message says so
    Case('stagehand.yml', 'platform php no host has', 'deploy.yml',
         artifact('y-php99.tar.gz', _stagehand_yml('version: 1\nplatform: {php: ">=99"}\n')),
         r'refused in phase platform .*does not satisfy >=99\. Found before building'),
    Case('stagehand.yml', 'platform extension no host has', 'deploy.yml',
         artifact('y-ext-missing.tar.gz', _stagehand_yml('version: 1\nplatform: {extensions: [no_such_ext]}\n')),
         r'refused in phase platform .*missing: no_such_ext\. Found before building'),
    Case('composer.json', 'extension no host has', 'deploy.yml',
         artifact('c-ext-missing.tar.gz', tgz(_file('composer.json', b'{"require": {"php": ">=8.0", "ext-no_such_ext": "*"}}'))),
         r'refused in phase platform .*missing: no_such_ext\. Found before building'),
    Case('stagehand.yml', 'platform.extensions a string', 'deploy.yml',
         artifact('y-ext.tar.gz', _stagehand_yml('version: 1\nplatform: {extensions: json}\n')), 'extensions'),
    Case('stagehand.yml', 'a directory', 'deploy.yml',
         artifact('y-dir.tar.gz', tgz(_member('stagehand.yml', tarfile.DIRTYPE, mode=0o755))), 'stagehand.yml'),
    Case('stagehand.yml', 'bad YAML in a git version', 'deploy.yml', ev(version='bad-yml'), 'not valid YAML'),
    Case('stagehand.yml', 'build command missing in a git version', 'deploy.yml', ev(version='bad-build'),
         'no-such-build-tool'),
    # rollback targets
    Case('rollback target', 'unknown release', 'rollback.yml', ev(release='v99'), q('v99')),
    Case('rollback target', 'traversal', 'rollback.yml', ev(release='../v1'), q('../v1')),
    Case('rollback target', 'absolute', 'rollback.yml', ev(release='/etc'), q('/etc')),
    Case('rollback target', 'trailing newline', 'rollback.yml', ev(release='v1\n'), q('v1\\n')),
    Case('rollback target', 'failed release', 'rollback.yml', ev(release='v4-broken-health'), q('v4-broken-health')),
    Case('rollback target', 'incomplete release', 'rollback.yml', ev(release='stray'), q('stray')),
    Case('rollback target', 'a file in releases/', 'rollback.yml', ev(release='notadir'), q('notadir')),
    # keep values of a cleanup
    Case('keep', '0', 'cleanup.yml', ev(keep=0), 'keep'),
    Case('keep', '-1', 'cleanup.yml', ev(keep=-1), '-1'),
    Case('keep', 'word', 'cleanup.yml', lambda _bed: ['-e', 'keep=all'], 'all'),
    Case('keep', '1.5', 'cleanup.yml', ev(keep=1.5), q('1.5')),
    Case('keep', 'empty', 'cleanup.yml', lambda _bed: ['-e', 'keep='], 'keep'),
    Case('keep', 'a list', 'cleanup.yml', ev(keep=[3]), 'keep'),
    # deploy roots
    Case('deploy root', '/', 'deploy.yml', deploy_v2(deploy_root='/'), "'/'"),
    Case('deploy root', '/etc', 'cleanup.yml', ev(deploy_root='/etc'), q('/etc')),
    Case('deploy root', 'relative', 'deploy.yml', deploy_v2(deploy_root='srv/www/chaos'), q('srv/www/chaos')),
    Case('deploy root', 'not normalised', 'rollback.yml', ev(deploy_root='/srv/www/../../etc'), q('/srv/www/../../etc')),
    Case('deploy root', '/srv', 'deploy.yml', deploy_v2(deploy_root='/srv'), q('/srv')),
    Case('deploy root', '/usr/local/app', 'deploy.yml', deploy_v2(deploy_root='/usr/local/app'), q('/usr/local/app')),
    Case('deploy root', 'shared/ of a root', 'cleanup.yml', ev(deploy_root=ROOT + '/shared'), q(ROOT + '/shared')),
    Case('deploy root', 'a release of a root', 'rollback.yml', ev(deploy_root=ROOT + '/releases/v1'), q(ROOT + '/releases/v1')),
    # hook paths
    Case('hook path', 'missing absolute file', 'deploy.yml', deploy_v2(deploy_before_switch=['/nonexistent/hook.yml']),
         q('/nonexistent/hook.yml')),
    Case('hook path', 'missing relative file', 'deploy.yml', deploy_v2(deploy_hooks={'refresh': 'nohook.yml'}), 'nohook.yml'),
    Case('hook path', 'a directory', 'deploy.yml', deploy_v2(deploy_after_stage=['/etc']), q('/etc')),
    Case('hook path', 'unknown hook name', 'deploy.yml', deploy_v2(deploy_hooks={'restart': 'x.yml'}), 'restart'),
    Case('hook path', 'hooks dir missing', 'rollback.yml',
         ev(deploy_hooks={'refresh': 'refresh.yml'}, deploy_hooks_dir='/nonexistent/hooks'), q('/nonexistent/hooks')),
    Case('hook path', 'not a string', 'deploy.yml', deploy_v2(deploy_hooks={'stop': 5}), 'stop'),
    # wrong types in the role variables
    Case('role variable type', 'deploy_mode', 'deploy.yml', deploy_v2(deploy_mode='blue'), 'blue'),
    Case('role variable type', 'deploy_fast', 'deploy.yml', deploy_v2(deploy_fast='maybe'), 'deploy_fast'),
    Case('role variable type', 'deploy_lock_ttl', 'cleanup.yml', ev(deploy_lock_ttl='soon'), 'deploy_lock_ttl'),
    Case('role variable type', 'deploy_health_timeout', 'deploy.yml', deploy_v2(deploy_health_timeout='ten'), 'deploy_health_timeout'),
    Case('role variable type', 'deploy_shared_paths', 'deploy.yml', deploy_v2(deploy_shared_paths={'a': 1}), 'deploy_shared_paths'),
    Case('role variable type', 'deploy_env_extra', 'deploy.yml', deploy_v2(deploy_env_extra='X=1'), 'deploy_env_extra'),
    Case('role variable type', 'deploy_migrations', 'deploy.yml', deploy_v2(deploy_migrations='perhaps'), 'deploy_migrations'),
    Case('role variable type', 'deploy_memcached_port', 'deploy.yml', deploy_v2(deploy_memcached_port='eleven'), 'deploy_memcached_port'),
    Case('role variable type', 'deploy_composer_args', 'deploy.yml', deploy_v2(deploy_composer_args={'x': 1}), 'deploy_composer_args'),
    Case('role variable type', 'deploy_post_commands', 'deploy.yml', deploy_v2(deploy_post_commands={'reload': 'php'}),
         'deploy_post_commands'),
    Case('role variable type', 'deploy_app list', 'deploy.yml', deploy_v2(deploy_app=['a', 'b']), 'deploy_app'),
    Case('role variable type', 'deploy_app bad name', 'deploy.yml', deploy_v2(deploy_app='../x'), q('../x')),
    Case('role variable type', 'deploy_env_extra quote', 'deploy.yml', deploy_v2(deploy_env_extra={'X': 'a"b'}), 'deploy_env_extra X'),
    Case('role variable type', 'allow_irreversible', 'deploy.yml', deploy_v2(allow_irreversible='perhaps'), 'perhaps'),
    Case('role variable type', 'restore_db', 'rollback.yml', ev(restore_db='perhaps'), 'perhaps'),
    Case('role variable type', 'deploy_rollback_fast', 'rollback.yml', ev(deploy_rollback_fast='x'), 'deploy_rollback_fast'),
    Case('role variable type', 'deploy_rollback_post_commands', 'rollback.yml', ev(deploy_rollback_post_commands='reboot'),
         'deploy_rollback_post_commands'),
]


# What CI runs (scripts/test chaos): two or three cases of every kind, those that prove a refusal on
# the controller and on the host apart; STAGEHAND_CHAOS_FULL=1 runs them all (docs/reliability.md).
SAMPLED_CASES = {
    ('release name', 'traversal'), ('release name', 'slash'),
    ('version', 'unknown tag'), ('version', 'option injection'),
    ('artifact archive', 'member ../x'), ('artifact archive', 'symlink to /etc/shadow'),
    ('artifact archive', 'hardlink to /etc/passwd'), ('artifact archive', 'setuid file'),
    ('artifact archive', 'truncated gzip'), ('artifact archive', 'empty archive'),
    ('artifact directory', 'fifo'),
    ('stagehand.yml', 'not YAML'), ('stagehand.yml', 'shared ../etc'), ('composer.json', 'extension no host has'),
    ('rollback target', 'unknown release'),
    ('keep', '0'),
    ('deploy root', '/'), ('deploy root', 'not normalised'),
    ('hook path', 'missing absolute file'),
    ('role variable type', 'deploy_mode'), ('role variable type', 'deploy_env_extra'),
}


def _params() -> list[t.Any]:
    params = []
    for case in CASES:
        marks = [pytest.mark.badinput]
        if not case.slow and (case.kind, case.name) in SAMPLED_CASES:
            marks.append(pytest.mark.sample)
        params.append(pytest.param(case, id='%s: %s' % (case.kind, case.name), marks=marks))
    return params


def _message(output: str) -> str:
    """The first failure message of the run (the "msg" of the first failed task), for the record."""
    for line in output.splitlines():
        if 'FAILED!' in line or line.startswith('ERROR!') or line.startswith('[ERROR]'):
            if '=>' in line:
                try:
                    doc = json.loads(line.split('=>', 1)[1])
                    return str(doc.get('msg') or doc.get('message') or doc)[:600]
                except ValueError:
                    pass
            return line[:600]
    return output[-600:]


def _diff(before: dict[str, t.Any], after: dict[str, t.Any]) -> list[str]:
    """The lines of the snapshots that differ (for the record), at most 20."""
    lines = []
    for key in sorted(before):
        if before[key] != after[key]:
            if isinstance(before[key], str):
                old, new = set(before[key].splitlines()), set(after[key].splitlines())
                lines += ['%s: -%s' % (key, line) for line in sorted(old - new)] + ['%s: +%s' % (key, line) for line in sorted(new - old)]
            else:
                lines.append('%s: %r -> %r' % (key, before[key], after[key]))
    return lines[:20]


STATE = ROOT + '/.stagehand'


def _without_state(listing: str) -> list[str]:
    """The lines of a tree or digest listing without the state directory's own entry and the history."""
    return [line for line in listing.splitlines()
            if not line.startswith(('.stagehand ', '.stagehand/history.jsonl ')) and not line.endswith(STATE + '/history.jsonl')]


def refusal_line_only(before: dict[str, t.Any], after: dict[str, t.Any]) -> bool:
    """Whether the only change is one history line with outcome ``refused`` appended (and the state directory's mtime)."""
    old, new = before['history'].splitlines(), after['history'].splitlines()
    if len(new) != len(old) + 1 or new[:len(old)] != old:
        return False
    try:
        if json.loads(new[-1]).get('outcome') != 'refused':
            return False
    except ValueError:
        return False
    for key in before:
        if key == 'history':
            continue
        if key in ('tree', 'digests'):
            if _without_state(before[key]) != _without_state(after[key]):
                return False
        elif before[key] != after[key]:
            return False
    return True


def _record(bed: Bed, case: Case, **fields: t.Any) -> None:
    with open(os.path.join(bed.work, 'badinput.jsonl'), 'a') as f:
        f.write(json.dumps(dict({'kind': case.kind, 'case': case.name}, **fields)) + '\n')


def _git(repo: str, *args: str) -> None:
    env = dict(os.environ, GIT_CONFIG_NOSYSTEM='1', GIT_CONFIG_GLOBAL='/dev/null', GIT_AUTHOR_NAME='Bad Input',
               GIT_AUTHOR_EMAIL='bad@stagehand.invalid', GIT_COMMITTER_NAME='Bad Input', GIT_COMMITTER_EMAIL='bad@stagehand.invalid',
               GIT_AUTHOR_DATE='2026-01-09T12:00:00+0000', GIT_COMMITTER_DATE='2026-01-09T12:00:00+0000')
    subprocess.run(['git', '-C', repo] + list(args), check=True, env=env, stdout=subprocess.DEVNULL)


@pytest.fixture(scope='module')
def bad_bed(bed):
    """The bed with what some cases need: a failed release, an incomplete one, a file in releases/,
    and tags of the app repository with a bad stagehand.yml. Removed again at the end."""
    repo = bed.repo
    for tag, text in (('bad-yml', 'version: [1\n'), ('bad-build', 'version: 1\nbuild:\n  - [no-such-build-tool, --x]\n')):
        _git(repo, 'checkout', '-q', '--detach', 'v2')
        with open(os.path.join(repo, 'stagehand.yml'), 'w') as f:
            f.write(text)
        _git(repo, 'commit', '-q', '-a', '-m', 'bad stagehand.yml')
        _git(repo, 'tag', '-f', tag)
    _git(repo, 'checkout', '-q', 'main')
    run = bed.run('deploy.yml', '-e', 'version=v4-broken-health', '-e', 'deploy_health_timeout=2')
    assert run.rc != 0, run.output[-3000:]
    bed.sh('mkdir %s/releases/stray && echo stray > %s/releases/stray/RELEASE && touch %s/releases/notadir' % ((ROOT,) * 3))
    assert bed.http('/') == (200, 'v2')
    yield bed
    bed.sh('rm -rf %s/releases/stray %s/releases/notadir' % (ROOT, ROOT))
    run = bed.run('cleanup.yml', '-e', 'keep=5')
    assert run.rc == 0, run.output[-3000:]
    live = bed.live()
    assert live['release'] == 'v2' and live['problems'] == [], live


@pytest.mark.parametrize('case', _params())
def test_bad_input_is_refused_and_changes_nothing(bad_bed, case):
    bed = bad_bed
    args = case.args(bed)
    before = bed.snapshot()
    run = bed.run(case.playbook, *args)
    after = bed.snapshot()
    raw = [marker for marker in RAW if marker in run.output]
    clear = re.search(case.expect, run.output, re.IGNORECASE) is not None
    refused = run.rc != 0 and clear and not raw
    changed = sorted(key for key in before if before[key] != after[key])
    unchanged = not changed or refusal_line_only(before, after)
    _record(bed, case, refused=refused, unchanged=unchanged, strict=not changed, rc=run.rc, seconds=round(run.seconds, 1),
            message=_message(run.output), raw=raw, changed=changed, diff=_diff(before, after))
    if run.rc == 0:
        # Accepted: put v2 back so that the next cases start from the bed they expect.
        bed.run('rollback.yml', '-e', 'release=v2')
    assert run.rc != 0, 'accepted: %s' % run.output[-3000:]
    assert not raw, 'a raw failure (%s) instead of a message: %s' % (raw, run.output[-3000:])
    assert clear, 'no %r in the message: %s' % (case.expect, run.output[-3000:])
    assert unchanged, 'the host changed: %s' % _diff(before, after)
