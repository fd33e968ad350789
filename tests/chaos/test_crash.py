# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The crash suite: a deploy, rollback, cleanup or provision killed at a chosen step, then run again.

Each case arms one crash point on the host (plugins/module_utils/_crash.py) and starts the command
as a user does. ``remote``: the module kills itself there. ``controller``: the module waits there
while the whole controller side (ansible-playbook, its workers and ssh clients) is SIGKILLed, then
goes on if it still lives. ``both``: the controller and then the waiting module are SIGKILLed.

After every kill: ``current`` names a whole release (every file matches the manifest it was
verified against), the site answers 200 with that release, and the next plain run of the same
command ends with rc 0, the lock free and nothing left in the staging area (nor a patch journal).
The deploys and rollbacks run on a target in releases mode and on one in A/B slots mode. The figures go to
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

# (bed, command, crash point): the steps the host side goes through, in order, for each command.
# The bed "releases" is the default layout; "slots" a second target in A/B slots mode.
POINTS = [
    # a one-host deploy of a git version: the ship module does everything in one call
    ('releases', 'deploy', 'ship:locked'),
    ('releases', 'deploy', 'ship:staged'),
    ('releases', 'deploy', 'switch:switched'),
    ('releases', 'deploy', 'switch:healthy'),
    ('releases', 'deploy', 'switch:recorded'),
    # the same deploy through the phases (-e deploy_fast=false): lock, release, switch, history modules
    ('releases', 'deploy-phases', 'lock:acquired'),
    ('releases', 'deploy-phases', 'release:staged'),
    ('releases', 'deploy-phases', 'switch:switched'),
    ('releases', 'deploy-phases', 'switch:healthy'),
    ('releases', 'deploy-phases', 'history:written'),
    # rollback: one switch call under the lock
    ('releases', 'rollback', 'switch:locked'),
    ('releases', 'rollback', 'switch:switched'),
    ('releases', 'rollback', 'switch:healthy'),
    ('releases', 'rollback', 'switch:recorded'),
    # cleanup
    ('releases', 'cleanup', 'lock:acquired'),
    ('releases', 'cleanup', 'cleanup:removed-one'),
    # provision with a changed nginx vhost: the patch transaction (journal, deploy, nginx -t, commit)
    ('releases', 'provision', 'patch:deployed-one'),
    ('releases', 'provision', 'patch:deployed'),
    # A/B slots: the inactive slot patched in place (ship in one call, or the patch module in the phases)
    ('slots', 'deploy', 'ship:locked'),
    ('slots', 'deploy', 'slot_patch:deployed-one'),
    ('slots', 'deploy', 'slot_patch:deployed'),
    ('slots', 'deploy', 'switch:switched'),
    ('slots', 'deploy', 'switch:recorded'),
    ('slots', 'deploy-phases', 'slot_patch:deployed-one'),
    ('slots', 'deploy-phases', 'switch:switched'),
    ('slots', 'rollback', 'switch:switched'),
    ('slots', 'rollback', 'switch:recorded'),
]
# What CI runs (scripts/test chaos); the rest with STAGEHAND_CHAOS_FULL=1.
SAMPLE = {
    ('releases', 'deploy', 'switch:switched', 'remote'),
    ('releases', 'deploy', 'ship:staged', 'both'),
    ('releases', 'deploy-phases', 'release:staged', 'controller'),
    ('releases', 'rollback', 'switch:switched', 'remote'),
    ('releases', 'cleanup', 'cleanup:removed-one', 'remote'),
    ('slots', 'deploy', 'slot_patch:deployed-one', 'remote'),
    ('slots', 'rollback', 'switch:switched', 'controller'),
}
CASES = [pytest.param(layout, command, point, mode,
                      id='%s-%s-%s-%s' % (layout, command, point.replace(':', '_'), mode),
                      marks=[pytest.mark.crash] + ([pytest.mark.sample] if (layout, command, point, mode) in SAMPLE else []))
         for layout, command, point in POINTS for mode in MODES]
VHOST = '/etc/nginx/sites-available/chaos.conf'


def _arguments(command: str, release: str, number: int) -> tuple[str, tuple[str, ...]]:
    if command == 'deploy':
        return 'deploy.yml', ('-e', 'version=v2', '-e', 'release=%s' % release)
    if command == 'deploy-phases':
        return 'deploy.yml', ('-e', 'version=v2', '-e', 'release=%s' % release, '-e', 'deploy_fast=false')
    if command == 'rollback':
        return 'rollback.yml', ()
    if command == 'provision':
        # a vhost that differs from the one in place, so that the patch has something to change
        return 'provision.yml', ('-e', 'nginx_client_max_body_size=%dm' % (20 + number))
    return 'cleanup.yml', ('-e', 'keep=2')


def _served_whole(bed) -> tuple[bool, str]:
    live = bed.live()
    status, header = bed.http('/')
    whole = live['release'] is not None and not live['problems'] and status == 200 and header == live['release']
    return whole, 'live %s, problems %s, HTTP %s with X-Release %s' % (live['release'], live['problems'][:3], status, header)


def _record(work: str, **fields) -> None:
    with open(os.path.join(work, 'crash.jsonl'), 'a') as f:
        f.write(json.dumps(fields) + '\n')


@pytest.mark.parametrize('layout, command, point, mode', CASES)
def test_a_kill_at_a_step_is_survived(request, work, layout, command, point, mode):
    bed = request.getfixturevalue('bed' if layout == 'releases' else 'slots_bed')
    number = next(_names)
    release = 'k%02d' % number
    playbook, args = _arguments(command, release, number)
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
    leftovers = bed.sh('ls -A %s/.stagehand/stage 2>/dev/null; ls -d %s/.stagehand/upload-* %s/.stagehand/patch-*/patch-journal.json '
                       '2>/dev/null || true' % (ROOT, ROOT, ROOT)).split()
    live_after = bed.live()['release']
    applied = True
    if command == 'provision':
        # the vhost the rerun asked for is in place and nginx accepts the configuration
        wanted = 'client_max_body_size %dm;' % (20 + number)
        applied = wanted in bed.sh('cat %s' % VHOST) and bed.sh('nginx -t 2>&1; echo rc=$?', check=False).strip().endswith('rc=0')
    converged = rerun.rc == 0 and lock is None and not leftovers and whole_after_rerun and applied and (
        command not in ('deploy', 'deploy-phases') or live_after == release)
    _record(work, layout=layout, command=command, point=point, mode=mode, whole=whole_after_kill, converged=converged,
            seconds=round(time.monotonic() - started, 1))
    assert whole_after_kill, 'after the kill: ' + how
    assert rerun.rc == 0, 'the rerun failed: ' + rerun.output[-4000:]
    assert lock is None, 'the rerun left the lock held: %s' % lock
    assert not leftovers, 'the rerun left %s in the staging area' % leftovers
    assert whole_after_rerun, 'after the rerun: ' + how_after
    assert applied, 'the rerun of the provision did not leave nginx with the vhost it asked for'
    if command in ('deploy', 'deploy-phases'):
        assert live_after == release, 'the rerun of the deploy of %s left %s live' % (release, live_after)
