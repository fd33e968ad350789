# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Verify the state the converge and side_effect playbooks leave on the container."""

from __future__ import annotations

import json

ROOT = '/srv/www/hello'


def _json(host, path):
    return json.loads(host.file(path).content_string)


def test_stack_is_running_under_systemd(host):
    for unit in ('nginx', 'php8.2-fpm', 'memcached', 'mariadb', 'ssh'):
        assert host.service(unit).is_running, unit
    assert host.process.filter(pid=1)[0].comm == 'systemd'


def test_current_points_at_the_rolled_back_release(host):
    current = host.file(ROOT + '/current')
    assert current.is_symlink
    assert current.linked_to == ROOT + '/releases/v1'
    assert host.file(ROOT + '/current').linked_to != ROOT + '/releases/v2'


def test_releases_are_complete_and_chained(host):
    v1 = _json(host, ROOT + '/.stagehand/releases/v1.json')
    v2 = _json(host, ROOT + '/.stagehand/releases/v2.json')
    assert v1['status'] == 'complete' and v2['status'] == 'complete'
    assert v2['previous'] == 'v1'
    assert v1['next'] == 'v2'
    assert v1['manifest_digest'] != v2['manifest_digest']


def test_unchanged_files_are_hardlinked_between_releases(host):
    a = host.file(ROOT + '/releases/v1/public/robots.txt')
    b = host.file(ROOT + '/releases/v2/public/robots.txt')
    inode = host.check_output('stat -c %%i %s %s', a.path, b.path).split()
    assert inode[0] == inode[1]
    changed = host.check_output('stat -c %%i %s %s', ROOT + '/releases/v1/lib/release.php', ROOT + '/releases/v2/lib/release.php').split()
    assert changed[0] != changed[1]


def test_site_serves_the_live_release(host):
    out = host.check_output('curl -s -D - http://127.0.0.1/')
    assert 'X-Release: v1' in out
    assert 'release: v1' in out


def test_nginx_kept_the_valid_config(host):
    conf = host.file('/etc/nginx/sites-available/hello.conf').content_string
    assert '$realpath_root$fastcgi_script_name' in conf
    assert 'not nginx syntax' not in conf
    assert host.run('nginx -t').rc == 0
    assert not host.file('/etc/nginx/sites-enabled/default').exists


def test_no_transaction_or_lock_left_behind(host):
    assert not host.file(ROOT + '/.stagehand/lock').exists
    leftovers = host.check_output('find /etc/nginx/.stagehand-patch %s/.stagehand/stage -mindepth 1 2>/dev/null | wc -l || true', ROOT)
    assert leftovers.strip() == '0'
