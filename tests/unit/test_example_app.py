# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The example app (examples/app) and its fixture repository (tests/fixtures/make-app-repo).

Every tag must be what the deploy tests expect (migrations, page and health changes),
every PHP file of every tag must compile, and v1 must build offline with Composer.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
APP = os.path.join(REPO, 'examples', 'app')
MAKE_APP_REPO = os.path.join(REPO, 'tests', 'fixtures', 'make-app-repo')
TAGS = ['v1', 'v2', 'v3', 'v4-broken-health', 'v5-bad-migration']
MARKER = '-- stagehand: irreversible'
# Made by a build or linked in by a deploy: never part of the app's source.
NOT_SOURCE = ('vendor', 'RELEASE', '.env', 'storage')

TOOLS_HINT = 'install it with apt-get (scripts/lib.sh ensure_controller_tools does)'
pytestmark = pytest.mark.skipif(shutil.which('git') is None, reason='git is not installed; ' + TOOLS_HINT)
needs_php = pytest.mark.skipif(shutil.which('php') is None, reason='php (php-cli) is not installed; ' + TOOLS_HINT)
needs_composer = pytest.mark.skipif(
    shutil.which('php') is None or shutil.which('composer') is None,
    reason='php (php-cli) or composer is not installed; ' + TOOLS_HINT,
)


def run(argv, **kwargs):
    return subprocess.run(argv, check=True, capture_output=True, text=True, **kwargs).stdout


def git(repo, *args):
    return run(['git', '-C', repo] + list(args))


def tree(repo, tag):
    """{path: blob id} of every file of tag."""
    entries = {}
    for line in git(repo, 'ls-tree', '-r', tag).splitlines():
        meta, path = line.split('\t', 1)
        entries[path] = meta.split()[2]
    return entries


def changed(repo, old, new):
    """Paths added, removed or modified from tag old to tag new."""
    before, after = tree(repo, old), tree(repo, new)
    return {path for path in set(before) | set(after) if before.get(path) != after.get(path)}


def migrations(repo, tag):
    return sorted(os.path.basename(p) for p in tree(repo, tag) if p.startswith('migrations/'))


def show(repo, tag, path):
    return git(repo, 'show', '%s:%s' % (tag, path))


@pytest.fixture(scope='module')
def app_repo(tmp_path_factory):
    dest = str(tmp_path_factory.mktemp('app') / 'repo')
    out = run([MAKE_APP_REPO, dest])
    return dest, out


def test_tags_and_history(app_repo):
    repo, out = app_repo
    assert sorted(git(repo, 'tag', '--list').split()) == sorted(TAGS)
    printed = dict(line.split() for line in out.splitlines())
    assert sorted(printed) == sorted(TAGS)
    commit = {tag: git(repo, 'rev-parse', tag + '^{commit}').strip() for tag in TAGS}
    assert printed == commit
    parent = {tag: git(repo, 'rev-parse', tag + '^{commit}^').strip() for tag in TAGS[1:]}
    assert parent == {'v2': commit['v1'], 'v3': commit['v2'], 'v4-broken-health': commit['v2'], 'v5-bad-migration': commit['v2']}
    assert git(repo, 'rev-parse', '--abbrev-ref', 'HEAD').strip() == 'main'
    assert git(repo, 'rev-parse', 'HEAD').strip() == commit['v3']
    assert git(repo, 'status', '--porcelain') == ''
    author = git(repo, 'log', '-1', '--format=%an <%ae> %aI %cI', 'v1').strip()
    assert author == 'Stagehand Example <example@stagehand.invalid> 2026-01-01T12:00:00+00:00 2026-01-01T12:00:00+00:00'


def test_same_commits_on_every_run(app_repo, tmp_path):
    assert run([MAKE_APP_REPO, str(tmp_path / 'again')]) == app_repo[1]


def test_refuses_a_non_empty_destination(tmp_path):
    (tmp_path / 'keep.txt').write_text('mine')
    result = subprocess.run([MAKE_APP_REPO, str(tmp_path)], capture_output=True, text=True, check=False)
    assert result.returncode != 0
    assert 'not empty' in result.stderr
    assert sorted(os.listdir(str(tmp_path))) == ['keep.txt']


def test_v1_is_the_example_app(app_repo):
    repo = app_repo[0]
    source = {}
    for top, dirs, names in os.walk(APP):
        rel_top = os.path.relpath(top, APP)
        dirs[:] = [d for d in dirs if rel_top != '.' or d not in NOT_SOURCE]
        for name in names:
            rel = os.path.normpath(os.path.join(rel_top, name))
            if rel not in NOT_SOURCE:
                with open(os.path.join(top, name), encoding='utf-8') as f:
                    source[rel] = f.read()
    assert sorted(tree(repo, 'v1')) == sorted(source)
    for path, content in source.items():
        assert show(repo, 'v1', path) == content, path


def test_no_tag_holds_build_or_deploy_files(app_repo):
    repo = app_repo[0]
    for tag in TAGS:
        paths = tree(repo, tag)
        assert not [p for p in paths if p.split('/')[0] in NOT_SOURCE], tag
        assert {'composer.json', 'composer.lock', 'public/index.php', 'src/Release.php', 'src/Probe/Late.php'} <= set(paths)


def test_migrations_of_each_tag(app_repo):
    repo = app_repo[0]
    v1 = ['0001_create_visits.down.sql', '0001_create_visits.up.sql']
    v2 = v1 + ['0002_add_visits_user_agent.down.sql', '0002_add_visits_user_agent.up.sql']
    assert migrations(repo, 'v1') == v1
    assert migrations(repo, 'v2') == v2
    assert migrations(repo, 'v3') == v2 + ['0003_purge_old_visits.up.sql']
    assert migrations(repo, 'v4-broken-health') == v2
    assert migrations(repo, 'v5-bad-migration') == sorted(
        v2 + ['0004_index_visits_by_release.down.sql', '0004_index_visits_by_release.up.sql'])
    # Only 0003 is irreversible: the marker line and no down file.
    assert MARKER in show(repo, 'v3', 'migrations/0003_purge_old_visits.up.sql').splitlines()
    for tag in TAGS:
        for name in migrations(repo, tag):
            if name != '0003_purge_old_visits.up.sql':
                assert MARKER not in show(repo, tag, 'migrations/' + name), (tag, name)
    assert 'ADD COLUMN user_agent VARCHAR(255) NULL' in show(repo, 'v2', 'migrations/0002_add_visits_user_agent.up.sql')
    assert 'DROP COLUMN user_agent' in show(repo, 'v2', 'migrations/0002_add_visits_user_agent.down.sql')
    # v5's migration is broken on purpose: the CREATE INDEX statement is never closed.
    bad = show(repo, 'v5-bad-migration', 'migrations/0004_index_visits_by_release.up.sql')
    assert 'CREATE INDEX visits_release_name ON visits (release_name;' in bad


def test_what_each_tag_changes(app_repo):
    repo = app_repo[0]
    assert changed(repo, 'v1', 'v2') == {
        'public/index.php', 'src/Visits.php',
        'migrations/0002_add_visits_user_agent.up.sql', 'migrations/0002_add_visits_user_agent.down.sql',
    }
    assert changed(repo, 'v2', 'v3') == {'migrations/0003_purge_old_visits.up.sql'}
    assert changed(repo, 'v2', 'v4-broken-health') == {'public/index.php'}
    assert changed(repo, 'v2', 'v5-bad-migration') == {
        'migrations/0004_index_visits_by_release.up.sql', 'migrations/0004_index_visits_by_release.down.sql',
    }
    assert "'Hello from the stagehand example app!'" in show(repo, 'v1', 'public/index.php')
    assert "'Welcome to the stagehand example app!" in show(repo, 'v2', 'public/index.php')
    assert "'sessions' => check(" in show(repo, 'v4-broken-health', 'public/index.php')


@needs_php
def test_every_php_file_of_every_tag_compiles(app_repo):
    repo = app_repo[0]
    blobs = {}
    for tag in TAGS:
        for path, blob in tree(repo, tag).items():
            if path.endswith('.php'):
                blobs.setdefault(blob, '%s:%s' % (tag, path))
    assert len(blobs) >= 9
    failures = []
    for blob, where in sorted(blobs.items()):
        source = git(repo, 'cat-file', 'blob', blob)
        result = subprocess.run(['php', '-l'], input=source, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            failures.append('%s: %s%s' % (where, result.stdout, result.stderr))
    assert not failures


def php(release, code, **env):
    """Run PHP code in the release directory with its autoloader, return stdout."""
    return run(['php', '-r', "require 'vendor/autoload.php'; " + code], cwd=release, env=dict(os.environ, **env))


def front_controller(release, uri):
    """What public/index.php answers for uri when run by the PHP CLI (the body only)."""
    return run(['php', 'public/index.php'], cwd=release, env=dict(os.environ, REQUEST_URI=uri))


@needs_composer
def test_v1_builds_offline_and_runs(app_repo, tmp_path):
    repo = app_repo[0]
    release = tmp_path / 'v1'
    release.mkdir()
    archive = tmp_path / 'v1.tar'
    git(repo, 'archive', '-o', str(archive), 'v1')
    run(['tar', '-x', '-f', str(archive), '-C', str(release)])
    composer_env = dict(
        os.environ,
        COMPOSER_HOME=str(tmp_path / 'composer-home'),
        COMPOSER_CACHE_DIR=str(tmp_path / 'composer-cache'),
        COMPOSER_DISABLE_NETWORK='1',
        COMPOSER_ALLOW_SUPERUSER='1',
        COMPOSER_NO_INTERACTION='1',
    )
    result = subprocess.run(
        ['composer', 'install', '--no-dev', '--optimize-autoloader', '--no-progress'],
        cwd=str(release), env=composer_env, capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    with open(str(release / 'vendor' / 'composer' / 'autoload_classmap.php'), encoding='utf-8') as f:
        classmap = f.read()
    for name in ('Cache', 'Config', 'Database', 'Release', 'Response', 'Visits'):
        assert "'App\\\\%s' => $baseDir . '/src/%s.php'" % (name, name) in classmap

    release = str(release)
    # No RELEASE file yet: the release is 'unknown'.
    assert json.loads(front_controller(release, '/probe?ms=0'))['start'] == 'unknown'
    with open(os.path.join(release, 'RELEASE'), 'w', encoding='utf-8') as f:
        f.write('v1\n')
    assert json.loads(front_controller(release, '/probe')) == {'start': 'v1', 'end': 'v1', 'mixed': False, 'ms': 0}
    # No .env (and no pdo_mysql or memcached needed here): both checks fail, the release is named.
    assert json.loads(front_controller(release, '/health')) == {'release': 'v1', 'db': 'error', 'cache': 'error'}
    assert front_controller(release, '/nowhere') == 'not found\n'

    # .env values are taken literally, and cache keys live under <app>:<release>:.
    with open(os.path.join(release, '.env'), 'w', encoding='utf-8') as f:
        f.write('DB_PASSWORD="S3cr;et$HOME!x"\nAPP_NAME="shop"\n')
    assert php(release, "echo App\\Config::load('.env')->require('DB_PASSWORD');") == 'S3cr;et$HOME!x'
    key = "echo App\\Cache::fromConfig(App\\Config::load('.env'), App\\Release::current())->key('first_seen');"
    assert php(release, key) == 'shop:v1:first_seen'
    # A RELEASE file that is not a release name is never echoed into headers or keys.
    with open(os.path.join(release, 'RELEASE'), 'w', encoding='utf-8') as f:
        f.write('v1\r\nX-Injected: yes\n')
    assert php(release, 'echo App\\Release::current();') == 'unknown'
