# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Verify what the failed deploys, the rejected nginx change and the refused rollback left on the host."""

from __future__ import annotations

import json
import re

ROOT = '/srv/www/shop'
VHOST = '/etc/nginx/sites-available/shop.conf'


def _json(host, path):
    return json.loads(host.file(path).content_string)


def _history(host):
    return [json.loads(line) for line in host.file(ROOT + '/.stagehand/history.jsonl').content_string.splitlines() if line.strip()]


def test_v2_is_still_live_and_serving(host):
    assert host.check_output('readlink %s', ROOT + '/current') == 'releases/v2'
    out = host.check_output('curl -sS -i http://127.0.0.1/health')
    assert out.startswith('HTTP/1.1 200')
    assert 'X-Release: v2' in out


def test_history_records_every_outcome(host):
    history = _history(host)
    assert [(e['action'], e['outcome']) for e in history] == [
        ('deploy', 'success'),
        ('deploy', 'refused'),
        ('deploy', 'rolled_back'),
        ('deploy', 'failed'),
        ('deploy', 'failed'),
        ('deploy', 'interrupted'),
        ('deploy', 'failed'),
        ('rollback', 'refused'),
        # (the empty artifact, refused by the compose on the controller before the lock: no line at all)
        ('deploy', 'success'),
        ('deploy', 'success'),
    ]
    # v1 and v4-broken-health add no migration, so they take the fast path (tasks/fast.yml: one
    # ship call, which knows the release before it takes the lock); v5-bad-migration has one to
    # apply, so it goes through the phases after the ship call staged it
    assert [e['release'] for e in history[:5]] == ['v2', 'v1', 'v4-broken-health', 'v4-broken-health', 'v5-bad-migration']
    locked, broken, previewed, bad_migration, killed, rerun, rollback, alt, again = history[1:]
    # refused at the lock, before anything was staged or switched: the error names the holder
    assert 'held by someone-else on controller other-laptop' in locked['error']
    assert "'deploy by hand'" in locked['error']
    assert not {'stage', 'migrate', 'switch'} & set(locked['phases'])
    assert broken['previous'] == 'v2'
    assert 'health check' in broken['error']
    # went live, failed its health check, switched back inside the same call
    assert {'build', 'ship', 'lock', 'stage', 'migrate', 'switch', 'health'} <= set(broken['phases'])
    # with the preview check: refused before the switch, nothing went live (no switch, no health phase)
    assert previewed['previous'] == 'v2' and 'did not pass its preview check' in previewed['error']
    assert 'preview' in previewed['phases'] and not {'switch', 'health'} & set(previewed['phases'])
    assert previewed.get('switched') is None
    assert bad_migration['previous'] == 'v2'
    assert '0004_' in bad_migration['error']
    assert 'switch' not in bad_migration['phases']
    assert 'undo' in bad_migration['phases']
    # the deploy killed while holding the lock (through the phases), completed by the rerun that took the lock over
    assert killed['previous'] == 'v2' and killed['live'] == 'v2'
    assert 'was interrupted' in killed['error'] and 'is gone' in killed['error']
    assert rerun['release'] == 'v4-broken-health' and rerun['previous'] == 'v2'
    assert rollback['previous'] == 'v2'
    assert rollback['release'] in (None, 'v9')
    assert re.search(r"release '?v9'? does not exist", rollback['error'])
    # an empty artifact: refused by the compose on the controller, before the lock, so the host has no line of it
    assert not [e for e in history if 'holds no files' in (e['error'] or '')]
    # -e release=v2alt once, then -e version=v2: named v2 by the rule, not v2alt (issue 11, defect 6)
    assert (alt['release'], alt['previous']) == ('v2alt', 'v2')
    assert (again['release'], again['previous']) == ('v2', 'v2alt')


def test_release_refused_by_its_preview_check_is_marked_failed(host):
    # marked failed after the switched-back deploy (checked by side_effect.yml right then); the deploy with the
    # preview check staged it again and, refused, removed it; the deploy killed after staging it left it
    # complete, and the rerun, refused by its preview check too, marked it failed: no rollback goes to it
    meta = _json(host, ROOT + '/.stagehand/releases/v4-broken-health.json')
    assert meta['status'] == 'failed'
    assert meta['failed_reason'].startswith('preview: ')
    assert 'did not pass its preview check' in meta['failed_reason']
    assert _json(host, ROOT + '/.stagehand/releases/v2.json')['status'] == 'complete'
    # the deploys since point the preview link at what they checked last: v2, the release deployed last
    assert host.file(ROOT + '/preview').linked_to == ROOT + '/releases/v2'


def test_release_whose_migration_failed_is_gone(host):
    assert not host.file(ROOT + '/releases/v5-bad-migration').exists
    assert not host.file(ROOT + '/.stagehand/releases/v5-bad-migration.json').exists
    assert not host.file(ROOT + '/.stagehand/manifests/v5-bad-migration.json').exists
    assert host.check_output('ls -A %s', ROOT + '/.stagehand/stage') == ''
    assert host.check_output('ls %s', ROOT + '/releases').split() == ['v2', 'v2alt', 'v4-broken-health']


def test_failed_migration_is_not_recorded(host):
    out = host.check_output('mysql -N -B -e "SELECT id FROM stagehand_migrations ORDER BY id" shop')
    assert out.split() == ['0001_create_visits', '0002_add_visits_user_agent']
    # its one statement was rejected, so the schema is v2's
    assert 'visits_release_name' not in host.check_output('mysql -N -B -e "SHOW INDEX FROM visits" shop')


def test_rejected_nginx_change_left_the_old_configuration(host):
    conf = host.file(VHOST).content_string
    assert 'this_is_not_a_directive' not in conf
    assert 'root /srv/www/shop/current/public;' in conf
    assert host.run('nginx -t').rc == 0
    assert host.service('nginx').is_running
    # no file the transaction made is left beside the vhost
    assert host.check_output('ls -A /etc/nginx/sites-available').split() == ['default', 'shop.conf']


def test_lock_is_free(host):
    assert not host.file(ROOT + '/.stagehand/lock').exists


def test_state_is_not_open_to_the_application_user(host):
    assert host.file(ROOT + '/.stagehand').mode == 0o711
    for name in ('lock.guard', 'history.jsonl'):
        assert host.file(ROOT + '/.stagehand/' + name).mode == 0o600
    assert host.run('runuser -u www-data -- cat %s', ROOT + '/.stagehand/lock.guard').rc != 0
    assert host.run('runuser -u www-data -- ls %s', ROOT + '/.stagehand').rc != 0
