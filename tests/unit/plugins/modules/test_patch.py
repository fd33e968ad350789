# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import stat
import tempfile

import pytest

from ansible_collections.stagehand.deploy.plugins.module_utils import _patch
from ansible_collections.stagehand.deploy.plugins.modules.patch import main

WORKDIR = '.stagehand-patch'
CONFIG = b"<?php return ['debug' => true];\n"
INDEX = b'<?php echo "v1";\n'


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write(path, data: bytes, mode: int = 0o644) -> None:
    path.write_bytes(data)
    os.chmod(path, mode)


@pytest.fixture
def app(tmp_path):
    """A small application tree: files with various modes, a symlink, a subdirectory."""
    root = tmp_path / 'app'
    root.mkdir()
    write(root / 'config.php', CONFIG, 0o640)
    write(root / 'index.php', INDEX)
    (root / 'bin').mkdir()
    write(root / 'bin' / 'run.sh', b'#!/bin/sh\necho v1\n', 0o755)
    write(root / 'obsolete.txt', b'obsolete\n', 0o600)
    os.symlink('index.php', root / 'entry')
    (root / 'public').mkdir()
    write(root / 'public' / 'robots.txt', b'User-agent: *\n')
    return root


def warnings_text(result) -> str:
    """The warnings of a result as text (ansible-core 2.19 returns them as structured events)."""
    return json.dumps(result.get('warnings', []))


def run(run_module, app, operations, **kwargs):
    check_mode = kwargs.pop('check_mode', False)
    diff = kwargs.pop('diff', False)
    args = dict(path=str(app), operations=operations, **kwargs)
    return run_module(main, args, check_mode=check_mode, diff=diff)


# -- each operation -----------------------------------------------------------
def test_create_with_missing_parents(run_module, app):
    result = run(run_module, app, [
        {'op': 'create', 'path': 'deep/er/new.php', 'content': '<?php // new\n', 'mode': '0600'},
        {'op': 'create', 'path': 'deep/other.txt', 'content': 'x'},
    ])
    assert result['changed'] is True and not result.get('failed'), result
    assert (app / 'deep' / 'er' / 'new.php').read_bytes() == b'<?php // new\n'
    assert stat.S_IMODE(os.stat(app / 'deep' / 'er' / 'new.php').st_mode) == 0o600
    assert stat.S_IMODE(os.stat(app / 'deep' / 'other.txt').st_mode) == 0o644
    assert stat.S_IMODE(os.stat(app / 'deep' / 'er').st_mode) == 0o755
    assert result['operations'][0] == {
        'path': 'deep/er/new.php', 'op': 'create', 'changed': True, 'before_sha256': None,
        'after_sha256': sha(b'<?php // new\n'), 'before_target': None, 'after_target': None,
    }
    assert result['recovered'] is False
    assert not (app / WORKDIR).exists(), 'the default workdir is removed when empty'


def test_update_keeps_mode_and_checks_sha256(run_module, app):
    result = run(run_module, app, [
        {'op': 'update', 'path': 'config.php', 'content': "<?php return [];\n", 'sha256': 'sha256:' + sha(CONFIG).upper()},
    ])
    assert result['changed'] is True, result
    assert (app / 'config.php').read_bytes() == b"<?php return [];\n"
    assert stat.S_IMODE(os.stat(app / 'config.php').st_mode) == 0o640
    assert result['operations'][0]['before_sha256'] == sha(CONFIG)
    assert result['operations'][0]['after_sha256'] == sha(b"<?php return [];\n")


def test_update_with_wrong_sha256_fails_and_changes_nothing(run_module, app, snapshot):
    before = snapshot(str(app))
    result = run(run_module, app, [
        {'op': 'create', 'path': 'new.txt', 'content': 'new'},
        {'op': 'update', 'path': 'config.php', 'content': 'x', 'sha256': sha(b'something else')},
    ])
    assert result['failed'] is True
    assert 'sha256 precondition failed' in result['msg'] and sha(b'something else') in result['msg']
    assert snapshot(str(app)) == before


def test_update_from_src_mode_change_only_and_hard_links(run_module, app, tmp_path):
    src = tmp_path / 'new-config.php'
    src.write_bytes(b'<?php // from src\n')
    os.link(app / 'index.php', tmp_path / 'index-twin.php')
    result = run(run_module, app, [
        {'op': 'update', 'path': 'config.php', 'src': str(src), 'mode': 0o600},
        {'op': 'update', 'path': 'index.php', 'content': 'v2'},
        {'op': 'update', 'path': 'bin/run.sh', 'content': '#!/bin/sh\necho v1\n', 'mode': '0700'},
    ])
    assert result['changed'] is True, result
    assert (app / 'config.php').read_bytes() == b'<?php // from src\n'
    assert stat.S_IMODE(os.stat(app / 'config.php').st_mode) == 0o600
    assert [op['changed'] for op in result['operations']] == [True, True, True]
    assert stat.S_IMODE(os.stat(app / 'bin' / 'run.sh').st_mode) == 0o700
    # The original inode is replaced, never written in place: other hard links keep the old content.
    assert (tmp_path / 'index-twin.php').read_bytes() == INDEX
    assert (app / 'index.php').read_bytes() == b'v2'


def test_update_of_missing_file_or_symlink_is_refused(run_module, app, snapshot):
    before = snapshot(str(app))
    for path, fragment in (('nope.php', 'does not exist'), ('entry', 'not a regular file'), ('bin', 'not a regular file')):
        result = run(run_module, app, [{'op': 'update', 'path': path, 'content': 'x'}])
        assert result['failed'] is True and fragment in result['msg'], result
    assert snapshot(str(app)) == before


def test_delete(run_module, app, snapshot):
    result = run(run_module, app, [
        {'op': 'delete', 'path': 'obsolete.txt', 'sha256': sha(b'obsolete\n')},
        {'op': 'delete', 'path': 'entry'},
        {'op': 'delete', 'path': 'never-existed.txt', 'sha256': sha(b'whatever')},
    ])
    assert result['changed'] is True, result
    assert not os.path.lexists(app / 'obsolete.txt') and not os.path.lexists(app / 'entry')
    assert [op['changed'] for op in result['operations']] == [True, True, False]
    assert result['operations'][0]['after_sha256'] is None
    assert result['operations'][1]['before_target'] == 'index.php'
    before = snapshot(str(app))
    for operation, fragment in (
        ({'op': 'delete', 'path': 'index.php', 'sha256': sha(b'other')}, 'sha256 precondition failed'),
        ({'op': 'delete', 'path': 'bin'}, 'a directory'),
    ):
        result = run(run_module, app, [operation])
        assert result['failed'] is True and fragment in result['msg'], result
    assert snapshot(str(app)) == before


def test_symlink_replaces_file_symlink_or_nothing_never_a_directory(run_module, app, snapshot):
    result = run(run_module, app, [
        {'op': 'symlink', 'path': 'entry', 'target': 'bin/run.sh'},
        {'op': 'symlink', 'path': 'obsolete.txt', 'target': '../shared/obsolete.txt'},
        {'op': 'symlink', 'path': 'links/current', 'target': '../index.php'},
    ])
    assert result['changed'] is True, result
    assert os.readlink(app / 'entry') == 'bin/run.sh'
    assert os.readlink(app / 'obsolete.txt') == '../shared/obsolete.txt'
    assert os.readlink(app / 'links' / 'current') == '../index.php'
    assert (app / 'links' / 'current').read_bytes() == INDEX
    assert result['operations'][0]['before_target'] == 'index.php'
    assert result['operations'][0]['after_target'] == 'bin/run.sh'
    assert result['operations'][1]['before_sha256'] == sha(b'obsolete\n')
    before = snapshot(str(app))
    result = run(run_module, app, [{'op': 'symlink', 'path': 'public', 'target': 'bin'}])
    assert result['failed'] is True and 'is a directory; a symlink may replace only a file' in result['msg'], result
    assert snapshot(str(app)) == before


def test_create_over_existing_differing_file_is_refused(run_module, app, snapshot):
    before = snapshot(str(app))
    for operation in (
        {'op': 'create', 'path': 'index.php', 'content': 'different'},
        {'op': 'create', 'path': 'index.php', 'content': INDEX.decode(), 'mode': '0600'},  # same content, other mode
        {'op': 'create', 'path': 'entry', 'content': INDEX.decode()},  # a symlink is not the wanted file
    ):
        result = run(run_module, app, [operation])
        assert result['failed'] is True, result
        assert 'already exists and differs' in result['msg'] and 'use op=update' in result['msg']
    assert snapshot(str(app)) == before
    result = run(run_module, app, [{'op': 'create', 'path': 'index.php', 'content': INDEX.decode()}])
    assert result['changed'] is False and not result.get('failed')
    assert snapshot(str(app)) == before


# -- idempotence, check mode, diff ------------------------------------------------
CHANGESET = [
    {'op': 'update', 'path': 'config.php', 'content': "<?php return ['debug' => false];\n", 'mode': '0600',
     'sha256': sha(CONFIG)},
    {'op': 'create', 'path': 'deep/new.txt', 'content': 'new\n'},
    {'op': 'delete', 'path': 'obsolete.txt', 'sha256': sha(b'obsolete\n')},
    {'op': 'symlink', 'path': 'entry', 'target': 'bin/run.sh'},
]


def test_second_identical_run_is_not_changed(run_module, app, snapshot):
    assert run(run_module, app, CHANGESET)['changed'] is True
    after_first = snapshot(str(app))
    second = run(run_module, app, CHANGESET)
    assert second['changed'] is False and not second.get('failed'), second
    assert [op['changed'] for op in second['operations']] == [False] * 4
    assert snapshot(str(app)) == after_first
    # The sha256 precondition no longer matches, but the file is already in the desired state.
    assert second['operations'][0]['before_sha256'] == sha(b"<?php return ['debug' => false];\n")


def test_check_mode_changes_nothing_and_is_honest(run_module, app, snapshot):
    before = snapshot(str(app))
    result = run(run_module, app, CHANGESET, check_mode=True)
    assert result['changed'] is True and [op['changed'] for op in result['operations']] == [True] * 4
    assert snapshot(str(app)) == before
    assert run(run_module, app, CHANGESET)['changed'] is True
    after = snapshot(str(app))
    result = run(run_module, app, CHANGESET, check_mode=True)
    assert result['changed'] is False
    assert snapshot(str(app)) == after
    # Check mode still refuses what a real run would refuse.
    result = run(run_module, app, [{'op': 'create', 'path': 'index.php', 'content': 'x'}], check_mode=True)
    assert result['failed'] is True and snapshot(str(app)) == after


@pytest.mark.parametrize('check_mode', [False, True])
def test_diff_lists_each_changed_entry(run_module, app, tmp_path, check_mode):
    big = tmp_path / 'big.txt'
    big.write_bytes(b'x' * (_patch.DIFF_MAX_BYTES + 1))
    result = run(run_module, app, CHANGESET + [
        {'op': 'create', 'path': 'logo.png', 'content': '\x00PNG'},
        {'op': 'create', 'path': 'big.txt', 'src': str(big)},
        {'op': 'create', 'path': 'index.php', 'content': INDEX.decode()},  # no-op: no diff entry
    ], diff=True, check_mode=check_mode)
    assert result['changed'] is True, result
    diff = result['diff']
    assert isinstance(diff, list) and len(diff) == 6
    assert diff[0] == {
        'before_header': 'config.php (mode 0640)', 'after_header': 'config.php (mode 0600)',
        'before': CONFIG.decode(), 'after': "<?php return ['debug' => false];\n",
    }
    assert diff[1] == {'before_header': 'deep/new.txt (absent)', 'after_header': 'deep/new.txt (mode 0644)',
                       'before': '', 'after': 'new\n'}
    assert diff[2]['before'] == 'obsolete\n' and diff[2]['after'] == '' and diff[2]['after_header'] == 'obsolete.txt (absent)'
    assert diff[3]['before'] == 'symlink -> index.php\n' and diff[3]['after'] == 'symlink -> bin/run.sh\n'
    assert diff[4]['after'].startswith('(binary file: 4 bytes, sha256 %s' % sha(b'\x00PNG'))
    assert diff[5]['after'].startswith('(large file: %d bytes' % (_patch.DIFF_MAX_BYTES + 1))
    assert os.path.exists(app / 'logo.png') is not check_mode


def test_no_diff_key_without_diff_mode(run_module, app):
    assert 'diff' not in run(run_module, app, CHANGESET)


# -- validate ------------------------------------------------------------------
def test_failing_validate_restores_every_file_byte_for_byte(run_module, app, snapshot):
    before = snapshot(str(app))
    result = run(run_module, app, CHANGESET + [
        {'op': 'create', 'path': 'a/b/c/new.php', 'content': '<?php\n'},
        {'op': 'update', 'path': 'bin/run.sh', 'content': 'broken', 'mode': '0644'},
    ], validate='sh -c "echo checking %s; echo broken config >&2; exit 3"')
    assert result['failed'] is True, result
    assert result['rc'] == 3 and result['validate']['rc'] == 3
    assert result['stdout'] == 'checking %s\n' % app
    assert result['stderr'] == 'broken config\n'
    assert result['restored'] is True
    assert 'validate command' in result['msg'] and 'rolled back and the tree restored' in result['msg']
    # Contents, modes, mtimes, link counts and symlink targets are back; created files and dirs are gone.
    assert snapshot(str(app)) == before


def test_validate_runs_on_the_patched_tree(run_module, app):
    result = run(run_module, app, CHANGESET, validate='test -f %s/deep/new.txt')
    assert result['changed'] is True and not result.get('failed'), result
    assert result['validate']['rc'] == 0 and result['validate']['cmd'] == ['test', '-f', '%s/deep/new.txt' % app]


def test_validate_command_that_cannot_run_rolls_back(run_module, app, snapshot):
    before = snapshot(str(app))
    result = run(run_module, app, CHANGESET, validate='/nonexistent/validator --flag')
    assert result['failed'] is True and result['restored'] is True, result
    assert 'No such file' in result['stderr']
    assert snapshot(str(app)) == before


def test_validate_not_run_when_nothing_changes(run_module, app):
    result = run(run_module, app, [{'op': 'create', 'path': 'index.php', 'content': INDEX.decode()}], validate='false')
    assert result['changed'] is False and not result.get('failed') and 'validate' not in result


# -- bad input: failed and nothing changed ------------------------------------------
@pytest.mark.parametrize('operations, fragment', [
    ([{'op': 'create', 'path': '/etc/passwd', 'content': 'x'}], 'is absolute'),
    ([{'op': 'create', 'path': '../outside.txt', 'content': 'x'}], 'contains ".."'),
    ([{'op': 'create', 'path': 'public/../../outside.txt', 'content': 'x'}], 'contains ".."'),
    ([{'op': 'create', 'path': 'escape/evil.txt', 'content': 'x'}], 'outside the tree'),
    ([{'op': 'create', 'path': 'escape/sub/evil.txt', 'content': 'x'}], 'outside the tree'),
    ([{'op': 'delete', 'path': 'escape/victim.txt'}], 'outside the tree'),
    ([{'op': 'create', 'path': '.', 'content': 'x'}], 'names the tree itself'),
    ([{'op': 'create', 'path': 'a.txt', 'content': 'x'}, {'op': 'update', 'path': './a.txt', 'content': 'y'}],
     'already used by operations[0]'),
    ([{'op': 'update', 'path': 'public/robots.txt', 'content': 'x'},
      {'op': 'update', 'path': 'alias/robots.txt', 'content': 'y'}], 'both target'),
    ([{'op': 'symlink', 'path': 'dir', 'target': '/etc'}, {'op': 'create', 'path': 'dir/x', 'content': 'x'}],
     'may not touch a path and its contents'),
    ([{'op': 'explode', 'path': 'index.php'}], 'explode'),
    ([{'op': 'create', 'path': 'n.txt', 'content': 'x', 'src': '/etc/hostname'}], 'mutually exclusive'),
    ([{'op': 'create', 'path': 'n.txt', 'src': '/nonexistent/file'}], 'does not exist'),
    ([{'op': 'create', 'path': 'n.txt', 'src': 'relative/file'}], 'must be an absolute path'),
    ([{'op': 'create', 'path': 'n.txt'}], 'needs content or src'),
    ([{'op': 'create', 'path': 'n.txt', 'content': 'x', 'mode': 'u+rwx'}], "use an octal string such as '0644'"),
    ([{'op': 'create', 'path': 'n.txt', 'content': 'x', 'mode': '0999'}], "use an octal string"),
    ([{'op': 'update', 'path': 'index.php', 'content': 'x', 'sha256': 'abc'}], '64 hexadecimal digits'),
    ([{'op': 'create', 'path': 'n.txt', 'content': 'x', 'sha256': sha(b'x')}], 'sha256 not allowed with op=create'),
    ([{'op': 'delete', 'path': 'index.php', 'content': 'x'}], 'content not allowed with op=delete'),
    ([{'op': 'symlink', 'path': 'l'}], 'needs target'),
    ([{'op': 'symlink', 'path': 'l', 'target': 'x', 'mode': '0644'}], 'mode not allowed with op=symlink'),
    ([{'op': 'create', 'path': 'n.txt', 'content': 'x', 'owner': 'no-such-user-hopefully'}], 'not a known user'),
    ([{'op': 'create', 'path': 'n.txt', 'content': 'x', 'group': 'no-such-group-hopefully'}], 'not a known group'),
    ([{'op': 'create', 'path': WORKDIR + '/x', 'content': 'x'}], 'the work directory'),
    ([{'op': 'create', 'path': 'index.php/x', 'content': 'x'}], 'is not a directory'),
    ([{'op': 'create', 'path': 'ok.txt', 'content': 'x'}, {'op': 'update', 'path': 'missing.txt', 'content': 'x'}],
     'does not exist'),
])
def test_bad_input_fails_and_changes_nothing(run_module, app, tmp_path, snapshot, operations, fragment):
    outside = tmp_path / 'outside'
    outside.mkdir()
    (outside / 'victim.txt').write_text('keep me')
    os.symlink(str(outside), app / 'escape')
    os.symlink('public', app / 'alias')
    before = snapshot(str(app))
    before_outside = snapshot(str(tmp_path))
    result = run(run_module, app, operations)
    assert result['failed'] is True, result
    assert fragment in result['msg'], result['msg']
    assert snapshot(str(app)) == before
    assert snapshot(str(tmp_path)) == before_outside


def test_missing_tree_and_bad_workdir(run_module, app, tmp_path, snapshot):
    before = snapshot(str(tmp_path))
    result = run_module(main, {'path': str(tmp_path / 'missing'), 'operations': []})
    assert result['failed'] is True and 'does not exist' in result['msg']
    for workdir, fragment in (
        (str(app), 'is the tree'),
        (str(tmp_path), 'is the tree'),
        (str(app / 'index.php'), 'not a directory'),
        (str(tmp_path / 'no' / 'parent'), 'does not exist'),
    ):
        result = run(run_module, app, CHANGESET, workdir=workdir)
        assert result['failed'] is True and fragment in result['msg'], (workdir, result)
    assert snapshot(str(tmp_path)) == before


def test_workdir_on_another_filesystem_is_refused(run_module, app, snapshot):
    candidates = [d for d in ('/dev/shm', tempfile.gettempdir(), '/run', '/var/tmp') if os.path.isdir(d) and os.access(d, os.W_OK)]
    other = next((d for d in candidates if os.stat(d).st_dev != os.stat(app).st_dev), None)
    if other is None:
        pytest.skip('no writable directory on another filesystem than %s' % app)
    workdir = tempfile.mkdtemp(dir=other)
    try:
        before = snapshot(str(app))
        result = run(run_module, app, CHANGESET, workdir=workdir)
        assert result['failed'] is True and 'another filesystem' in result['msg'], result
        assert snapshot(str(app)) == before
        assert os.listdir(workdir) == []
    finally:
        os.rmdir(workdir)


def test_explicit_workdir_is_kept_empty(run_module, app, tmp_path):
    workdir = tmp_path / 'work'
    result = run(run_module, app, CHANGESET, workdir=str(workdir))
    assert result['changed'] is True, result
    assert os.listdir(workdir) == []
    assert not (app / WORKDIR).exists()


# -- failures inside the transaction ---------------------------------------------
def test_staging_failure_changes_nothing(run_module, app, snapshot, monkeypatch):
    before = snapshot(str(app))

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, 'No space left on device')

    monkeypatch.setattr(os, 'symlink', no_space)
    result = run(run_module, app, CHANGESET)
    assert result['failed'] is True and 'staging failed' in result['msg'] and 'No space left' in result['msg']
    assert snapshot(str(app)) == before


def test_failure_in_the_middle_of_deploy_rolls_back(run_module, app, snapshot, monkeypatch):
    before = snapshot(str(app))
    real_rename = os.rename
    journal = str(app / WORKDIR / _patch.JOURNAL_NAME)
    calls = []

    def failing_rename(src, dst):
        if os.path.exists(journal):
            calls.append(dst)
            if len(calls) == 3:
                raise OSError(errno.EIO, 'Input/output error')
        return real_rename(src, dst)

    monkeypatch.setattr(os, 'rename', failing_rename)
    result = run(run_module, app, CHANGESET)
    assert result['failed'] is True and result['restored'] is True, result
    assert 'Input/output error' in result['msg']
    assert len(calls) > 3, 'the rollback renamed the originals back'
    assert snapshot(str(app)) == before


def test_link_not_supported_falls_back_to_rename(run_module, app, snapshot, monkeypatch):
    def no_links(*args, **kwargs):
        raise OSError(errno.EPERM, 'Operation not permitted')

    monkeypatch.setattr(os, 'link', no_links)
    before = snapshot(str(app))
    result = run(run_module, app, CHANGESET, validate='false')
    assert result['failed'] is True and result['restored'] is True
    assert snapshot(str(app)) == before
    result = run(run_module, app, CHANGESET)
    assert result['changed'] is True and os.readlink(app / 'entry') == 'bin/run.sh'


def test_file_changed_after_staging_is_not_overwritten(run_module, app, snapshot, monkeypatch):
    real_fill = _patch.Stage.fill_cache

    def fill_then_someone_edits(self):
        real_fill(self)
        write(app / 'index.php', b'edited by someone else\n')

    monkeypatch.setattr(_patch.Stage, 'fill_cache', fill_then_someone_edits)
    operations = CHANGESET + [{'op': 'update', 'path': 'index.php', 'content': 'v2'}]
    before = snapshot(str(app))
    result = run(run_module, app, operations)
    assert result['failed'] is True and 'changed since it was staged' in result['msg'], result
    after = snapshot(str(app))
    assert (app / 'index.php').read_bytes() == b'edited by someone else\n'
    del before['index.php'], after['index.php']
    assert after == before


def test_concurrent_run_is_refused(run_module, app, snapshot):
    fd = os.open(str(app), os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        before = snapshot(str(app))
        result = run(run_module, app, CHANGESET)
        assert result['failed'] is True and 'another patch run' in result['msg']
        assert snapshot(str(app)) == before
    finally:
        os.close(fd)
    assert run(run_module, app, CHANGESET)['changed'] is True


@pytest.mark.skipif(os.geteuid() != 0, reason='changing owners needs root')
def test_owner_and_group(run_module, app):
    operations = [
        {'op': 'create', 'path': 'owned.txt', 'content': 'x', 'owner': '65534', 'group': '65534'},
        {'op': 'update', 'path': 'index.php', 'content': 'v2', 'group': '65534'},
        {'op': 'symlink', 'path': 'owned-link', 'target': 'owned.txt', 'owner': '65534'},
    ]
    result = run(run_module, app, operations)
    assert result['changed'] is True, result
    st = os.stat(app / 'owned.txt')
    assert (st.st_uid, st.st_gid) == (65534, 65534)
    assert os.stat(app / 'index.php').st_gid == 65534 and os.stat(app / 'index.php').st_uid == 0
    assert os.lstat(app / 'owned-link').st_uid == 65534
    assert run(run_module, app, operations)['changed'] is False
    # An owner change alone is a change.
    operations[1]['group'] = '0'
    result = run(run_module, app, operations)
    assert [op['changed'] for op in result['operations']] == [False, True, False]
    assert os.stat(app / 'index.php').st_gid == 0


# -- recovery (in-process simulation; the crash tests kill a real process) ---------------
def _interrupted_deploy(app):
    """Stage and deploy CHANGESET with the library, then stop as if the process had died."""
    tree = os.path.realpath(str(app))
    work = _patch.Workdir(os.path.join(tree, WORKDIR), is_default=True)
    work.check(tree)
    operations = _patch.parse_operations(CHANGESET)
    for operation in operations:
        operation.resolve(tree, work)
    stage = _patch.Stage(operations, work)
    changes = stage.plan()
    stage.fill_cache()
    _patch.Transaction(tree, work, changes).deploy()
    return work


def test_interrupted_run_is_recovered_first(run_module, app, snapshot):
    before = snapshot(str(app))
    work = _interrupted_deploy(app)
    assert (app / 'deep' / 'new.txt').exists() and work.journal.exists()
    interrupted = snapshot(str(app))

    result = run(run_module, app, [{'op': 'create', 'path': 'x.txt', 'content': 'x'}], check_mode=True)
    assert result['changed'] is True and result['recovered'] is False and 'would be rolled back' in result['msg']
    assert 'would be rolled back' in warnings_text(result)
    assert snapshot(str(app)) == interrupted

    result = run(run_module, app, [])
    assert result['changed'] is True and result['recovered'] is True
    assert 'an interrupted patch run was found' in warnings_text(result)
    assert snapshot(str(app)) == before
    assert run(run_module, app, [])['changed'] is False


def test_recovery_then_a_different_changeset(run_module, app, snapshot):
    before = snapshot(str(app))
    _interrupted_deploy(app)
    result = run(run_module, app, [{'op': 'update', 'path': 'index.php', 'content': 'v2'}])
    assert result['recovered'] is True and result['changed'] is True, result
    after = snapshot(str(app))
    assert (app / 'index.php').read_bytes() == b'v2'
    del before['index.php'], after['index.php']
    assert after == before


def test_leftovers_without_journal_are_garbage(run_module, app, snapshot):
    before = snapshot(str(app))
    for name in (_patch.CACHE_NAME, _patch.BACKUP_NAME):
        os.makedirs(app / WORKDIR / name)
        (app / WORKDIR / name / '0').write_text('stale')
    (app / WORKDIR / ('.%s.0123.tmp' % _patch.JOURNAL_NAME)).write_text('{')
    leftover = snapshot(str(app))
    result = run(run_module, app, [], check_mode=True)
    assert result['changed'] is True and snapshot(str(app)) == leftover
    result = run(run_module, app, [])
    assert result['changed'] is True and result['recovered'] is False
    assert snapshot(str(app)) == before


def test_corrupt_journal_stops_everything(run_module, app, snapshot):
    (app / WORKDIR).mkdir()
    (app / WORKDIR / _patch.JOURNAL_NAME).write_text('{"version": 1, "kind": "stagehand.patch", "pay')
    before = snapshot(str(app))
    for check_mode in (True, False):
        result = run(run_module, app, CHANGESET, check_mode=check_mode)
        assert result['failed'] is True, result
        assert 'corrupt' in result['msg'] and _patch.JOURNAL_NAME in result['msg'] and 'by hand' in result['msg']
        assert snapshot(str(app)) == before


def test_journal_with_a_bad_entry_is_refused(run_module, app, snapshot):
    work = _interrupted_deploy(app)
    payload = work.journal.load()
    payload['entries'][0]['target'] = 'relative/path'
    work.journal.write(payload)
    before = snapshot(str(app))
    result = run(run_module, app, [])
    assert result['failed'] is True and 'relative path' in result['msg']
    assert snapshot(str(app)) == before


def test_journal_document_shape(app):
    work = _interrupted_deploy(app)
    document = json.loads((app / WORKDIR / _patch.JOURNAL_NAME).read_text())
    assert document['version'] == 1 and document['kind'] == 'stagehand.patch'
    entries = document['payload']['entries']
    assert [(e['op'], e['path'], e['existed']) for e in entries] == [
        ('update', 'config.php', True), ('create', 'deep/new.txt', False),
        ('delete', 'obsolete.txt', True), ('symlink', 'entry', True),
    ]
    tree = os.path.realpath(str(app))
    assert entries[1]['created_dirs'] == [os.path.join(tree, 'deep')]
    assert all(e['backup'].startswith(work.backup_dir + '/') for e in entries)


def test_journal_naming_paths_outside_the_tree_is_refused(run_module, app, tmp_path, snapshot):
    victim = tmp_path / 'victim.txt'
    victim.write_text('keep me')
    work = _interrupted_deploy(app)
    payload = work.journal.load()
    payload['entries'][0]['target'] = str(victim)
    work.journal.write(payload)
    before = snapshot(str(tmp_path))
    result = run(run_module, app, [])
    assert result['failed'] is True and 'outside the tree' in result['msg'], result
    assert snapshot(str(tmp_path)) == before


def test_journal_writable_by_others_is_not_trusted(run_module, app, tmp_path, snapshot):
    work = _interrupted_deploy(app)
    os.chmod(work.path, 0o777)
    before = snapshot(str(tmp_path))
    result = run(run_module, app, [])
    assert result['failed'] is True and 'cannot be trusted' in result['msg'] and 'mode 0777' in result['msg'], result
    assert snapshot(str(tmp_path)) == before
    os.chmod(work.path, 0o700)
    os.chmod(work.journal.path, 0o666)
    result = run(run_module, app, [])
    assert result['failed'] is True and 'cannot be trusted' in result['msg'], result
    os.chmod(work.journal.path, 0o600)
    assert run(run_module, app, [])['recovered'] is True


def test_shared_writable_workdir_is_refused(run_module, app, tmp_path, snapshot):
    workdir = tmp_path / 'shared-tmp'
    workdir.mkdir()
    os.chmod(workdir, 0o1777)
    before = snapshot(str(tmp_path))
    result = run(run_module, app, CHANGESET, workdir=str(workdir))
    assert result['failed'] is True and 'not be writable by group or others' in result['msg'], result
    assert snapshot(str(tmp_path)) == before


def test_undo_entry_between_link_and_rename_drops_the_extra_link(tmp_path):
    """Deploy stopped after link(original, backup) but before the rename: undo leaves the original alone."""
    target, backup = tmp_path / 'tree' / 'index.php', tmp_path / 'backup' / '0'
    target.parent.mkdir()
    backup.parent.mkdir()
    write(target, INDEX, 0o640)
    os.link(target, backup)
    entry = {'target': str(target), 'backup': str(backup), 'existed': True, 'staged_ino': None, 'created_dirs': []}
    for _attempt in range(2):  # idempotent
        _patch.undo_entry(entry)
        assert not os.path.lexists(backup)
        assert target.read_bytes() == INDEX and os.stat(target).st_nlink == 1
        assert stat.S_IMODE(os.stat(target).st_mode) == 0o640
