# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A fleet of three hosts goes to a release together or not at all.

Three target containers of their own (stagehand-chaos-fleet-1..3, SSH 127.0.0.1:2231..2233, HTTP
127.0.0.1:8091..8093), one inventory, provisioned in one run, then v1 and v2 deployed to all. Each
container has its own database; the migrations run on the first host's (the others' /health only
needs theirs to answer). Each test breaks ONE host in a way a fleet meets, deploys the next release (v2 and one changed file) to all three,
and checks every host afterwards:

- its preview check fails (memcached stopped, so its staged release's /health answers 500): no host
  switches, the release staged on the others is removed;
- staging fails on it (a file where releases/<release> would go): no host switches;
- a hook fails on it after the switch: every host switches back to v2;
- nothing is broken: all three serve the new release, each history line records the moment of its switch.

Not in the CI sample (three more containers cost minutes): ``STAGEHAND_CHAOS_FULL=1`` or
``STAGEHAND_CHAOS_FLEET=1`` runs it (``scripts/test chaos_full``).
"""

from __future__ import annotations

import json
import os
import subprocess
import typing as t

import pytest

from harness import APP, REPO, ROOT, Bed  # pylint: disable=import-error

HOSTS = 3
NEXT = 'v2-next'
RUN = os.environ.get('STAGEHAND_CHAOS_FULL') == '1' or os.environ.get('STAGEHAND_CHAOS_FLEET') == '1'
pytestmark = pytest.mark.skipif(not RUN, reason='the fleet (3 containers) runs with STAGEHAND_CHAOS_FULL=1 or STAGEHAND_CHAOS_FLEET=1')


class Fleet:
    """Three beds driven through one inventory, as an ops team drives its servers."""

    def __init__(self, work: str) -> None:
        self.work = work
        self.beds = [Bed(os.path.join(work, 'host%d' % i), name='stagehand-chaos-fleet-%d' % i, ssh_port=2230 + i, http_port=8090 + i)
                     for i in range(1, HOSTS + 1)]
        self.inventory = os.path.join(work, 'inventory.yml')
        self.repo = os.path.join(work, 'app-repo')
        self.store = os.path.join(work, 'store')
        self.secrets = os.path.join(work, 'secrets.yml')

    def start(self) -> None:
        for bed in self.beds:
            os.makedirs(bed.work, exist_ok=True)
            bed.start()
        key = os.path.join(REPO, '.cache', 'ssh', 'id_ed25519')
        hosts = {bed.name: {'ansible_host': '127.0.0.1', 'ansible_port': bed.ssh_port, 'ansible_user': 'root',
                            'ansible_ssh_private_key_file': key,
                            'ansible_ssh_common_args': '-o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no'}
                 for bed in self.beds}
        with open(self.inventory, 'w', encoding='utf-8') as f:
            json.dump({'all': {'hosts': hosts, 'vars': {'stagehand_app': APP, 'deploy_repo': self.repo,
                                                        'deploy_artifact_store': self.store}}}, f)
        with open(self.secrets, 'w', encoding='utf-8') as f:
            json.dump({'stagehand_db_password': 'chaos-fleet-pw'}, f)
        if not os.path.isdir(os.path.join(self.repo, '.git')):
            subprocess.run([os.path.join(REPO, 'tests', 'fixtures', 'make-app-repo'), self.repo], check=True, stdout=subprocess.DEVNULL)
            # NEXT: v2 and one changed file, no migration (v3's is irreversible)
            git = ['git', '-C', self.repo, '-c', 'user.name=fleet', '-c', 'user.email=fleet@example.invalid']
            subprocess.run(git + ['checkout', '-q', '--detach', 'v2'], check=True)
            with open(os.path.join(self.repo, 'public', 'fleet.txt'), 'w', encoding='utf-8') as f:
                f.write('the next release of the fleet\n')
            subprocess.run(git + ['add', 'public/fleet.txt'], check=True)
            subprocess.run(git + ['commit', '-q', '-m', 'one changed file'], check=True)
            subprocess.run(git + ['tag', '-a', '-m', 'release ' + NEXT, NEXT], check=True)
            subprocess.run(git + ['checkout', '-q', 'main'], check=True)

    def stop(self) -> None:
        for bed in self.beds:
            bed.stop()

    def run(self, playbook: str, *args: str) -> t.Any:
        proc = subprocess.run(['ansible-playbook', '-i', self.inventory, '-e', '@' + self.secrets, '-f', str(HOSTS),
                               os.path.join(REPO, 'playbooks', playbook)] + list(args),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=900, env=Bed.env(), check=False)
        return proc

    def live(self) -> list[str | None]:
        return [bed.live()['release'] for bed in self.beds]

    def releases(self, bed: Bed) -> list[str]:
        return bed.sh('ls %s/releases' % ROOT).split()

    def last_line(self, bed: Bed) -> dict[str, t.Any]:
        return json.loads(bed.sh('tail -n 1 %s/.stagehand/history.jsonl' % ROOT))


@pytest.fixture(scope='module')
def fleet(work):
    target = Fleet(os.path.join(work, 'fleet'))
    os.makedirs(target.work, exist_ok=True)
    target.start()
    try:
        for playbook, args in (('provision.yml', ()), ('deploy.yml', ('-e', 'version=v1')), ('deploy.yml', ('-e', 'version=v2'))):
            run = target.run(playbook, *args)
            assert run.returncode == 0, run.stdout[-4000:]
        assert target.live() == ['v2'] * HOSTS
        yield target
    finally:
        if os.environ.get('STAGEHAND_CHAOS_KEEP') != '1':
            target.stop()


def test_a_preview_failure_on_one_host_switches_no_host(fleet):
    broken = fleet.beds[2]
    broken.sh('systemctl stop memcached')
    try:
        run = fleet.run('deploy.yml', '-e', 'version=%s' % NEXT, '-e', 'deploy_preview_timeout=2')
    finally:
        broken.sh('systemctl start memcached')
    assert run.returncode != 0, run.stdout[-4000:]
    text = ' '.join(run.stdout.split())
    assert 'deploy of %s failed in phase preview on %s' % (NEXT, broken.name) in text, run.stdout[-4000:]
    assert 'did not pass its preview check' in text
    for bed in fleet.beds[:2]:
        assert 'deploy of %s stopped in phase switch on %s because host %s failed' % (NEXT, bed.name, broken.name) in text, run.stdout[-4000:]
    assert fleet.live() == ['v2'] * HOSTS
    for bed in fleet.beds:
        assert bed.http('/health') == (200, 'v2')
        assert NEXT not in fleet.releases(bed)  # staged by this run, never live: removed everywhere
        line = fleet.last_line(bed)
        assert (line['release'], line['previous'], line['outcome']) == (NEXT, 'v2', 'failed') and line.get('switched') is None


def test_a_stage_failure_on_one_host_switches_no_host(fleet):
    broken = fleet.beds[1]
    broken.sh('touch %s/releases/%s' % (ROOT, NEXT))
    try:
        run = fleet.run('deploy.yml', '-e', 'version=%s' % NEXT)
        assert run.returncode != 0, run.stdout[-4000:]
        text = ' '.join(run.stdout.split())
        assert 'deploy of %s failed in phase prepare on %s' % (NEXT, broken.name) in text, run.stdout[-4000:]
        assert fleet.live() == ['v2'] * HOSTS
        for bed in (fleet.beds[0], fleet.beds[2]):
            assert NEXT not in fleet.releases(bed)
    finally:
        broken.sh('rm -f %s/releases/%s' % (ROOT, NEXT))


def test_a_failure_after_the_switch_on_one_host_switches_every_host_back(fleet, tmp_path):
    hook = tmp_path / 'fail-on-one.yml'
    hook.write_text('---\n- name: Fail on one host only\n  ansible.builtin.fail:\n    msg: the warm-up of this host failed\n'
                    '  when: inventory_hostname == %s\n' % json.dumps(fleet.beds[1].name))
    run = fleet.run('deploy.yml', '-e', 'version=%s' % NEXT, '-e', json.dumps({'deploy_after_switch': [str(hook)]}))
    assert run.returncode != 0, run.stdout[-4000:]
    text = ' '.join(run.stdout.split())
    assert 'the warm-up of this host failed' in text, run.stdout[-4000:]
    assert fleet.live() == ['v2'] * HOSTS
    for bed in fleet.beds:
        assert bed.http('/health') == (200, 'v2')
        line = fleet.last_line(bed)
        assert (line['release'], line['outcome']) == (NEXT, 'rolled_back'), line
        assert line.get('switched') is not None  # it went live, at the one moment, then back


def test_a_fleet_deploy_switches_every_host_and_records_the_moment(fleet):
    run = fleet.run('deploy.yml', '-e', 'version=%s' % NEXT)
    assert run.returncode == 0, run.stdout[-4000:]
    assert fleet.live() == [NEXT] * HOSTS
    moments = []
    for bed in fleet.beds:
        assert bed.http('/health') == (200, NEXT)
        line = fleet.last_line(bed)
        assert (line['release'], line['previous'], line['outcome']) == (NEXT, 'v2', 'success')
        assert set(line['phases']) >= {'prepare', 'preview', 'switch'}
        moments.append(line['switched'])
    print('switch moments of the hosts (from their histories): %s' % moments)
    back = fleet.run('rollback.yml', '-e', 'release=v2')
    assert back.returncode == 0, back.stdout[-4000:]
    assert fleet.live() == ['v2'] * HOSTS
