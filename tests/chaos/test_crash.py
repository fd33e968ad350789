# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The crash suite: a deploy, rollback or cleanup killed at a chosen step, then run again.

Each case arms one crash point on the host (plugins/module_utils/_crash.py) and starts the command
as a user does. ``remote``: the module kills itself there. ``controller``: the module waits there
while the whole controller side (ansible-playbook, its workers and ssh clients) is SIGKILLed, then
goes on if it still lives. ``both``: the controller and then the waiting module are SIGKILLed.

After every kill: ``current`` names a whole release (every file matches the manifest it was
verified against), the site answers 200 with that release, and the next plain run of the same
command ends with rc 0, the lock free and nothing left in the staging area. The figures go to
.build/chaos/crash.jsonl (docs/reliability.md shows them).
"""

from __future__ import annotations

import itertools
import json
import os
import time

import pytest

from harness import ROOT  # pylint: disable=import-error

MODES = ('remote', 'controller', 'both')
_names = itertools.count(1)

# (command, crash point): the steps the host side goes through, in order, for each command.
POINTS = [
    # a one-host deploy of a git version: the ship module does everything in one call
    ('deploy', 'ship:locked'),
    ('deploy', 'ship:staged'),
    ('deploy', 'switch:switched'),
    ('deploy', 'switch:healthy'),
    ('deploy', 'switch:recorded'),
    # the same deploy through the phases (-e deploy_fast=false): lock, release, switch, history modules
    ('deploy-phases', 'lock:acquired'),
    ('deploy-phases', 'release:staged'),
    ('deploy-phases', 'switch:switched'),
    ('deploy-phases', 'switch:healthy'),
    ('deploy-phases', 'history:written'),
    # rollback: one switch call under the lock
    ('rollback', 'switch:locked'),
    ('rollback', 'switch:switched'),
    ('rollback', 'switch:healthy'),
    ('rollback', 'switch:recorded'),
    # cleanup
    ('cleanup', 'lock:acquired'),
    ('cleanup', 'cleanup:removed-one'),
]
# What CI runs (scripts/test chaos); the rest with STAGEHAND_CHAOS_FULL=1.
SAMPLE = {
    ('deploy', 'switch:switched', 'remote'),
    ('deploy', 'ship:staged', 'both'),
    ('deploy-phases', 'release:staged', 'controller'),
    ('rollback', 'switch:switched', 'remote'),
    ('rollback', 'switch:healthy', 'both'),
    ('cleanup', 'cleanup:removed-one', 'remote'),
}
CASES = [pytest.param(command, point, mode, id='%s-%s-%s' % (command, point.replace(':', '_'), mode),
                      marks=[pytest.mark.crash] + ([pytest.mark.sample] if (command, point, mode) in SAMPLE else []))
         for command, point in POINTS for mode in MODES]


def _arguments(command: str, release: str) -> tuple[str, tuple[str, ...]]:
    if command == 'deploy':
        return 'deploy.yml', ('-e', 'version=v2', '-e', 'release=%s' % release)
    if command == 'deploy-phases':
        return 'deploy.yml', ('-e', 'version=v2', '-e', 'release=%s' % release, '-e', 'deploy_fast=false')
    if command == 'rollback':
        return 'rollback.yml', ()
    return 'cleanup.yml', ('-e', 'keep=2')


def _served_whole(bed) -> tuple[bool, str]:
    live = bed.live()
    status, header = bed.http('/')
    whole = live['release'] is not None and not live['problems'] and status == 200 and header == live['release']
    return whole, 'live %s, problems %s, HTTP %s with X-Release %s' % (live['release'], live['problems'][:3], status, header)


def _record(bed, **fields) -> None:
    with open(os.path.join(bed.work, 'crash.jsonl'), 'a') as f:
        f.write(json.dumps(fields) + '\n')


@pytest.mark.parametrize('command, point, mode', CASES)
def test_a_kill_at_a_step_is_survived(bed, command, point, mode):
    release = 'k%02d' % next(_names)
    playbook, args = _arguments(command, release)
    if command == 'cleanup':
        # something to remove: two more releases
        for extra in ('%sa' % release, '%sb' % release):
            setup = bed.run('deploy.yml', '-e', 'version=v2', '-e', 'release=%s' % extra)
            assert setup.rc == 0, 'the deploy of %s before the cleanup failed: %s' % (extra, setup.output[-3000:])
    bed.arm(point, 'kill' if mode == 'remote' else 'pause')
    started = time.monotonic()
    try:
        if mode == 'remote':
            run = bed.run(playbook, *args)
            reached = bed.wait_reached(timeout=1) is not None
            output = run.output
        else:
            proc = bed.start_run(playbook, *args)
            pid = bed.wait_reached()
            reached = pid is not None
            output = bed.kill_run(proc)
            if mode == 'both' and pid is not None:
                bed.sh('kill -9 %d 2>/dev/null || true' % pid)
    finally:
        bed.disarm()
    bed.wait_quiet()
    assert reached, 'the run never reached %s: %s' % (point, output[-3000:])
    whole_after_kill, how = _served_whole(bed)
    rerun = bed.run(playbook, *args)
    whole_after_rerun, how_after = _served_whole(bed)
    lock = bed.lock_holder()
    leftovers = bed.sh('ls -A %s/.stagehand/stage 2>/dev/null; ls -d %s/.stagehand/upload-* 2>/dev/null || true' % (ROOT, ROOT)).split()
    live_after = bed.live()['release']
    converged = rerun.rc == 0 and lock is None and not leftovers and whole_after_rerun and (
        command not in ('deploy', 'deploy-phases') or live_after == release)
    _record(bed, command=command, point=point, mode=mode, whole=whole_after_kill, converged=converged,
            seconds=round(time.monotonic() - started, 1))
    assert whole_after_kill, 'after the kill: ' + how
    assert rerun.rc == 0, 'the rerun failed: ' + rerun.output[-4000:]
    assert lock is None, 'the rerun left the lock held: %s' % lock
    assert not leftovers, 'the rerun left %s in the staging area' % leftovers
    assert whole_after_rerun, 'after the rerun: ' + how_after
    if command in ('deploy', 'deploy-phases'):
        assert live_after == release, 'the rerun of the deploy of %s left %s live' % (release, live_after)
