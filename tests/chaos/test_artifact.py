# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A prebuilt artifact (``-e artifact=``, as a CI pipeline hands over its build) takes the same one-call
path as a git version on one host, and a redeploy of the same artifact reuses its compose.

The artifact is the example app's v2 as build.yml composes it (composer has run), copied out of the
store under a name of its own, as a pipeline would publish it. The bed is the shared one of the
suites; the release it had live is put back at the end.
"""

from __future__ import annotations

import json
import os
import shutil

import pytest

NAME = 'ci-build-42'


@pytest.mark.sample
def test_an_artifact_deploys_in_one_call_and_its_redeploy_reuses_the_compose(bed, work):
    built = bed.run('build.yml', '-e', 'version=v2')
    assert built.rc == 0, built.output[-3000:]
    with open(os.path.join(bed.store, 'chaos', 'refs', 'v2.json')) as f:
        compose = json.load(f)['compose_id'].split(':')[-1]
    artifact = os.path.join(work, NAME + '.tar.gz')
    shutil.copyfile(os.path.join(bed.store, 'chaos', 'composes', compose, 'artifact.tar.gz'), artifact)
    live_before = bed.live()['release']

    first = bed.run('deploy.yml', '-e', 'artifact=%s' % artifact)
    assert first.rc == 0, first.output[-3000:]
    # one call on the host: the fast path, not the phases
    assert 'Ship and stage the release in one call, switching to it when committing' in first.output, first.output[-3000:]
    assert 'Take the deploy lock of' not in first.output, first.output[-3000:]
    assert '%s is live on' % NAME in first.output, first.output[-3000:]
    live = bed.live()
    assert live['release'] == NAME and not live['problems'], live
    assert bed.http('/') == (200, NAME)
    records = os.listdir(os.path.join(bed.store, 'chaos', 'artifacts'))

    again = bed.run('deploy.yml', '-e', 'artifact=%s' % artifact)
    assert again.rc == 0, again.output[-3000:]
    # the store named the compose (no compose run), and the host already serves it: nothing sent or changed
    assert 'Compose the release into the artifact store' not in again.output, again.output[-3000:]
    assert 'is already live on' in again.output and 'nothing was built, sent or changed' in again.output, again.output[-3000:]
    assert os.listdir(os.path.join(bed.store, 'chaos', 'artifacts')) == records
    assert bed.live()['release'] == NAME

    back = bed.run('rollback.yml', '-e', 'release=%s' % live_before)
    assert back.rc == 0, back.output[-3000:]
    assert bed.live()['release'] == live_before


@pytest.mark.sample
def test_a_check_mode_deploy_previews_each_host_and_changes_nothing(bed, work):
    """deploy.yml --check --diff: what would be sent, staged, migrated and switched; the host exactly as before."""
    built = bed.run('build.yml', '-e', 'version=v3')  # v3 adds migration 0003 to what v2 has
    assert built.rc == 0, built.output[-3000:]
    live = bed.live()['release']
    before = bed.snapshot()
    # 0003 is irreversible: without allow_irreversible the deploy would be refused in its migrate phase
    refused = bed.run('deploy.yml', '--check', '-e', 'version=v3')
    assert refused.rc == 0, refused.output[-3000:]
    assert bed.snapshot() == before
    assert ': would be refused in phase migrate: the migration(s) 0003_' in refused.output, refused.output[-3000:]
    assert 'Nothing would change: %s stays live' % live in refused.output, refused.output[-3000:]
    run = bed.run('deploy.yml', '--check', '--diff', '-e', 'version=v3', '-e', 'allow_irreversible=true')
    assert run.rc == 0, run.output[-3000:]
    assert bed.snapshot() == before
    lines = [line for line in run.output.splitlines() if ': would send ' in line]
    assert len(lines) == 1, run.output[-3000:]
    assert 'stage releases/v3 (hardlinks for every unchanged file)' in lines[0] and 'apply the migration(s) 0003_' in lines[0]
    assert 'irreversible) (after a dump)' in lines[0], lines[0]
    assert lines[0].rstrip('.').endswith('switch current from %s to v3' % live), lines[0]
    assert '+current -> v3' in run.output, run.output[-3000:]  # the diff
    # a version the store has not composed: previewed as a compose to do first, still nothing changed
    fresh = bed.run('deploy.yml', '--check', '-e', 'version=v5-bad-migration')
    assert fresh.rc == 0, fresh.output[-3000:]
    assert 'would compose v5-bad-migration on the controller first' in fresh.output, fresh.output[-3000:]
    assert bed.snapshot() == before
