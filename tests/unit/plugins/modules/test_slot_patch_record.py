# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Slot patches planned from the slot's record: the stat fingerprint, and what it does and does not trust."""

from __future__ import annotations

import os

import pytest

from ansible_collections.stagehand.deploy.plugins.module_utils import _manifest, _slot_patch
from ansible_collections.stagehand.deploy.plugins.module_utils._release import populate_slot
from ansible_collections.stagehand.deploy.plugins.module_utils._state import DeployRoot
from ansible_collections.stagehand.deploy.plugins.modules.patch import main
from ansible_collections.stagehand.deploy.tests.unit.plugins.modules import test_slot_patch
from ansible_collections.stagehand.deploy.tests.unit.plugins.modules.test_slot_patch import SHARED, args, go_live

env = test_slot_patch.env  # the fixture: two builds, their manifests and archives, a deploy root

V3_INDEX = b'<?php echo "v3";'


@pytest.fixture
def hashed(monkeypatch):
    """The paths of every file read to hash it, by the slot patch and by the tree verification."""
    seen = []
    real = _manifest.hash_file

    def counting(path):
        seen.append(path)
        return real(path)

    monkeypatch.setattr(_manifest, 'hash_file', counting)
    monkeypatch.setattr(_slot_patch, 'hash_file', counting)
    return seen


def slot_meta(env, slot):
    return DeployRoot(env['root']).read_slot_meta(slot)


def two_slots(env, run_module):
    """a = v1 (live), b = v1: both patched once, so both have a record with a fingerprint."""
    run_module(main, args(env, env['man1'], [env['tar1']]))
    go_live(env['root'], 'a')
    run_module(main, args(env, env['man1'], [env['tar1']]))
    go_live(env['root'], 'a')


def test_a_patched_slot_records_the_fingerprint_of_what_it_verified(env, run_module):
    two_slots(env, run_module)
    stats = {}
    _manifest._scan_dir(os.path.join(env['root'], 'slots', 'b'), strict=False, hash_files=False, stats=stats)
    assert slot_meta(env, 'b')['stat_digest'] == _manifest.stat_fingerprint(stats)


def test_the_next_patch_reads_only_what_changes(env, run_module, hashed):
    two_slots(env, run_module)
    del hashed[:]
    result = run_module(main, args(env, env['man2'], [env['tar2'], os.path.join(env['root'], 'slots', 'a')], release='v2'))
    assert result['changed'] is True and result['trusted_record'] is True, result
    slot_b = os.path.join(env['root'], 'slots', 'b')
    # no file of slot b was read to plan or to verify: only files taken from other trees were (as they were linked)
    assert not [p for p in hashed if p.startswith(slot_b + os.sep)], hashed
    problems = _manifest.verify_tree(slot_b, _manifest.with_shared(env['m2'], SHARED, 2))
    assert problems == []
    assert result['steps']['update'] >= 1


def test_a_file_written_in_place_is_not_trusted_and_is_patched_back(env, run_module):
    two_slots(env, run_module)
    index = os.path.join(env['root'], 'slots', 'b', 'public', 'index.php')
    before = os.lstat(index)
    with open(index, 'r+b') as handle:  # same size, other content, same inode: only the mtime tells
        handle.write(b'<?php echo "XX";')
    os.utime(index, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))
    result = run_module(main, args(env, env['man1'], [env['tar1']]))
    assert result['trusted_record'] is False
    assert result['changed'] is True and result['changed_files'] == ['public/index.php']
    with open(index, 'rb') as handle:
        assert handle.read() == b'<?php echo "v1";'
    again = run_module(main, args(env, env['man1'], [env['tar1']]))
    assert again['changed'] is False and again['trusted_record'] is True


def test_an_unrecorded_slot_is_hashed_and_then_recorded(env, run_module, hashed):
    two_slots(env, run_module)
    meta = slot_meta(env, 'b')
    meta.pop('stat_digest')
    DeployRoot(env['root']).write_slot_meta('b', meta)  # as a slot patched by an earlier version
    del hashed[:]
    result = run_module(main, args(env, env['man1'], [env['tar1']]))
    assert result['changed'] is False and result['trusted_record'] is False
    assert any(p.startswith(os.path.join(env['root'], 'slots', 'b') + os.sep) for p in hashed)
    assert slot_meta(env, 'b')['stat_digest']  # refreshed for the next patch, without reporting a change
    del hashed[:]
    assert run_module(main, args(env, env['man1'], [env['tar1']]))['trusted_record'] is True
    assert not hashed


def test_a_slot_filled_aside_is_recorded_too(env):
    populate_slot(env['root'], 'a', env['tar1'], label='v1', shared=SHARED)
    stats = {}
    _manifest._scan_dir(os.path.join(env['root'], 'slots', 'a'), strict=False, hash_files=False, stats=stats)
    assert slot_meta(env, 'a')['stat_digest'] == _manifest.stat_fingerprint(stats)


def test_the_fingerprint_sees_every_kind_of_change(tmp_path):
    top = tmp_path / 't'
    (top / 'd').mkdir(parents=True)
    (top / 'd' / 'f').write_bytes(b'abc')
    os.symlink('d/f', str(top / 'l'))

    def fingerprint():
        stats = {}
        _manifest._scan_dir(str(top), strict=False, hash_files=False, stats=stats)
        return _manifest.stat_fingerprint(stats)

    first = fingerprint()
    assert fingerprint() == first
    os.link(str(top / 'd' / 'f'), str(tmp_path / 'other'))  # a hard link elsewhere (another slot) changes nothing
    assert fingerprint() == first
    changes = [
        lambda: os.chmod(str(top / 'd' / 'f'), 0o600),
        lambda: os.utime(str(top / 'd' / 'f'), ns=(0, 1)),
        lambda: (top / 'd' / 'g').write_bytes(b''),
        lambda: (os.unlink(str(top / 'l')), os.symlink('d/g', str(top / 'l'))),
        lambda: os.chmod(str(top / 'd'), 0o700),
    ]
    seen = {first}
    for change in changes:
        change()
        now = fingerprint()
        assert now not in seen
        seen.add(now)
