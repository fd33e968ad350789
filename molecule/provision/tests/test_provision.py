# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Verify the stack playbooks/provision.yml set up, after the side_effect playbook served a release and tried bad changes."""

from __future__ import annotations

import json

ROOT = '/srv/www/shop'
VHOST = '/etc/nginx/sites-available/shop.conf'
POOL = '/etc/php/8.2/fpm/pool.d/shop.conf'
SOCKET = '/run/php/shop-fpm.sock'
# The test value molecule.yml gives stagehand_db_password.
DB_PASSWORD = 'molecule-provision-pw'


def _listeners(host, port):
    """Local addresses of the TCP and UDP sockets listening on port."""
    out = host.check_output('ss -H -ltnu')
    found = []
    for line in out.splitlines():
        fields = line.split()
        if fields and fields[4].rsplit(':', 1)[-1] == str(port):
            found.append((fields[0], fields[4]))
    return found


def _status(host, path):
    """HTTP status of a GET through nginx on the host."""
    return host.check_output('curl -s -o /dev/null -w "%%{http_code}" %s', 'http://127.0.0.1' + path)


def test_services_are_running_and_enabled(host):
    for unit in ('nginx', 'php8.2-fpm', 'memcached', 'mariadb'):
        service = host.service(unit)
        assert service.is_running, unit
        assert service.is_enabled, unit


def test_nginx_accepts_its_configuration(host):
    result = host.run('nginx -t')
    assert result.rc == 0, result.stderr


def test_vhost_pins_requests_to_the_real_release_path(host):
    conf = host.file(VHOST).content_string
    assert 'root /srv/www/shop/current/public;' in conf
    assert 'include fastcgi_params;' in conf
    assert 'fastcgi_param SCRIPT_FILENAME $realpath_root$fastcgi_script_name;' in conf
    assert 'fastcgi_param DOCUMENT_ROOT $realpath_root;' in conf
    # the realpath lines come after the include, so they win over fastcgi_params
    assert conf.index('include fastcgi_params;') < conf.index('fastcgi_param SCRIPT_FILENAME')
    assert 'fastcgi_pass unix:%s;' % SOCKET in conf
    assert 'default_server' in conf
    enabled = host.file('/etc/nginx/sites-enabled/shop.conf')
    assert enabled.is_symlink
    assert enabled.linked_to == VHOST
    assert not host.file('/etc/nginx/sites-enabled/default').exists


def test_pool_socket_exists_for_the_web_server(host):
    sock = host.file(SOCKET)
    assert sock.is_socket
    assert sock.user == 'www-data'
    assert sock.mode == 0o660


def test_php_answers_through_nginx_from_the_real_release_path(host):
    out = host.check_output('curl -sS -f http://127.0.0.1/some/route?x=1')
    seen = json.loads(out)
    assert seen['script_filename'] == ROOT + '/releases/t1/public/index.php'
    assert seen['document_root'] == ROOT + '/releases/t1/public'
    assert seen['file'] == ROOT + '/releases/t1/public/index.php'
    assert seen['uri'] == '/some/route?x=1'
    assert seen['user'] == 'www-data'
    assert seen['opcache'] == '1'
    assert seen['validate_timestamps'] == '1'


def test_hidden_files_and_missing_scripts_are_not_run(host):
    assert _status(host, '/.env') == '403'
    assert _status(host, '/missing.php') == '404'


def test_process_control_timeout_is_set_globally(host):
    result = host.run('php-fpm8.2 -tt')
    assert result.rc == 0, result.stderr
    dump = result.stdout + result.stderr
    assert 'process_control_timeout = 30s' in dump
    assert host.file('/etc/php/8.2/fpm/pool.d/00-stagehand-global.conf').content_string.count('[global]') == 1


def test_php_fpm_reload_lets_a_request_in_flight_finish(host):
    # A request sleeping 2 s is in flight when php-fpm reloads: with
    # process_control_timeout = 0 it would be cut (502); here it must finish.
    out = host.check_output(
        'curl -s -o /dev/null -w "%{http_code}" "http://127.0.0.1/?sleep=2000" & '
        'sleep 0.5; systemctl reload php8.2-fpm; wait')
    assert out == '200'


def test_db_user_connects_with_its_password_only(host):
    ok = host.run("MYSQL_PWD='%s' mysql -ushop -N -B -e 'SELECT DATABASE()' shop" % DB_PASSWORD)
    assert ok.rc == 0, ok.stderr
    assert ok.stdout.strip() == 'shop'
    bad = host.run("MYSQL_PWD=wrong mysql -ushop -N -B -e 'SELECT 1' shop")
    assert bad.rc != 0
    assert 'Access denied' in bad.stderr
    charset = host.check_output("mysql -N -B -e \"SELECT DEFAULT_CHARACTER_SET_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME='shop'\"")
    assert charset.strip() == 'utf8mb4'


def test_mariadb_listens_on_loopback_only(host):
    # not *:3306, which Debian's mariadb.socket would add
    assert _listeners(host, 3306) == [('tcp', '127.0.0.1:3306')]


def test_memcached_listens_on_loopback_only(host):
    listeners = _listeners(host, 11211)
    assert listeners == [('tcp', '127.0.0.1:11211')], listeners
    assert host.run('printf "stats\\r\\nquit\\r\\n" | timeout 5 bash -c "exec 3<>/dev/tcp/127.0.0.1/11211; cat >&3; cat <&3"').stdout.startswith('STAT pid')


def test_deploy_root_skeleton(host):
    root = host.file(ROOT)
    assert root.is_directory and root.user == 'root' and root.mode == 0o755
    shared = host.file(ROOT + '/shared')
    assert shared.is_directory and shared.user == 'root' and shared.mode == 0o755
    storage = host.file(ROOT + '/shared/storage')
    assert storage.is_directory
    assert storage.user == 'www-data' and storage.group == 'www-data'
    assert storage.mode == 0o775
    assert not host.file(ROOT + '/shared/.env').exists


def test_rejected_changes_left_the_old_configuration_in_force(host):
    assert 'this_is_not_a_directive' not in host.file(VHOST).content_string
    assert 'this_is_not_a_directive' not in host.file(POOL).content_string
    assert host.run('php-fpm8.2 -t').rc == 0
    assert _status(host, '/') == '200'
    for tree in ('/etc/nginx', '/etc/php/8.2/fpm'):
        assert not host.file(tree + '/.stagehand-patch').exists, tree


def test_preview_server_listens_on_loopback_only_and_serves_the_preview_link(host):
    assert _listeners(host, 8180) == [('tcp', '127.0.0.1:8180')]
    # nothing staged yet: the preview link does not exist, so the preview server has nothing to serve
    assert not host.file(ROOT + '/preview').exists
    assert host.check_output('curl -s -o /dev/null -w "%%{http_code}" %s', 'http://127.0.0.1:8180/') == '404'
    conf = host.file(VHOST).content_string
    assert 'listen 127.0.0.1:8180;' in conf and 'root %s/preview/public;' % ROOT in conf


# the side effect's second site: its web root is the top of the release (nginx_root .../current)
TOP_DENIED = ['/vendor/autoload.php', '/vendor/README', '/vendor/', '/storage/logs/app.log', '/var/cache.txt', '/composer.json',
              '/composer.lock', '/stagehand.yml', '/migrations/0001_a.up.sql', '/bin/console', '/RELEASE', '/vendor']


def test_a_web_root_at_the_top_of_the_release_denies_what_is_not_meant_to_be_served(host):
    def status(path):
        return host.check_output('curl -s -o /dev/null -w "%%{http_code}" %s', 'http://127.0.0.1:8089' + path)

    got = dict((path, status(path)) for path in TOP_DENIED)
    assert got == dict((path, '403') for path in TOP_DENIED), got
    assert host.check_output('curl -s %s', 'http://127.0.0.1:8089/vendor/autoload.php') != "vendor code ran"
    assert status('/style.css') == '200'
    assert status('/vendor-notes.txt') == '200'
    assert host.check_output('curl -s %s', 'http://127.0.0.1:8089/') == 'top'
    # the site whose web root is public/ has no such rule: nothing outside public/ is reachable there anyway
    assert 'composer' not in host.file(VHOST).content_string
