# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Verify the load runs of side_effect.yml: the deploys cost no request, the php-fpm restarts did."""

from __future__ import annotations

import json

import pytest

ROOT = '/srv/www/app'
DIR = '/var/tmp/stagehand-zdt'
# Enough requests that "no error" means something: at 8 workers it is a few seconds of load.
MIN_REQUESTS = 500


def _summary(host, run):
    path = '%s/%s.json' % (DIR, run)
    assert host.file(path).exists, 'no summary %s: did side_effect run?' % path
    return json.loads(host.file(path).content_string)


@pytest.fixture(name='deploys')
def fixture_deploys(host):
    return _summary(host, 'deploys')


@pytest.fixture(name='control')
def fixture_control(host):
    return _summary(host, 'control')


def test_the_deploys_run_was_a_real_load(deploys):
    assert deploys['stopped_by'] == 'stop_file', deploys
    assert deploys['requests'] > MIN_REQUESTS, deploys
    assert deploys['probes'] > MIN_REQUESTS // 4, deploys


def test_the_deploys_run_saw_every_switch(deploys):
    # v1 -> v2 (deploy), v2 -> v1 (rollback), v1 -> v2 (deploy again)
    assert deploys['switches'] >= 3, deploys
    assert deploys['pointer_changes'][:4] == ['v1', 'v2', 'v1', 'v2'], deploys


def test_requests_were_in_flight_at_the_switches(deploys):
    # requests (probes among them) that were running when current was switched (and php-fpm
    # reloaded, for the deploys): the ones a switch could break or mix; without them zero errors would prove little
    assert deploys['in_flight_at_switch'] > 0, deploys
    assert deploys['probes_in_flight_at_switch'] > 0, deploys


def test_both_releases_served_during_the_deploys_run(deploys):
    served = deploys['responses_by_release']
    assert served.get('v1', 0) > 0 and served.get('v2', 0) > 0, deploys
    assert set(served) <= {'v1', 'v2'}, deploys


@pytest.mark.parametrize('counter', ['non_2xx', 'socket_errors', 'mixed', 'stale', 'bad_probes'])
def test_no_request_failed_during_the_deploys(deploys, counter):
    assert deploys[counter] == 0, '%s=%d during the deploys; examples: %s' % (counter, deploys[counter], deploys['examples'])


def test_every_request_got_an_answer_during_the_deploys(deploys):
    assert deploys['ok'] == deploys['requests'], deploys


def test_the_control_run_was_a_real_load(control):
    assert control['stopped_by'] == 'stop_file', control
    assert control['requests'] > MIN_REQUESTS // 2, control
    assert control['switches'] == 0, control


def test_the_counters_see_php_fpm_restarts(control):
    # The control run restarted php-fpm abruptly under the same load: if the counters
    # stayed at 0 there, their 0 during the deploys would prove nothing.
    assert control['non_2xx'] + control['socket_errors'] > 0, control


def test_history_records_the_deploys_and_the_rollback(host):
    lines = host.file(ROOT + '/.stagehand/history.jsonl').content_string.splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    steps = [(record['action'], record['release'], record['previous'], record['outcome']) for record in records]
    # converge deployed v1; the deploys run (the last three entries, even after a second
    # `molecule side-effect`) deployed v2, rolled back to v1 and deployed v2 again
    assert steps[0] == ('deploy', 'v1', None, 'success'), steps
    assert steps[-3:] == [
        ('deploy', 'v2', 'v1', 'success'),
        ('rollback', 'v1', 'v2', 'success'),
        ('deploy', 'v2', 'v1', 'success'),
    ], steps


def test_php_fpm_was_reloaded_at_each_deploy_switch(host):
    # Every deploy switch reloads php-fpm (deploy_post_commands): SIGUSR2, the workers finish
    # their requests, the master re-executes itself and keeps the listening socket, so
    # connections wait in its backlog instead of failing. One reload for v1 (converge) and one
    # for each of the two deploys of the deploys run, at least. The rollback between them does
    # not reload (deploy_rollback_post_commands is empty): the counters above prove that it
    # served v1 alone, unmixed, within a second, all the same.
    log = host.file('/var/log/php8.2-fpm.log').content_string
    assert log.count('Reloading in progress') >= 3, log[-2000:]
    assert 'using inherited socket' in log and '/run/php/app-fpm.sock' in log


def test_v2_is_live_and_healthy(host):
    assert host.file(ROOT + '/current').linked_to == ROOT + '/releases/v2'
    out = host.check_output('curl -s -D - -o /dev/null http://127.0.0.1/health')
    assert 'X-Release: v2' in out
    assert host.service('php8.2-fpm').is_running
