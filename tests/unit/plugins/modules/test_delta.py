# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The delta module: what is sent to a host, manifest deltas, and rebuilding manifest.json on the host."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile

import pytest

from ansible_collections.stagehand.deploy.plugins.module_utils import _delta, _manifest
from ansible_collections.stagehand.deploy.plugins.module_utils._atomic import dump_json
from ansible_collections.stagehand.deploy.plugins.modules import release, release_info
from ansible_collections.stagehand.deploy.plugins.modules.delta import main
from ansible_collections.stagehand.deploy.tests.unit.releases import write_tree

APP = {'app/f%03d.php' % i: ('<?php // file %d' % i).encode() for i in range(200)}
APP.update({
    'index.php': b'<?php require "app/f000.php";',
    'bin/console': (b'#!/usr/bin/env php', 0o755),
    'storage/.gitignore': b'*\n',
    'empty.txt': b'',
})


class Store:
    """A controller-side artifact store: <store>/composes/<hex>/{artifact.tar.gz,manifest.json}."""

    def __init__(self, base):
        self.composes = os.path.join(str(base), 'composes')
        self.base = str(base)
        os.makedirs(self.composes, exist_ok=True)

    def compose(self, name, files, links=None, extra=None):
        top = write_tree(os.path.join(self.base, 'trees', name), files, links)
        manifest = _manifest.build_manifest(top)
        directory = os.path.join(self.composes, manifest.digest[len('sha256:'):])
        os.makedirs(directory, exist_ok=True)
        artifact = os.path.join(directory, 'artifact.tar.gz')
        with tarfile.open(artifact, 'w:gz') as tar:
            tar.add(top, arcname='.')
        _manifest.save_manifest(os.path.join(directory, 'manifest.json'), manifest, **(extra or {}))
        return {'id': manifest.digest, 'dir': directory, 'artifact': artifact, 'manifest': os.path.join(directory, 'manifest.json'),
                'tree': top}


def changed(files, changes):
    out = dict(files)
    for path, content in changes.items():
        if content is None:
            out.pop(path)
        else:
            out[path] = content
    return out


def members(path):
    with tarfile.open(path, 'r:gz') as tar:
        return [(m.name, m.type, oct(m.mode), m.uid, m.gid, m.mtime, m.uname) for m in tar.getmembers()]


@pytest.fixture
def store(tmp_path):
    return Store(tmp_path / 'store')


@pytest.fixture
def out(tmp_path):
    path = tmp_path / 'out'
    path.mkdir()
    return str(path)


def create(run_module, compose, out, have=(), composes=None, manifests=None, shared=(), check_mode=False):
    args = {'manifest': compose['manifest'], 'artifact': compose['artifact'], 'dest': out,
            'have': [{'manifest_digest': h, 'status': 'complete'} if isinstance(h, str) else h for h in have],
            'manifests': manifests if manifests is not None else [os.path.dirname(compose['dir'])], 'shared': list(shared)}
    if composes is not None:
        args['host_composes'] = composes
    return run_module(main, args, check_mode=check_mode)


# -- selection ----------------------------------------------------------------------------------
def test_first_deploy_sends_every_distinct_content_once(run_module, store, out):
    files = dict(APP, **{'app/copy.php': APP['app/f001.php']})
    v1 = store.compose('v1', files)
    result = create(run_module, v1, out)
    assert result['changed'] is True, result
    distinct = {hashlib.sha256(c if isinstance(c, bytes) else c[0]).hexdigest() for c in files.values()}
    assert result['files'] == len(distinct) == len(files) - 1
    assert result['empty'] is False
    names = [m[0] for m in members(result['archive'])]
    assert names == sorted(names)
    assert 'app/copy.php' in names and 'app/f001.php' not in names  # the first path of that content
    assert result['manifest_delta'] is None and result['base'] is None
    assert result['manifest_bytes'] == os.path.getsize(v1['manifest'])
    assert result['archive_bytes'] == os.path.getsize(result['archive'])
    assert result['sent_bytes'] == result['archive_bytes'] + result['manifest_bytes']


def test_one_changed_file_sends_that_file(run_module, store, out):
    v1 = store.compose('v1', APP)
    v2 = store.compose('v2', changed(APP, {'app/f042.php': b'<?php // changed'}))
    result = create(run_module, v2, out, have=[v1['id']], composes=[v1['id']])
    assert result['changed'] is True, result
    assert (result['files'], result['bytes'], result['paths']) == (1, len(b'<?php // changed'), ['app/f042.php'])
    assert [m[0] for m in members(result['archive'])] == ['app/f042.php']
    with tarfile.open(result['archive'], 'r:gz') as tar:
        assert tar.extractfile('app/f042.php').read() == b'<?php // changed'
    # the manifest goes as a delta of one entry against v1, much smaller than the manifest
    assert result['base'] == v1['id'] and result['manifest_delta_entries'] == 1
    assert result['manifest_bytes'] < os.path.getsize(v2['manifest']) / 10
    assert result['known'] == [v1['id']] and result['unknown'] == []


def test_nothing_to_send_when_the_host_has_the_compose(run_module, store, out):
    v1 = store.compose('v1', APP)
    open(os.path.join(out, 'delta.tar.gz'), 'wb').close()  # left from an earlier run
    result = create(run_module, v1, out, have=[v1['id']], composes=[v1['id']])
    assert result['empty'] is True and result['files'] == 0 and result['archive'] is None
    assert not os.path.exists(os.path.join(out, 'delta.tar.gz'))
    assert result['manifest_delta_entries'] == 0


def test_only_complete_releases_count(run_module, store, out):
    v1 = store.compose('v1', APP)
    result = create(run_module, v1, out, have=[{'manifest_digest': v1['id'], 'status': 'failed'},
                                               {'manifest_digest': v1['id'], 'status': 'complete', 'exists': False}])
    assert result['files'] == len(APP)


def test_unknown_compose_counts_as_missing(run_module, store, out):
    v1 = store.compose('v1', APP)
    other = 'sha256:' + 'a' * 64
    result = create(run_module, v1, out, have=[other], composes=[other])
    assert result['unknown'] == [other] and result['files'] == len(APP)


def test_shared_paths_are_neither_sent_nor_held(run_module, store, out):
    v1 = store.compose('v1', APP)
    # storage/.gitignore only exists below a shared path in v1: the host does not hold that content
    v2 = store.compose('v2', changed(APP, {'storage/.gitignore': None, 'app/ignore': b'*\n'}))
    result = create(run_module, v2, out, have=[{'manifest_digest': v1['id'], 'shared': ['storage'], 'status': 'complete'}])
    assert result['paths'] == ['app/ignore']
    # content below the new release's shared paths is not sent
    v3 = store.compose('v3', changed(APP, {'storage/new.txt': b'fresh'}))
    result = create(run_module, v3, out, have=[v1['id']], shared=['storage'])
    assert result['empty'] is True


def test_delta_archive_is_deterministic(run_module, store, tmp_path):
    v1 = store.compose('v1', APP)
    v2 = store.compose('v2', changed(APP, {'app/f001.php': b'1', 'app/f002.php': (b'2', 0o600), 'app/new/x.php': b'x'}))
    paths = []
    for name in ('a', 'b'):
        os.mkdir(str(tmp_path / name))
        result = create(run_module, v2, str(tmp_path / name), have=[v1['id']])
        paths.append(result['archive'])
    with open(paths[0], 'rb') as fa, open(paths[1], 'rb') as fb:
        assert fa.read() == fb.read()
    assert members(paths[0]) == [
        ('app/f001.php', tarfile.REGTYPE, '0o644', 0, 0, 0, ''),
        ('app/f002.php', tarfile.REGTYPE, '0o600', 0, 0, 0, ''),
        ('app/new/x.php', tarfile.REGTYPE, '0o644', 0, 0, 0, ''),
    ]
    again = create(run_module, v2, str(tmp_path / 'a'), have=[v1['id']])
    assert again['changed'] is False
    # the delta archive is a safe release source
    assert len(_manifest.manifest_from_tar(paths[0])) == 5  # and the directories it implies


def test_check_mode_writes_nothing(run_module, store, out, snapshot):
    v1 = store.compose('v1', APP)
    before = snapshot(out)
    result = create(run_module, v1, out, check_mode=True)
    assert result['files'] == len(APP)
    assert snapshot(out) == before


def test_artifact_not_matching_its_manifest_is_refused(run_module, store, out, snapshot):
    v1 = store.compose('v1', APP)
    v2 = store.compose('v2', changed(APP, {'index.php': b'<?php // v2'}))
    shutil.copy(v1['artifact'], v2['artifact'])  # the wrong artifact
    before = snapshot(out)
    result = create(run_module, v2, out, have=[v1['id']])
    assert result.get('failed') is True
    assert 'does not match its manifest' in result['msg'] and 'index.php' in result['msg']
    assert snapshot(out) == before


def test_missing_manifest_is_computed_from_the_artifact(run_module, store, out):
    v1 = store.compose('v1', APP)
    result = run_module(main, {'artifact': v1['artifact'], 'dest': out})
    assert result['compose_id'] == v1['id']
    assert result['manifest'] == os.path.join(out, 'manifest.json')
    assert _manifest.load_manifest(result['manifest']).digest == v1['id']


# -- manifest deltas ---------------------------------------------------------------------------
def test_manifest_delta_round_trip_is_byte_exact(store):
    v1 = store.compose('v1', APP)
    v2 = store.compose('v2', changed(APP, {'app/f007.php': None, 'app/f008.php': b'x', 'new/dir/file': b'n'}),
                       extra={'inputs': {'commit': 'abc'}, 'release': 'v2'})
    base = _manifest.load_manifest(v1['manifest'])
    with open(v2['manifest'], 'rb') as f:
        data = f.read()
    delta = _delta.make_manifest_delta(base, json.loads(data), data)
    assert delta['remove'] == ['app/f007.php']
    assert [e['path'] for e in delta['set']] == ['app/f008.php', 'new', 'new/dir', 'new/dir/file']
    assert delta['document'] == {'inputs': {'commit': 'abc'}, 'release': 'v2'}
    assert _delta.apply_manifest_delta(base, json.loads(dump_json(delta))) == data
    # against itself: empty
    same = _delta.make_manifest_delta(base, json.loads(dump_json(base.to_json())), dump_json(base.to_json()))
    assert (same['set'], same['remove']) == ([], [])


@pytest.mark.parametrize('tamper, what', [
    (lambda d: d.update(digest='sha256:' + 'b' * 64), 'has digest'),
    (lambda d: d['set'][0].update(size=12345), 'has digest'),
    (lambda d: d.update(base='sha256:' + 'c' * 64), 'is against'),
    (lambda d: d['remove'].append('nope'), 'does not have'),
    (lambda d: d['document'].update(x=1), 'is not the file'),
    (lambda d: d.pop('sha256'), 'exactly'),
])
def test_tampered_manifest_delta_is_refused(store, tamper, what):
    v1 = store.compose('v1', APP)
    v2 = store.compose('v2', changed(APP, {'index.php': b'2'}))
    base = _manifest.load_manifest(v1['manifest'])
    with open(v2['manifest'], 'rb') as f:
        data = f.read()
    delta = _delta.make_manifest_delta(base, json.loads(data), data)
    tamper(delta)
    with pytest.raises(_delta.DeltaError, match=what):
        _delta.apply_manifest_delta(base, delta)


# -- on the host: rebuild -------------------------------------------------------------------------
def host_with(run_module, tmp_path, compose):
    """A deploy root holding ``compose`` as release v1, with its manifest kept (as a first deploy leaves it)."""
    root = str(tmp_path / 'srv')
    os.makedirs(os.path.join(root, '.stagehand'))
    upload = os.path.join(root, '.stagehand', 'upload.manifest.json')
    shutil.copy(compose['manifest'], upload)
    done = run_module(main, {'operation': 'rebuild', 'root': root, 'compose_id': compose['id'], 'path': upload})
    assert done['changed'] is True and done['source'] == 'upload', done
    assert run_module(release.main, {'root': root, 'name': 'v1', 'src': compose['artifact'], 'manifest': upload})['changed'] is True
    os.unlink(upload)
    return root


def test_ship_and_stage_end_to_end(run_module, store, tmp_path):
    v1 = store.compose('v1', APP)
    root = host_with(run_module, tmp_path, v1)
    info = run_module(release_info.main, {'root': root, 'sizes': False, 'history': 0})
    assert info['composes'] == [v1['id']] and info['releases'][0]['size'] is None
    v2 = store.compose('v2', changed(APP, {'app/f100.php': b'<?php // v2'}), extra={'release': 'v2'})
    out = str(tmp_path / 'out')
    os.mkdir(out)
    shipment = create(run_module, v2, out, have=info['releases'], composes=info['composes'])
    assert shipment['files'] == 1 and shipment['base'] == v1['id']
    # "copy" to the host
    prefix = os.path.join(root, '.stagehand', 'upload-v2')
    shutil.copy(shipment['archive'], prefix + '.tar.gz')
    shutil.copy(shipment['manifest_delta'], prefix + '.manifest-delta.json')
    with open(v2['manifest'] + '.sig', 'w') as f:
        f.write('signature')
    shutil.copy(v2['manifest'] + '.sig', prefix + '.manifest.json.sig')
    rebuilt = run_module(main, {'operation': 'rebuild', 'root': root, 'compose_id': v2['id'], 'path': prefix + '.manifest.json',
                                'delta': prefix + '.manifest-delta.json'})
    assert rebuilt['changed'] is True and rebuilt['source'] == 'delta', rebuilt
    assert rebuilt['signature'] == prefix + '.manifest.json.sig'
    with open(v2['manifest'], 'rb') as a, open(prefix + '.manifest.json', 'rb') as b:
        assert a.read() == b.read()
    # v2 is kept as the manifest delta it came as (its base v1 is kept in full), its signature beside
    kept = os.path.join(root, '.stagehand', 'composes', v2['id'][7:] + '.json')
    assert rebuilt['stored'] == os.path.join(root, '.stagehand', 'composes', v2['id'][7:] + '.delta.json')
    assert os.path.isfile(rebuilt['stored']) and not os.path.exists(kept) and os.path.isfile(kept + '.sig')
    assert os.path.getsize(rebuilt['stored']) < os.path.getsize(v2['manifest']) / 20
    assert run_module(release_info.main, {'root': root, 'sizes': False, 'history': 0})['composes'] == sorted([v1['id'], v2['id']])
    staged = run_module(release.main, {'root': root, 'name': 'v2', 'src': prefix + '.tar.gz', 'manifest': prefix + '.manifest.json',
                                       'partial': True})
    assert staged['changed'] is True and (staged['linked'], staged['copied']) == (len(APP) - 1, 1), staged
    assert staged['manifest_digest'] == v2['id']
    assert _manifest.verify_tree(os.path.join(root, 'releases', 'v2'), _manifest.build_manifest(v2['tree'])) == []
    # nothing uploaded: the host rebuilds from its own copy, signature included
    for suffix in ('.tar.gz', '.manifest.json', '.manifest.json.sig', '.manifest-delta.json'):
        os.unlink(prefix + suffix)
    again = run_module(main, {'operation': 'rebuild', 'root': root, 'compose_id': v2['id'], 'path': prefix + '.manifest.json'})
    assert again['source'] == 'host' and again['signature'] == prefix + '.manifest.json.sig'
    # a stale upload of another compose left by a crashed run is replaced by the host's copy
    shutil.copy(v1['manifest'], prefix + '.manifest.json')
    stale = run_module(main, {'operation': 'rebuild', 'root': root, 'compose_id': v2['id'], 'path': prefix + '.manifest.json'})
    assert stale['changed'] is True and stale['source'] == 'host'
    assert _manifest.load_manifest(prefix + '.manifest.json').digest == v2['id']
    assert run_module(release.main, {'root': root, 'name': 'v2', 'manifest': prefix + '.manifest.json', 'partial': True})['changed'] is False


def test_rebuild_refuses_bad_input_and_writes_nothing(run_module, store, tmp_path, snapshot):
    v1 = store.compose('v1', APP)
    root = host_with(run_module, tmp_path, v1)
    v2 = store.compose('v2', changed(APP, {'index.php': b'2'}))
    path = os.path.join(root, '.stagehand', 'up.manifest.json')
    before = snapshot(root)
    # nothing uploaded and nothing kept
    result = run_module(main, {'operation': 'rebuild', 'root': root, 'compose_id': v2['id'], 'path': path})
    assert result.get('failed') is True and 'ship the manifest' in result['msg']
    # an uploaded manifest that is not the compose
    shutil.copy(v1['manifest'], path)
    before = snapshot(root)
    result = run_module(main, {'operation': 'rebuild', 'root': root, 'compose_id': v2['id'], 'path': path})
    assert result.get('failed') is True and 'not the compose id' in result['msg']
    assert snapshot(root) == before
    # a delta for another compose
    with open(v2['manifest'], 'rb') as f:
        data = f.read()
    delta = _delta.make_manifest_delta(_manifest.load_manifest(v1['manifest']), json.loads(data), data)
    delta_path = os.path.join(root, '.stagehand', 'up.delta.json')
    with open(delta_path, 'wb') as f:
        f.write(dump_json(delta))
    before = snapshot(root)
    result = run_module(main, {'operation': 'rebuild', 'root': root, 'compose_id': v1['id'], 'path': path, 'delta': delta_path})
    assert result.get('failed') is True and 'not the compose' in result['msg']
    bad = run_module(main, {'operation': 'rebuild', 'root': root, 'compose_id': 'sha256:xyz', 'path': path})
    assert bad.get('failed') is True and 'compose id' in bad['msg']
    assert snapshot(root) == before


def test_rebuild_prunes_manifests_nothing_refers_to(run_module, store, tmp_path):
    v1 = store.compose('v1', APP)
    root = host_with(run_module, tmp_path, v1)
    composes = os.path.join(root, '.stagehand', 'composes')
    stale = os.path.join(composes, 'd' * 64 + '.json')
    shutil.copy(v1['manifest'], stale)
    v2 = store.compose('v2', changed(APP, {'index.php': b'2'}))
    path = os.path.join(root, '.stagehand', 'up.manifest.json')
    shutil.copy(v2['manifest'], path)
    result = run_module(main, {'operation': 'rebuild', 'root': root, 'compose_id': v2['id'], 'path': path})
    assert result['pruned'] == ['sha256:' + 'd' * 64]
    assert sorted(os.listdir(composes)) == sorted([v1['id'][7:] + '.json', v2['id'][7:] + '.json'])
    again = run_module(main, {'operation': 'rebuild', 'root': root, 'compose_id': v2['id'], 'path': path})
    assert again['changed'] is False and again['pruned'] == []
