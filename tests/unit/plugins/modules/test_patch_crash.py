# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Kill ``patch`` with SIGKILL at every crash point, then prove the next run restores the tree.

A subprocess (``patch_kill_harness.py``) runs the module's ``main()`` with
``os.rename``/``os.replace`` (or more ``os`` functions) wrapped to count calls
and SIGKILL itself at the Nth one. The module is then run again in this
process, with another changeset, and the tree must be exactly the original:
content, modes, mtimes (restored by rename, not rewritten), link counts,
symlink targets, and no leftover at all (the default work directory lives
inside the tree, so any leftover would show up in the snapshot).
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys

import pytest

from ansible_collections.stagehand.deploy.plugins.module_utils._patch import DEFAULT_WORKDIR_NAME, JOURNAL_NAME
from ansible_collections.stagehand.deploy.plugins.modules import patch as patch_module

HARNESS = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'patch_kill_harness.py')
RENAMES = ['rename', 'replace']
# Every call that changes a directory entry or metadata (fsync is left out: killing the process just before an
# fsync leaves the same files as killing it just after the previous call).
MUTATIONS = ['rename', 'replace', 'link', 'unlink', 'remove', 'mkdir', 'rmdir', 'symlink', 'chmod', 'fchmod',
             'chown', 'fchown', 'lchown']


def collections_root() -> str:
    """The sys.path entry under which ``ansible_collections.stagehand.deploy`` is importable."""
    path = patch_module.__file__  # <root>/ansible_collections/stagehand/deploy/plugins/modules/patch.py
    for _level in range(6):
        path = os.path.dirname(path)
    return path


def write(path: str, data: bytes, mode: int) -> None:
    with open(path, 'wb') as f:
        f.write(data)
    os.chmod(path, mode)


def build(base: str) -> str:
    """A fresh tree under ``base`` (removed first) plus a source file outside it; return the tree path."""
    if os.path.lexists(base):
        shutil.rmtree(base)
    app = os.path.join(base, 'app')
    os.makedirs(os.path.join(app, 'bin'))
    os.makedirs(os.path.join(app, 'public'))
    os.makedirs(os.path.join(base, 'src'))
    write(os.path.join(app, 'config.php'), b"<?php return ['debug' => true];\n", 0o640)
    write(os.path.join(app, 'index.php'), b'<?php echo "v1";\n', 0o644)
    write(os.path.join(app, 'bin', 'run.sh'), b'#!/bin/sh\necho v1\n', 0o755)
    write(os.path.join(app, 'obsolete.txt'), b'obsolete\n', 0o600)
    write(os.path.join(app, 'shared.bin'), bytes(range(256)) * 64, 0o644)
    os.link(os.path.join(app, 'shared.bin'), os.path.join(app, 'shared-twin.bin'))  # nlink 2 must survive
    write(os.path.join(app, 'storage'), b'placeholder\n', 0o644)
    write(os.path.join(app, 'public', 'robots.txt'), b'User-agent: *\n', 0o644)
    os.symlink('index.php', os.path.join(app, 'entry'))
    os.symlink('bin/run.sh', os.path.join(app, 'old-link'))
    write(os.path.join(base, 'src', 'new.bin'), bytes(reversed(range(256))) * 64, 0o644)
    return app


def changeset(base: str) -> list[dict]:
    """Several operations of every type (11 operations, so 11 renames when deployed)."""
    return [
        {'op': 'update', 'path': 'config.php', 'content': "<?php return ['debug' => false];\n", 'mode': '0600',
         'sha256': hashlib.sha256(b"<?php return ['debug' => true];\n").hexdigest()},
        {'op': 'update', 'path': 'index.php', 'content': '<?php echo "v2";\n'},
        {'op': 'update', 'path': 'shared.bin', 'src': os.path.join(base, 'src', 'new.bin')},
        {'op': 'create', 'path': 'public/new.txt', 'content': 'new\n'},
        {'op': 'create', 'path': 'deep/a/b/new.php', 'content': '<?php // deep\n', 'mode': '0640'},
        {'op': 'create', 'path': 'deep/a/other.txt', 'content': 'other\n'},
        {'op': 'delete', 'path': 'obsolete.txt'},
        {'op': 'delete', 'path': 'old-link'},
        {'op': 'symlink', 'path': 'entry', 'target': 'bin/run.sh'},
        {'op': 'symlink', 'path': 'storage', 'target': '../shared/storage'},
        {'op': 'symlink', 'path': 'public/current', 'target': '../index.php'},
    ]


def without_mtimes(snap: dict) -> dict:
    return {path: {k: v for k, v in entry.items() if k != 'mtime_ns'} for path, entry in snap.items()}


class Harness:
    """Drives ``patch_kill_harness.py --serve``: one subprocess, one forked child per crash run."""

    def __init__(self, tmp_path) -> None:
        self.tmp_path = tmp_path
        self.base = str(tmp_path / 'case')
        self.runs = 0
        self.server: subprocess.Popen | None = None

    def spec(self, kill_at: int, funcs: list[str], from_start: bool = False, validate: str | None = None,
             operations: list | None = None) -> dict:
        app = os.path.join(self.base, 'app')
        args = {'path': app, 'operations': changeset(self.base) if operations is None else operations}
        if validate is not None:
            args['validate'] = validate
        self.runs += 1
        prefix = str(self.tmp_path / ('run-%d' % self.runs))
        return {'args': args, 'journal': os.path.join(app, DEFAULT_WORKDIR_NAME, JOURNAL_NAME), 'kill_at': kill_at,
                'funcs': funcs, 'from_start': from_start, 'log': prefix + '.log', 'stdout': prefix + '.out',
                'stderr': prefix + '.err'}

    def run(self, kill_at: int, funcs: list[str], from_start: bool = False, validate: str | None = None,
            operations: list | None = None):
        """Run the module in a forked child of the server; return (returncode, stdout, stderr, log lines)."""
        spec = self.spec(kill_at, funcs, from_start, validate, operations)
        if self.server is None:
            self.server = subprocess.Popen(  # pylint: disable=consider-using-with  # lives until close()
                [sys.executable, HARNESS, '--serve'], env=harness_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self.server.stdin is not None and self.server.stdout is not None
        self.server.stdin.write((json.dumps(spec) + '\n').encode())
        self.server.stdin.flush()
        answer = json.loads(self.server.stdout.readline() or b'{"server": "died"}')
        rc = -answer['signal'] if 'signal' in answer else answer['exit']
        return (rc,) + read_outputs(spec)

    def close(self) -> None:
        if self.server is not None:
            self.server.stdin.close()
            self.server.wait(timeout=60)
            self.server.stdout.close()

    def count(self, funcs: list[str], from_start: bool = False, validate: str | None = None,
              operations: list | None = None) -> tuple[int, dict]:
        """Run without killing; return (number of counted calls, module result)."""
        rc, out, err, lines = self.run(0, funcs, from_start, validate, operations)
        assert lines and lines[-1].startswith('done '), (rc, out, err, lines)
        return int(lines[-1].split()[1]), json.loads(out)


def harness_env() -> dict:
    return dict(os.environ, PYTHONPATH=collections_root())


def read_outputs(spec: dict) -> tuple[str, str, list[str]]:
    texts = []
    for key in ('stdout', 'stderr', 'log'):
        with open(spec[key], encoding='utf-8') as f:
            texts.append(f.read())
    return texts[0], texts[1], texts[2].splitlines()


@pytest.fixture
def harness(tmp_path):
    driver = Harness(tmp_path)
    yield driver
    driver.close()


def recover(run_module, app: str) -> dict:
    """The next, normal run after a crash: an empty changeset."""
    result = run_module(patch_module.main, {'path': app, 'operations': []})
    assert not result.get('failed'), result
    return result


def assert_killed(rc: int, out: str, err: str) -> None:
    assert rc == -signal.SIGKILL, 'the harness was not killed (rc=%s)\nstdout: %s\nstderr: %s' % (rc, out, err)
    assert out == '', 'the module finished before the crash point: %s' % out


def test_kill_at_every_rename_during_deploy(harness, run_module, snapshot):
    app = build(harness.base)
    original = snapshot(app)
    renames, result = harness.count(RENAMES)
    assert result['changed'] is True and not result.get('failed'), result
    assert renames == len(changeset(harness.base)) == 11, 'one rename per operation while the journal exists'
    patched = without_mtimes(snapshot(app))
    assert os.readlink(os.path.join(app, 'storage')) == '../shared/storage'

    for kill_at in range(1, renames + 1):
        app = build(harness.base)
        original = snapshot(app)
        rc, out, err, lines = harness.run(kill_at, RENAMES)
        assert_killed(rc, out, err)
        assert lines[-1].split()[:2] == [str(kill_at), 'rename']
        assert os.path.exists(os.path.join(app, DEFAULT_WORKDIR_NAME, JOURNAL_NAME)), 'killed with the journal in place'
        assert snapshot(app) != original or kill_at == 1
        result = recover(run_module, app)
        assert result['recovered'] is True and result['changed'] is True, (kill_at, result)
        assert 'an interrupted patch run was found' in json.dumps(result['warnings'])
        assert snapshot(app) == original, 'not restored after a kill at rename %d' % kill_at
        assert recover(run_module, app)['changed'] is False

    # After the last crash and recovery, the same changeset applies cleanly.
    result = run_module(patch_module.main, {'path': app, 'operations': changeset(harness.base)})
    assert result['changed'] is True and not result.get('failed')
    assert without_mtimes(snapshot(app)) == patched


def test_kill_during_rollback_of_a_failing_validate(harness, run_module, snapshot):
    build(harness.base)
    deploy_renames, _result = harness.count(RENAMES)
    app = build(harness.base)
    original = snapshot(app)
    total, result = harness.count(RENAMES, validate='sh -c "exit 3"')
    assert result['failed'] is True and result['restored'] is True and result['rc'] == 3, result
    assert snapshot(app) == original, 'a failing validate restores the tree'
    # update x3, delete x2 and symlinks over existing entries x2 are renamed back; created entries are unlinked.
    assert total - deploy_renames == 7

    for kill_at in range(deploy_renames + 1, total + 1):
        app = build(harness.base)
        original = snapshot(app)
        rc, out, err, _lines = harness.run(kill_at, RENAMES, validate='sh -c "exit 3"')
        assert_killed(rc, out, err)
        assert os.path.exists(os.path.join(app, DEFAULT_WORKDIR_NAME, JOURNAL_NAME))
        assert snapshot(app) != original, 'the rollback was interrupted half way'
        result = recover(run_module, app)
        assert result['recovered'] is True, result
        assert snapshot(app) == original, 'not restored after a kill at rollback rename %d' % kill_at


def test_kill_during_recovery_then_recover_again(harness, run_module, snapshot):
    """The recovery run itself is killed at each of its renames; the run after it still restores everything."""
    last = len(changeset(harness.base))

    def crashed_tree():
        app = build(harness.base)
        original = snapshot(app)
        assert_killed(*harness.run(last, RENAMES)[:3])  # all operations but the last one deployed
        return app, original

    crashed_tree()
    undo_renames, result = harness.count(RENAMES, operations=[])
    assert result['recovered'] is True and undo_renames == 7, (undo_renames, result)
    for kill_at in range(1, undo_renames + 1):
        app, original = crashed_tree()
        rc, out, err, _lines = harness.run(kill_at, RENAMES, operations=[])
        assert_killed(rc, out, err)
        assert snapshot(app) != original
        result = recover(run_module, app)
        assert result['recovered'] is True, result
        assert snapshot(app) == original, 'not restored after the recovery was killed at rename %d' % kill_at


def test_kill_at_every_filesystem_change_from_the_start(harness, run_module, snapshot):
    """Every mutating call (mkdir, link, symlink, chmod, unlink, rename, ...) of staging, deploy and commit.

    Before the journal exists or while it exists, the next run must give back
    the original tree; once the commit removed the journal, the patched tree
    (and the leftovers are cleaned up either way).
    """
    build(harness.base)
    total, _result = harness.count(MUTATIONS, from_start=True)
    patched = without_mtimes(snapshot(os.path.join(harness.base, 'app')))
    assert total > 40
    outcomes = set()
    for kill_at in range(1, total + 1):
        app = build(harness.base)
        original = snapshot(app)
        rc, out, err, lines = harness.run(kill_at, MUTATIONS, from_start=True)
        assert_killed(rc, out, err)
        _count, func, journal_exists, journal_seen = lines[-1].split()
        result = recover(run_module, app)
        assert result['recovered'] is (journal_exists == '1'), (kill_at, func, result)
        if journal_exists == '1' or journal_seen == '0':
            assert snapshot(app) == original, 'not restored after a kill at call %d (%s)' % (kill_at, func)
            outcomes.add('restored' if journal_exists == '1' else 'never started')
        else:
            assert without_mtimes(snapshot(app)) == patched, 'not committed after a kill at call %d (%s)' % (kill_at, func)
            outcomes.add('committed')
        assert recover(run_module, app)['changed'] is False
    assert outcomes == {'never started', 'restored', 'committed'}


def test_recovery_with_a_different_changeset(harness, run_module, snapshot):
    """Also the plain mode of the harness: one subprocess that kills itself."""
    app = build(harness.base)
    original = snapshot(app)
    spec = harness.spec(6, RENAMES)
    spec_path = str(harness.tmp_path / 'spec.json')
    with open(spec_path, 'w', encoding='utf-8') as f:
        json.dump(spec, f)
    proc = subprocess.run([sys.executable, HARNESS, spec_path], env=harness_env(), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, check=False, timeout=120)
    assert_killed(proc.returncode, proc.stdout.decode(), proc.stderr.decode())
    with open(spec['log'], encoding='utf-8') as f:
        assert f.read().splitlines()[-1] == '6 rename 1 1'
    result = run_module(patch_module.main, {'path': app, 'operations': [
        {'op': 'update', 'path': 'index.php', 'content': 'other'},
        {'op': 'create', 'path': 'deep/x.txt', 'content': 'x'},
    ]})
    assert result['recovered'] is True and result['changed'] is True, result
    after = snapshot(app)
    assert pathlib.Path(app, 'index.php').read_bytes() == b'other'
    assert pathlib.Path(app, 'deep', 'x.txt').read_bytes() == b'x'
    for changed in ('index.php', 'deep', 'deep/x.txt'):
        after.pop(changed)
    original.pop('index.php')
    assert after == original
