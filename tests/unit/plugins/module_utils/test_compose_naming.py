# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Issue 11: one rule names every release (defect 6); empty artifacts and ones without the web root are refused (defect 7)."""

from __future__ import annotations

import gzip
import json
import io
import os
import tarfile

import pytest

from ansible_collections.stagehand.deploy.plugins.lookup import composed
from ansible_collections.stagehand.deploy.plugins.module_utils._compose import ComposeError, run, served_subdir
from ansible_collections.stagehand.deploy.plugins.module_utils._names import InvalidName, release_name

from test_compose import git, make_repo, params, write  # pylint: disable=import-error

COMMIT = '0123456789abcdef0123456789abcdef01234567'


# -- the one naming rule ---------------------------------------------------------
@pytest.mark.parametrize('kwargs, name', [
    ({'version': 'v1.4.0', 'commit': COMMIT}, 'v1.4.0'),
    ({'version': 'main', 'commit': COMMIT, 'branch': True}, '0123456789ab'),
    ({'version': 'feature/x', 'commit': COMMIT}, '0123456789ab'),
    ({'version': 'v1', 'commit': COMMIT, 'release': 'alt'}, 'alt'),
    ({'version': 'main', 'commit': COMMIT, 'branch': True, 'release': 'alt'}, 'alt'),
    ({'artifact': '/tmp/build/shop-7.tar.gz'}, 'shop-7'),
    ({'artifact': '/tmp/build/shop-7.tgz'}, 'shop-7'),
    ({'artifact': '/tmp/build/shop-dir/'}, 'shop-dir'),
    ({'artifact': '/tmp/build/shop.tar.gz', 'release': 'other'}, 'other'),
])
def test_release_name_rule(kwargs, name):
    assert release_name(**kwargs) == name


@pytest.mark.parametrize('kwargs, fragment', [
    ({'version': 'v1', 'release': 'bad\n'}, "'bad\\n'"),
    ({'artifact': '/tmp/sp ace.tar.gz'}, "'sp ace'"),
    ({}, 'no release name'),
])
def test_release_name_refusals_quote_the_value(kwargs, fragment):
    with pytest.raises(InvalidName) as exc:
        release_name(**kwargs)
    assert fragment in str(exc.value)


def test_compose_names_the_release_by_the_rule(tmp_path):
    repo = make_repo(tmp_path / 'repo')
    store = tmp_path / 'store'
    commit = git(repo, 'rev-parse', 'HEAD')
    assert run(params(repo, store, release=None))['release'] == 'v1'
    assert run(params(repo, store, ref='main', release=None))['release'] == commit[:12]
    assert run(params(repo, store, ref=commit, release=None))['release'] == commit  # a 40-character commit id is a valid name


def lookup(repo, store, version, release='', artifact=None, web_root=''):
    """The stagehand.deploy.composed lookup, its options given directly (no plugin loader in unit tests)."""
    plugin = composed.LookupModule()
    options = {'repo': str(repo) if repo else None, 'version': version, 'store': str(store), 'app': 'shop', 'release': release,
               'artifact': str(artifact) if artifact else None, 'web_root': web_root}
    plugin.set_options = lambda var_options=None, direct=None: None
    plugin.get_option = options.__getitem__
    return plugin.run([], {})[0]


def test_an_earlier_release_name_never_wins_over_the_rule(tmp_path):
    """-e version=v1 -e release=v1alt, then -e version=v1: the second deploy is named v1 (defect 6)."""
    repo = make_repo(tmp_path / 'repo')
    store = tmp_path / 'store'
    alt = run(params(repo, store, release='v1alt'))
    assert lookup(repo, store, 'v1', 'v1alt')['release'] == 'v1alt'
    # the store's ref pointer names v1alt; the rule names v1: the lookup offers nothing, the compose makes v1
    assert lookup(repo, store, 'v1') == {}
    again = run(params(repo, store, release=None))
    assert again['release'] == 'v1' and not again['reused'] and again['compose_id'] != alt['compose_id']
    assert lookup(repo, store, 'v1')['release'] == 'v1'
    with tarfile.open(lookup(repo, store, 'v1')['artifact']) as tar:
        assert tar.extractfile('RELEASE').read() == b'v1\n'


def test_the_lookup_finds_the_compose_of_an_artifact_by_its_content_and_name(tmp_path):
    """Issue 10: the fast path takes an artifact's compose from the store, as it does a version's."""
    src = tmp_path / 'shop-1.4'
    write(src / 'public' / 'index.php', 'x')
    store = tmp_path / 'store'
    assert lookup(None, store, None, artifact=src) == {}
    made = run(params(None, store, ref=None, artifact=str(src), release=None))
    found = lookup(None, store, None, artifact=src)
    assert found['compose_id'] == made['compose_id'] and found['release'] == 'shop-1.4' == made['release']
    assert lookup(None, store, None, artifact=src, release='other') == {}  # made for another name
    assert lookup(None, store, None, artifact=src, web_root='/srv/www/app/current/web') == {}  # checked for another web root
    write(src / 'public' / 'index.php', 'changed')
    assert lookup(None, store, None, artifact=src) == {}  # other content
    assert lookup(None, store, 'v1', artifact=src) == {}  # both given: the deploy refuses that itself


def test_the_lookup_names_a_branch_by_its_commit(tmp_path):
    repo = make_repo(tmp_path / 'repo')
    store = tmp_path / 'store'
    commit = git(repo, 'rev-parse', 'HEAD')
    made = run(params(repo, store, ref='main', release=None))
    assert made['release'] == commit[:12]
    assert lookup(repo, store, 'main')['compose_id'] == made['compose_id']


# -- content checks --------------------------------------------------------------
def empty_tgz(path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode='w'):
        pass
    with gzip.open(str(path), 'wb') as f:
        f.write(buf.getvalue())


@pytest.mark.parametrize('web_root, sub', [
    ('/srv/www/shop/current/public', 'public'),
    ('/srv/www/shop/current/public/', 'public'),
    ('/srv/www/shop/current/web/root', 'web/root'),
    ('/srv/www/shop/current', None),
    ('/var/www/html', None),
    ('public', 'public'),
    ('', None),
    (None, None),
])
def test_served_subdir(web_root, sub):
    assert served_subdir(web_root) == sub


def test_an_empty_artifact_is_refused_and_nothing_published(tmp_path, snapshot):
    tgz = tmp_path / 'empty.tar.gz'
    empty_tgz(tgz)
    store = tmp_path / 'store'
    (store / 'shop').mkdir(parents=True)
    before = snapshot(str(store))
    with pytest.raises(ComposeError) as exc:
        run(params(None, store, ref=None, artifact=str(tgz), release=None, web_root='/srv/www/shop/current/public'))
    assert exc.value.msg.startswith("the artifact %r holds no files" % str(tgz))
    assert 'nothing was published' in exc.value.msg
    assert snapshot(str(store)) == before


def test_an_artifact_with_only_directories_and_release_is_refused(tmp_path):
    src = tmp_path / 'build'
    (src / 'public').mkdir(parents=True)
    write(src / 'RELEASE', 'old\n')
    with pytest.raises(ComposeError) as exc:
        run(params(None, tmp_path / 'store', ref=None, artifact=str(src), release='r'))
    assert 'holds no files besides RELEASE' in exc.value.msg


def test_an_artifact_without_the_served_directory_is_refused(tmp_path):
    src = tmp_path / 'build'
    write(src / 'index.php', 'x')
    with pytest.raises(ComposeError) as exc:
        run(params(None, tmp_path / 'store', ref=None, artifact=str(src), release='r', web_root='/srv/www/shop/current/public'))
    msg = exc.value.msg
    assert "the artifact %r has no directory 'public/'" % str(src) in msg
    assert "'/srv/www/shop/current/public'" in msg and 'nothing was published' in msg
    assert not os.path.exists(str(tmp_path / 'store' / 'shop' / 'composes'))
    # served from the release root: accepted
    assert run(params(None, tmp_path / 'store', ref=None, artifact=str(src), release='r', web_root='/srv/www/shop/current'))['compose_id']


def test_a_version_without_the_served_directory_is_refused(tmp_path):
    repo = make_repo(tmp_path / 'repo')
    with pytest.raises(ComposeError) as exc:
        run(params(repo, tmp_path / 'store', web_root='/srv/www/shop/current/web'))
    assert "version 'v1' (commit " in exc.value.msg and "has no directory 'web/'" in exc.value.msg
    assert run(params(repo, tmp_path / 'store', web_root='/srv/www/shop/current/public'))['release'] == 'v1'


# -- a corrupt stored compose is quarantined and composed again (defect 10) -------
def drop_members(artifact, names):
    """Rewrite ``artifact`` without the members ``names`` (the manifest beside it unchanged): a corrupt compose."""
    with tarfile.open(artifact) as tar:
        members = [(m, tar.extractfile(m).read() if m.isreg() else None) for m in tar.getmembers()]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode='w') as tar:
        for member, data in members:
            if member.name.lstrip('./') not in names:
                tar.addfile(member, io.BytesIO(data) if data is not None else None)
    with gzip.open(artifact, 'wb') as f:
        f.write(buf.getvalue())


@pytest.mark.parametrize('recorded', [True, False], ids=['artifact-sha256-recorded', 'older-compose-full-scan'])
def test_a_corrupt_stored_compose_is_quarantined_and_composed_again(tmp_path, recorded):
    repo = make_repo(tmp_path / 'repo')
    store = tmp_path / 'store'
    first = run(params(repo, store))
    inputs_path = first['inputs_path']
    if not recorded:  # a compose made before the artifact's sha256 was recorded
        doc = json.loads(open(inputs_path).read())
        del doc['artifact_sha256']
        with open(inputs_path, 'w') as f:
            json.dump(doc, f)
    drop_members(first['artifact'], {'public/index.php', 'bin/tool'})
    # the lookup (fast path) finds it corrupt: quarantined, nothing offered
    assert lookup(repo, store, 'v1') == {}
    quarantine = store / 'shop' / 'quarantine'
    moved = os.listdir(str(quarantine))
    assert len(moved) == 1 and moved[0].startswith(first['compose_id'].split(':')[1] + '-')
    assert not os.path.exists(first['dir'])
    # the compose module composes it again, to the same id and good content
    again = run(params(repo, store))
    assert again['compose_id'] == first['compose_id'] and not again['reused'] and again['warnings'] == []
    with tarfile.open(again['artifact']) as tar:
        assert tar.extractfile('public/index.php').read() == b'<?php echo "hi";\n'
    assert lookup(repo, store, 'v1')['compose_id'] == first['compose_id']


def test_the_compose_module_quarantines_a_corrupt_compose_with_a_warning(tmp_path):
    repo = make_repo(tmp_path / 'repo')
    store = tmp_path / 'store'
    first = run(params(repo, store))
    drop_members(first['artifact'], {'public/index.php'})
    again = run(params(repo, store))
    assert not again['reused'] and again['compose_id'] == first['compose_id']
    [warning] = again['warnings']
    assert first['compose_id'] in warning and 'failed its integrity check' in warning and "'%s" % str(store / 'shop' / 'quarantine') in warning
    assert 'artifact.tar.gz has the sha256' in warning
    assert run(params(repo, store))['reused'] is True


def test_a_compose_without_its_manifest_is_quarantined(tmp_path):
    repo = make_repo(tmp_path / 'repo')
    store = tmp_path / 'store'
    first = run(params(repo, store))
    os.unlink(first['manifest'])
    again = run(params(repo, store))
    assert 'it lacks manifest.json' in again['warnings'][0] and os.path.isfile(again['manifest'])


def test_check_mode_quarantines_nothing(tmp_path):
    repo = make_repo(tmp_path / 'repo')
    store = tmp_path / 'store'
    first = run(params(repo, store))
    drop_members(first['artifact'], {'public/index.php'})
    checked = run(params(repo, store), check_mode=True)
    assert checked['changed'] is True and checked['reused'] is False
    assert os.path.isdir(first['dir']) and not os.path.exists(str(store / 'shop' / 'quarantine'))
