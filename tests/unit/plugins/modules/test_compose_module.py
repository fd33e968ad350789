# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import json
import os
import subprocess

import pytest

from ansible_collections.stagehand.deploy.plugins.modules.compose import main

GIT_ENV = {'GIT_CONFIG_NOSYSTEM': '1', 'GIT_CONFIG_GLOBAL': os.devnull, 'GIT_AUTHOR_NAME': 'T', 'GIT_AUTHOR_EMAIL': 't@x.invalid',
           'GIT_COMMITTER_NAME': 'T', 'GIT_COMMITTER_EMAIL': 't@x.invalid',
           'GIT_AUTHOR_DATE': '2026-01-01T00:00:00+0000', 'GIT_COMMITTER_DATE': '2026-01-01T00:00:00+0000'}


@pytest.fixture
def repo(tmp_path):
    path = tmp_path / 'repo'
    (path / 'public').mkdir(parents=True)
    (path / 'public' / 'index.php').write_text('<?php echo 1;\n')
    (path / 'stagehand.yml').write_text('version: 1\nbuild:\n  - [sh, -c, "echo built > built.txt"]\nshared: [storage]\n')
    env = dict(os.environ, **GIT_ENV)
    for argv in (['init', '-q', '-b', 'main'], ['add', '-A'], ['commit', '-q', '-m', 'x'], ['tag', 'v1']):
        subprocess.run(['git', '-C', str(path)] + argv, env=env, check=True)
    return path


def args(repo, store, **kw):
    a = {'repo': str(repo), 'ref': 'v1', 'release': 'v1', 'app': 'shop', 'store': str(store)}
    a.update(kw)
    return {k: v for k, v in a.items() if v is not None}


def test_compose_then_reuse(run_module, tmp_path, repo):
    store = tmp_path / 'store'
    first = run_module(main, args(repo, store))
    assert first['changed'] is True and first['reused'] is False and not first.get('failed')
    for key in ('compose_id', 'dir', 'artifact', 'manifest', 'signature', 'inputs', 'shared', 'platform', 'reused', 'release'):
        assert key in first, key
    assert first['shared'] == ['storage'] and first['release'] == 'v1' and first['signature'] is None
    assert os.path.isfile(first['artifact'])
    second = run_module(main, args(repo, store))
    assert second['changed'] is False and second['reused'] is True
    assert second['compose_id'] == first['compose_id']


def test_check_mode_changes_nothing(run_module, tmp_path, repo, snapshot):
    store = tmp_path / 'store'
    result = run_module(main, args(repo, store), check_mode=True)
    assert result['changed'] is True and result['compose_id'] is None
    assert not store.exists()


@pytest.mark.parametrize('bad, words', [
    ({'release': '../x'}, ['release name']),
    ({'release': '.hidden'}, ['release name']),
    ({'app': 'a/b'}, ["app 'a/b' is not a valid application name"]),
    ({'ref': 'nope'}, ["version 'nope' is not a tag, branch or commit", 'there is no earlier good compose of nope']),
    ({'ref': '../../etc/x'}, ["'..' component"]),
    ({'store': 'ftp://x/y'}, ['use a local directory or an http:// or https:// URL']),
    ({'signing_key': '/nonexistent/key'}, ['signing_key /nonexistent/key does not exist']),
    ({'default_build': [[]]}, ['default_build[0]']),
    ({'ref': None}, ['give exactly one of ref']),
    ({'artifact': '/nonexistent.tar.gz', 'ref': None}, ['artifact /nonexistent.tar.gz is not a directory or a .tar.gz']),
])
def test_bad_input_changes_nothing(run_module, tmp_path, repo, snapshot, bad, words):
    store = tmp_path / 'store'
    ok = run_module(main, args(repo, store))
    assert not ok.get('failed')
    before = snapshot(str(tmp_path))
    call = args(repo, store)
    call.update(bad)
    result = run_module(main, {k: v for k, v in call.items() if v is not None})
    assert result.get('failed') is True, result
    for word in words:
        assert word in result['msg']
    assert snapshot(str(tmp_path)) == before


def test_failed_build_names_the_last_good_compose(run_module, tmp_path, repo, snapshot):
    store = tmp_path / 'store'
    good = run_module(main, args(repo, store, ref='main', release='m1'))
    (repo / 'stagehand.yml').write_text('version: 1\nbuild:\n  - [sh, -c, "exit 7"]\n')
    env = dict(os.environ, **GIT_ENV)
    subprocess.run(['git', '-C', str(repo), 'commit', '-q', '-am', 'broken'], env=env, check=True)
    before = snapshot(str(store))
    result = run_module(main, args(repo, store, ref='main', release='m2'))
    assert result['failed'] is True
    assert 'exit code 7' in result['msg']
    assert 'the last good compose of main (%s) is unchanged' % good['compose_id'] in result['msg']
    assert result['build'][0]['rc'] == 7
    assert snapshot(str(store)) == before
    assert json.load(open(str(store / 'shop' / 'refs' / 'main.json')))['compose_id'] == good['compose_id']
