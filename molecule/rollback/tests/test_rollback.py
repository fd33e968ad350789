# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Verify the host after deploying v1 and v2, rolling back to v1, then rolling back to v2 by name; then v3
(irreversible), refused deploys of v2 and v1-again, a rollback to the live v3, and a rollback to v2 that restored
the dump taken right before v3's irreversible migration (issue 11)."""

from __future__ import annotations

import json

ROOT = '/srv/www/app'
# Written by side_effect.yml after deploying v2, before the first rollback.
MIGRATIONS_BEFORE = '/var/tmp/molecule-migrations-before-rollback.tsv'


def _json(host, path):
    return json.loads(host.file(path).content_string)


def _history(host):
    return [json.loads(line) for line in host.file(ROOT + '/.stagehand/history.jsonl').content_string.splitlines() if line.strip()]


def test_history_has_the_deploys_and_rollbacks(host):
    history = _history(host)
    assert [(e['action'], e['release'], e['previous'], e['outcome']) for e in history] == [
        ('deploy', 'v1', None, 'success'),
        ('deploy', 'v2', 'v1', 'success'),
        ('rollback', 'v1', 'v2', 'success'),
        ('rollback', 'v2', 'v1', 'success'),
        ('deploy', 'v3', 'v2', 'success'),
        # the schema guard: an older release is refused on the deploy path as on the rollback path
        ('deploy', 'v2', 'v3', 'refused'),
        ('deploy', 'v1-again', 'v3', 'refused'),
        ('rollback', 'v3', 'v3', 'success'),
        ('rollback', 'v2', 'v3', 'refused'),
        ('rollback', 'v2', 'v3', 'success'),
    ]
    for entry in history:
        assert (entry['error'] is None) == (entry['outcome'] == 'success'), entry
        assert entry['start'] <= entry['end']
    for entry in (history[5], history[6], history[8]):
        assert '0003_purge_old_visits' in entry['error'] and '/srv/www/app/.stagehand/dumps/v3.sql.gz' in entry['error']
    # a rollback switches, and neither builds, ships, stages nor migrates
    for entry in history[2:4] + history[7:8] + history[9:]:
        assert 'switch' in entry['phases'], entry['phases']
        assert not {'build', 'ship', 'stage', 'migrate'} & set(entry['phases']), entry['phases']
    starts = [entry['start'] for entry in history]
    assert starts == sorted(starts)


def test_v2_is_live_again(host):
    assert host.check_output('readlink %s', ROOT + '/current') == 'releases/v2'
    out = host.check_output('curl -sS -i http://127.0.0.1/')
    assert out.startswith('HTTP/1.1 200')
    assert 'X-Release: v2' in out
    assert 'Welcome to the stagehand example app!' in out


def test_both_releases_stay_complete(host):
    for name in ('v1', 'v2'):
        meta = _json(host, ROOT + '/.stagehand/releases/%s.json' % name)
        assert meta['status'] == 'complete', meta
        assert meta['failed_reason'] is None
    # v1 stays the rollback target of v2
    assert _json(host, ROOT + '/.stagehand/releases/v2.json')['previous'] == 'v1'


def test_rollbacks_never_ran_migrations(host):
    before = host.file(MIGRATIONS_BEFORE).content_string
    now = host.check_output('mysql -N -B -e "SELECT * FROM stagehand_migrations ORDER BY id" app')
    # same ids, checksums, releases and applied_at: nothing applied or reverted; and the restore of the
    # dump taken right before v3's 0003 brought back exactly the rows v2 had recorded
    assert now + '\n' == before
    assert [line.split('\t')[0] for line in now.splitlines()] == ['0001_create_visits', '0002_add_visits_user_agent']
    # v2's reversible migration was not reverted while v1 was live
    assert 'user_agent' in host.check_output('mysql -N -B -e "SHOW COLUMNS FROM visits" app')
    # no dump is taken by a rollback, nor by a refused deploy: only the three deploys that applied migrations made one
    assert host.check_output('ls %s', ROOT + '/.stagehand/dumps').split() == ['index.json', 'v1.sql.gz', 'v2.sql.gz', 'v3.sql.gz']


def test_each_dump_is_recorded_with_the_migrations_it_precedes(host):
    index = _json(host, ROOT + '/.stagehand/dumps/index.json')
    assert [(e['file'], e['release'], e['before'], e['precedes']) for e in index['dumps']] == [
        ('v1.sql.gz', 'v1', [], ['0001_create_visits']),
        ('v2.sql.gz', 'v2', ['0001_create_visits'], ['0002_add_visits_user_agent']),
        ('v3.sql.gz', 'v3', ['0001_create_visits', '0002_add_visits_user_agent'], ['0003_purge_old_visits']),
    ]


def test_refused_deploys_left_no_release(host):
    assert host.check_output('ls %s', ROOT + '/releases').split() == ['v1', 'v2', 'v3']
    assert not host.file(ROOT + '/.stagehand/releases/v1-again.json').exists


def test_lock_is_free(host):
    assert not host.file(ROOT + '/.stagehand/lock').exists
