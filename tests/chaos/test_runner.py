# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Deploys driven as other tooling and AWX drive them: the ansible-runner Python API and runner's streaming.

A caller learns the outcome as data: every playbook ends with set_stats under the key
``stagehand`` (plugins/module_utils/_result.py), which runner hands over in the
``playbook_on_stats`` event (``artifact_data``, what AWX saves as the job's artifacts).
The streaming pipeline (``ansible-runner transmit | ansible-runner worker | ansible-runner
process``) is how an AWX execution node runs a job: the private data directory is packed,
unpacked elsewhere and run there, so a hook given relative to the inventory must travel with it.
The release live before is put back at the end of each test.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import typing as t

import pytest

import ansible_runner  # pylint: disable=import-error

from harness import REPO  # pylint: disable=import-error

HOOK_LOG = '/var/tmp/stagehand-runner-hook.log'
PROGRESS = {'ANSIBLE_STDOUT_CALLBACK': 'stagehand.deploy.progress'}


def _private_dir(bed, work: str, name: str, extravars: dict[str, t.Any], envvars: dict[str, str] | None = None) -> str:
    """A runner private data directory: the bed's inventory and secrets, the extra variables, runner's env."""
    pdd = os.path.join(work, name)
    shutil.rmtree(pdd, ignore_errors=True)
    for sub in ('inventory', 'env', 'project'):
        os.makedirs(os.path.join(pdd, sub))
    shutil.copy(bed.inventory, os.path.join(pdd, 'inventory', 'hosts.json'))
    with open(bed.secrets, encoding='utf-8') as handle:
        extravars = dict(json.load(handle), **extravars)
    with open(os.path.join(pdd, 'env', 'extravars'), 'w', encoding='utf-8') as handle:
        json.dump(extravars, handle)
    env = dict({key: value for key, value in bed.env().items() if key.startswith('ANSIBLE_')}, **(envvars or {}))
    with open(os.path.join(pdd, 'env', 'envvars'), 'w', encoding='utf-8') as handle:
        json.dump(env, handle)
    return pdd


def _stats(events: t.Iterable[dict[str, t.Any]]) -> dict[str, t.Any]:
    """The stagehand stats of a run, from its playbook_on_stats event (as AWX reads them)."""
    for event in events:
        if event.get('event') == 'playbook_on_stats':
            return event['event_data'].get('artifact_data', {}).get('stagehand', {})
    raise AssertionError('no playbook_on_stats event')


def _run(bed, work: str, name: str, playbook: str, cmdline: str | None = None, envvars: dict[str, str] | None = None, **extravars: t.Any):
    pdd = _private_dir(bed, work, name, extravars, envvars)
    return ansible_runner.run(private_data_dir=pdd, playbook=os.path.join(REPO, 'playbooks', playbook), ident=name,
                              cmdline=cmdline, quiet=True)


@pytest.mark.sample
def test_runner_api_deploy_failing_deploy_and_rollback_report_their_outcome_as_data(bed, work):
    live_before = bed.live()['release']
    host = bed.name

    # the dry run: the preview of each host, as data; nothing changed
    before = bed.snapshot()
    dry = _run(bed, work, 'runner-check', 'deploy.yml', cmdline='--check', version='v2', release='v2-runner')
    assert (dry.status, dry.rc) == ('successful', 0), dry.stdout.read()[-4000:]
    stats = _stats(dry.events)
    preview = stats['hosts'][host]['preview']
    assert stats['outcome'] == 'success' and preview['switch'] == {'from': live_before, 'to': 'v2-runner'}, stats
    assert stats['hosts'][host]['message'] == preview['line'] and ': would ' in preview['line'], stats
    assert bed.snapshot() == before

    # with the collection's stdout callback, as an AWX job would with ANSIBLE_STDOUT_CALLBACK set
    deployed = _run(bed, work, 'runner-deploy', 'deploy.yml', envvars=PROGRESS, version='v2', release='v2-runner')
    output = deployed.stdout.read()
    assert (deployed.status, deployed.rc) == ('successful', 0), output[-4000:]
    lines = output.splitlines()
    assert re.search(r'^\[%s\] .+: changed \(\d+\.\d s\)$' % re.escape(host), output, re.M), output
    assert not [line for line in lines if line.startswith('TASK [') or line.startswith('skipping:') or line.startswith('ok:')], output
    stats = _stats(deployed.events)
    assert stats['action'] == 'deploy' and stats['outcome'] == 'success', stats
    assert stats['release'] == 'v2-runner' and stats['previous'] == live_before, stats
    mine = stats['hosts'][host]
    assert mine['outcome'] == 'success' and mine['compose_id'] and mine['phases'], mine
    assert mine['message'] == 'v2-runner is live on %s (before: %s)' % (host, live_before)
    names = [event.get('event') for event in deployed.events]
    assert names[0] == 'playbook_on_start' and 'runner_on_ok' in names and names[-1] == 'playbook_on_stats', names
    assert deployed.stats['failures'] == {} and host in deployed.stats['ok']
    assert bed.live()['release'] == 'v2-runner'

    broken = _run(bed, work, 'runner-broken', 'deploy.yml', envvars=PROGRESS, version='v4-broken-health')
    output = broken.stdout.read()
    assert (broken.status, broken.rc) == ('failed', 2), output[-4000:]
    # a failure is shown in full, under the header of its task; no other task has a header
    headers = [line for line in output.splitlines() if line.startswith('TASK [')]
    assert headers and len(headers) == len(re.findall(r'^fatal: \[', output, re.M)), output
    stats = _stats(broken.events)
    assert stats['outcome'] == 'failed', stats
    mine = stats['hosts'][host]
    assert mine['failed_phase'] == 'preview' and mine['release'] == 'v4-broken-health', mine
    assert 'v4-broken-health' in mine['message'] and 'Nothing went live' in mine['message'], mine
    assert stats['message'] == '%s: %s' % (host, mine['message'])
    assert bed.live()['release'] == 'v2-runner'

    back = _run(bed, work, 'runner-rollback', 'rollback.yml', release=live_before)
    assert (back.status, back.rc) == ('successful', 0), back.stdout.read()[-4000:]
    stats = _stats(back.events)
    assert (stats['action'], stats['outcome'], stats['release'], stats['previous']) == \
        ('rollback', 'success', live_before, 'v2-runner'), stats
    assert bed.live()['release'] == live_before


@pytest.mark.sample
def test_a_missing_hook_file_is_refused_by_name_under_runner_with_nothing_changed(bed, work):
    before = bed.snapshot()
    refused = _run(bed, work, 'runner-refused', 'deploy.yml', version='v2', deploy_hooks={'prepare': 'hooks/missing.yml'})
    assert (refused.status, refused.rc) == ('failed', 2)
    stats = _stats(refused.events)
    mine = stats['hosts'][bed.name]
    assert stats['outcome'] == 'refused' and mine['outcome'] == 'refused' and mine['failed_phase'] == 'start', stats
    # relative to the inventory's directory: runner's private data dir, inventory/
    assert os.path.join(work, 'runner-refused', 'inventory', 'hooks', 'missing.yml') in mine['message'], mine
    assert 'Nothing was changed' in mine['message']
    assert bed.snapshot() == before


@pytest.mark.sample
def test_the_streaming_pipeline_of_awx_execution_nodes_deploys_with_a_relative_hook(bed, work):
    live_before = bed.live()['release']
    extravars = {'version': 'v2', 'release': 'v2-streamed', 'deploy_hooks': {'start': 'hooks/note.yml'}}
    pdd = _private_dir(bed, work, 'runner-stream', extravars)
    os.makedirs(os.path.join(pdd, 'inventory', 'hooks'))
    with open(os.path.join(pdd, 'inventory', 'hooks', 'note.yml'), 'w', encoding='utf-8') as handle:
        handle.write('---\n- name: Note the hook\n  ansible.builtin.shell:\n    cmd: echo "{{ deploy_hook }}" >> %s\n'
                     '  changed_when: true\n' % HOOK_LOG)
    # an AWX project: a playbook of its own that runs the collection's
    with open(os.path.join(pdd, 'project', 'deploy.yml'), 'w', encoding='utf-8') as handle:
        handle.write('---\n- name: Deploy with the collection\n  ansible.builtin.import_playbook: stagehand.deploy.deploy\n')
    bed.sh('rm -f %s' % HOOK_LOG)
    runner = shutil.which('ansible-runner')
    assert runner, 'ansible-runner is not on PATH'
    worker_dir = os.path.join(work, 'runner-stream-worker')
    shutil.rmtree(worker_dir, ignore_errors=True)
    os.makedirs(worker_dir)
    pipeline = '%s transmit %s -p deploy.yml | %s worker --private-data-dir %s | %s process %s' % (
        runner, pdd, runner, worker_dir, runner, pdd)
    proc = subprocess.run(['bash', '-o', 'pipefail', '-c', pipeline], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:]
    # process writes what run writes, below artifacts/ of the private data dir
    artifacts = os.path.join(pdd, 'artifacts')
    events = []
    for name in os.listdir(os.path.join(artifacts, 'job_events')):
        with open(os.path.join(artifacts, 'job_events', name), encoding='utf-8') as handle:
            events.append(json.load(handle))
    events.sort(key=lambda event: event.get('counter', 0))
    names = [event.get('event') for event in events]
    assert 'playbook_on_start' in names and names[-1] == 'playbook_on_stats', names
    stats = _stats(events)
    assert stats['outcome'] == 'success' and stats['release'] == 'v2-streamed', stats
    with open(os.path.join(artifacts, 'status'), encoding='utf-8') as handle:
        assert handle.read().strip() == 'successful'
    assert bed.sh('cat %s' % HOOK_LOG).split() == ['start']
    assert bed.live()['release'] == 'v2-streamed'
    back = bed.run('rollback.yml', '-e', 'release=%s' % live_before)
    assert back.rc == 0, back.output[-3000:]
