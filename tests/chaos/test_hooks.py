# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Every hook point of a deploy runs, once, in the documented order, around the engine's calls.

A deploy with hooks goes through the phases: one ship call per host stages the release
(prepare), then the migrate, preview and switch phases. Each hook file here appends its hook
point to a log where it runs (the controller for the build-side hooks, the host for the others),
so the order is read back from both. The release live before is put back at the end.
"""

from __future__ import annotations

import json
import os

import pytest

LOG = '/var/tmp/stagehand-hooks-test.log'
HOOK = """---
- name: Note the hook point
  ansible.builtin.shell:
    cmd: echo "{{ deploy_hook }}" >> %s
  changed_when: true
""" % LOG

LISTS = ['build', 'ship', 'stage', 'migrate', 'switch', 'post_switch']
# on the host, in the order of the phases (prepare: ship and stage are one call, their before lists run
# before it, post_upload and their after lists after it; stop right before the switch, start after it)
HOST_ORDER = ['before_ship', 'before_stage', 'post_upload', 'after_ship', 'after_stage', 'before_migrate', 'after_migrate',
              'before_switch', 'stop', 'after_switch', 'before_post_switch', 'start', 'after_post_switch']
CONTROLLER_ORDER = ['before_build', 'prepare', 'after_build']


@pytest.mark.sample
def test_every_hook_point_runs_once_in_order(bed, work):
    hook = os.path.join(work, 'note-hook.yml')
    with open(hook, 'w', encoding='utf-8') as handle:
        handle.write(HOOK)
    if os.path.exists(LOG):
        os.remove(LOG)
    bed.sh('rm -f %s' % LOG)
    live_before = bed.live()['release']
    extra = {'deploy_hooks': {name: hook for name in ('prepare', 'post_upload', 'stop', 'start')},
             'deploy_release': 'v2-hooked'}
    for name in LISTS:
        extra['deploy_before_' + name] = [hook]
        extra['deploy_after_' + name] = [hook]
    run = bed.run('deploy.yml', '-e', 'version=v2', '-e', json.dumps(extra))
    assert run.rc == 0, run.output[-4000:]
    assert 'Take the deploy lock of' in run.output  # hooks: the phases, not the fast path
    assert 'v2-hooked staged on' in run.output and 'v2-hooked is live on' in run.output, run.output[-4000:]
    with open(LOG, encoding='utf-8') as handle:
        assert handle.read().split() == CONTROLLER_ORDER
    assert bed.sh('cat %s' % LOG).split() == HOST_ORDER
    live = bed.live()
    assert live['release'] == 'v2-hooked' and not live['problems'], live
    back = bed.run('rollback.yml', '-e', 'release=%s' % live_before)
    assert back.rc == 0, back.output[-3000:]
    assert bed.live()['release'] == live_before
