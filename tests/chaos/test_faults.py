# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Faults of the host that no input causes: here, a deploy root whose filesystem is full.

The bed's deploy root is copied onto a small tmpfs of its own, mounted over it (``mount --bind``),
and the application's ``shared/storage`` is filled until the filesystem has no byte free, as a
runaway log would. Then, as a user types them: a rollback and a rollback back must work, a cleanup
must work, and a deploy must be refused with a message that says there is no space and how much
is needed, with what is live untouched and nothing left behind. At the end the mounts are removed,
which puts the bed's own root back as it was. The figures go to .build/chaos/faults.jsonl.

The other faults (a failing health check, a failing migration, an nginx configuration nginx
rejects, a corrupt artifact store, a bad signature, a lock held by someone else) are proven by the
Molecule scenarios ``failure`` and ``delta``; an SSH connection cut at each step is the crash
suite's ``controller`` mode (test_crash.py). docs/reliability.md lists them all.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time

import pytest

from harness import ROOT  # pylint: disable=import-error

MOUNT = '/mnt/stagehand-full'
FILLER = ROOT + '/shared/storage/runaway.log'


def _record(work: str, **fields) -> None:
    with open(os.path.join(work, 'faults.jsonl'), 'a') as f:
        f.write(json.dumps(fields) + '\n')


def _free(bed) -> int:
    return int(bed.sh("df --output=avail -B1 %s | tail -n 1" % ROOT).strip())


def _leftovers(bed) -> list[str]:
    return bed.sh('ls -A %s/.stagehand/stage 2>/dev/null; ls -d %s/.stagehand/upload-* 2>/dev/null || true' % (ROOT, ROOT)).split()


@pytest.fixture
def full_root(bed):
    """The deploy root on a full 48 MB tmpfs; the bed's own root again afterwards."""
    before = bed.live()['release']
    bed.sh('mkdir -p %s && mount -t tmpfs -o size=48m,mode=0755 stagehand-full %s && cp -a %s/. %s/ && mount --bind %s %s'
           % (MOUNT, MOUNT, ROOT, MOUNT, MOUNT, ROOT))
    try:
        # fill it: dd stops at ENOSPC (rc 1), then the last blocks go to a second file
        bed.sh('dd if=/dev/zero of=%s bs=1M 2>/dev/null; dd if=/dev/zero of=%s.tail bs=4k 2>/dev/null; '
               'dd if=/dev/zero of=%s.last bs=1 2>/dev/null; true' % (FILLER, FILLER, FILLER))
        assert _free(bed) == 0, bed.sh('df -B1 %s' % ROOT)
        yield bed
    finally:
        bed.sh('umount %s; umount %s; rmdir %s' % (ROOT, MOUNT, MOUNT), check=False)
        assert bed.live()['release'] == before


def _step(work, bed, name, playbook, *args, expect_rc0=True, says=None):
    started = time.monotonic()
    live_before = bed.live()['release']
    run = bed.run(playbook, *args)
    live = bed.live()
    status, header = bed.http('/')
    left = _leftovers(bed)
    lock = bed.lock_holder()
    clear = says is None or re.search(says, run.output, re.IGNORECASE) is not None
    ok = ((run.rc == 0) == expect_rc0 and clear and not live['problems'] and status == 200 and header == live['release']
          and not left and lock is None)
    _record(work, fault='disk full', step=name, rc=run.rc, ok=ok, live_before=live_before, live_after=live['release'],
            http=[status, header], leftovers=left, seconds=round(time.monotonic() - started, 1))
    assert (run.rc == 0) == expect_rc0, '%s: rc %d: %s' % (name, run.rc, run.output[-3000:])
    assert clear, '%s: no %r in: %s' % (name, says, run.output[-3000:])
    assert not live['problems'] and status == 200 and header == live['release'], (name, live, status, header)
    assert not left, '%s left %s' % (name, left)
    assert lock is None, '%s left the lock held: %s' % (name, lock)
    return live['release'], live_before


@pytest.mark.sample
def test_a_full_disk_lets_rollback_and_cleanup_through_and_refuses_a_deploy(full_root, work):
    bed = full_root
    assert _free(bed) == 0
    after, before = _step(work, bed, 'rollback', 'rollback.yml')
    assert after != before, 'the rollback on a full disk did not switch'
    back = _step(work, bed, 'rollback back', 'rollback.yml', '-e', 'release=%s' % before)[0]
    assert back == before
    _step(work, bed, 'cleanup', 'cleanup.yml', '-e', 'keep=2')
    # the cleanup freed what it removed: fill that too before the deploy
    bed.sh('dd if=/dev/zero of=%s.again bs=4k 2>/dev/null; dd if=/dev/zero of=%s.again1 bs=1 2>/dev/null; true' % (FILLER, FILLER))
    assert _free(bed) == 0
    live = _step(work, bed, 'deploy', 'deploy.yml', '-e', 'version=v1', '-e', 'release=full-disk',
                 expect_rc0=False, says=r'space')[0]
    assert live == before, 'a refused deploy changed what is live'
    assert not bed.sh('ls -d %s/releases/full-disk 2>/dev/null || true' % ROOT).strip()


@pytest.mark.sample
def test_a_corrupt_compose_in_the_store_is_quarantined_and_composed_again(bed, work):
    # a tag of its own, composed into the store (build.yml) but never deployed: the host lacks its
    # files, so the deploy needs the stored artifact, as a CI pipeline's build would be used
    tag = 'store-mended'
    subprocess.run(['git', '-C', bed.repo, 'tag', '-f', tag, 'v1'], check=True, stdout=subprocess.DEVNULL)
    built = bed.run('build.yml', '-e', 'version=%s' % tag)
    assert built.rc == 0, built.output[-3000:]
    with open(os.path.join(bed.store, 'chaos', 'refs', '%s.json' % tag)) as f:
        compose = json.load(f)['compose_id'].split(':')[-1]
    artifact = os.path.join(bed.store, 'chaos', 'composes', compose, 'artifact.tar.gz')
    with open(artifact, 'r+b') as f:  # a disk error in the middle of the stored artifact
        f.seek(os.path.getsize(artifact) // 2)
        f.write(b'\0' * 64)
    live_before = bed.live()['release']
    started = time.monotonic()
    run = bed.run('deploy.yml', '-e', 'version=%s' % tag)
    live = bed.live()
    status, header = bed.http('/')
    quarantine = os.path.join(bed.store, 'chaos', 'quarantine')
    ok = (run.rc == 0 and 'quarantine' in run.output and os.path.isdir(quarantine) and live['release'] == tag
          and not live['problems'] and (status, header) == (200, tag))
    _record(work, fault='corrupt compose in the store', step='deploy', rc=run.rc, ok=ok, live_before=live_before,
            live_after=live['release'], http=[status, header], leftovers=_leftovers(bed), seconds=round(time.monotonic() - started, 1))
    assert run.rc == 0, run.output[-3000:]
    assert 'quarantine' in run.output, run.output[-3000:]
    assert os.listdir(quarantine), 'nothing in %s' % quarantine
    assert live['release'] == tag and not live['problems'], live
    assert (status, header) == (200, tag)
    back = bed.run('rollback.yml', '-e', 'release=%s' % live_before)
    assert back.rc == 0, back.output[-3000:]
