# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The composes a host keeps in .stagehand/composes/: in full (<hex>.json) or as the manifest delta they came as (<hex>.delta.json)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil

import pytest

from ansible_collections.stagehand.deploy.plugins.module_utils import _delta, _manifest, _release
from ansible_collections.stagehand.deploy.plugins.module_utils._atomic import dump_json
from ansible_collections.stagehand.deploy.plugins.module_utils._state import DeployRoot
from ansible_collections.stagehand.deploy.plugins.modules import release, release_info
from ansible_collections.stagehand.deploy.plugins.modules.delta import main as delta_main
from ansible_collections.stagehand.deploy.tests.unit.plugins.modules.test_delta import APP, Store, changed, host_with

FILES = 400


def version(n: int) -> tuple[str, bytes]:
    """Compose id and manifest.json bytes of version ``n`` of a synthetic app (file ``n`` differs from version 0)."""
    entries = [{'path': 'app', 'type': 'dir', 'mode': '0755'}]
    for i in range(FILES):
        content = b'v%d-%d' % (n, i) if i == n else b'%d' % i
        entries.append({'path': 'app/f%03d.php' % i, 'type': 'file', 'mode': '0644', 'size': len(content),
                        'sha256': hashlib.sha256(content).hexdigest()})
    manifest = _manifest.manifest_from_json({'version': 1, 'entries': entries})
    return manifest.digest, dump_json(manifest.to_json(release='v%d' % n))


class Host:
    """A deploy root on which composes are rebuilt as the ship module does it."""

    def __init__(self, tmp_path):
        self.root = str(tmp_path / 'srv')
        self.droot = DeployRoot(self.root)
        self.up = str(tmp_path / 'up')
        os.makedirs(os.path.join(self.root, '.stagehand'))
        os.makedirs(self.up)
        self.manifests: dict[str, bytes] = {}

    def path(self, compose_id: str, suffix: str) -> str:
        return os.path.join(self.root, '.stagehand', 'composes', compose_id[len('sha256:'):] + suffix)

    def refer(self, name: str, compose_id: str) -> None:
        """Release metadata naming ``compose_id`` (what keeps a compose from being pruned)."""
        self.droot.write_meta(name, {'name': name, 'status': 'complete', 'manifest_digest': compose_id})

    def rebuild(self, n: int, base: int | None = None) -> dict:
        """Ship version ``n``: in full, or as a manifest delta against version ``base``."""
        compose_id, data = version(n)
        self.manifests[compose_id] = data
        dest = os.path.join(self.up, 'manifest.json')
        for stale in (dest, dest + '.sig'):
            if os.path.exists(stale):
                os.unlink(stale)
        delta_path = None
        if base is None:
            with open(dest, 'wb') as handle:
                handle.write(data)
        else:
            base_id, base_data = version(base)
            delta = _delta.make_manifest_delta(_manifest.manifest_from_json(json.loads(base_data)), json.loads(data), data)
            delta_path = os.path.join(self.up, 'manifest-delta.json')
            with open(delta_path, 'wb') as handle:
                handle.write(dump_json(delta))
            assert delta['base'] == base_id
        result = _delta.rebuild(self.root, compose_id, dest, delta_path)
        with open(dest, 'rb') as handle:
            assert handle.read() == data  # manifest.json for the caller is always the full bytes
        return result


@pytest.fixture
def host(tmp_path):
    _delta._KEPT.clear()  # pylint: disable=protected-access
    return Host(tmp_path)


def test_a_delta_against_a_kept_base_is_kept_as_that_delta(host):
    v0, v1 = version(0)[0], version(1)[0]
    first = host.rebuild(0)
    assert first['stored'] == host.path(v0, '.json')
    host.refer('r0', v0)
    second = host.rebuild(1, base=0)
    assert second['source'] == 'delta' and second['changed'] is True
    assert second['stored'] == host.path(v1, '.delta.json')
    assert not os.path.exists(host.path(v1, '.json'))
    assert os.path.getsize(second['stored']) < 0.05 * len(host.manifests[v1])
    assert _delta.stored_composes(host.droot) == sorted([v0, v1])
    assert _delta.is_kept(host.droot, v1) and _delta.load_kept(host.droot, v1)[1] == host.manifests[v1]
    # the same again changes nothing, and nothing uploaded: the host rebuilds manifest.json from the delta it keeps
    dest = os.path.join(host.up, 'manifest.json')
    assert _delta.rebuild(host.root, v1, dest, os.path.join(host.up, 'manifest-delta.json'))['changed'] is False
    os.unlink(os.path.join(host.up, 'manifest.json'))
    again = _delta.rebuild(host.root, v1, os.path.join(host.up, 'manifest.json'))
    assert again['source'] == 'host' and again['changed'] is True and again['stored'] == host.path(v1, '.delta.json')
    with open(os.path.join(host.up, 'manifest.json'), 'rb') as handle:
        assert handle.read() == host.manifests[v1]


def test_a_full_upload_of_a_compose_kept_as_a_delta_keeps_it_as_it_is(host):
    host.rebuild(0)
    v1 = version(1)[0]
    host.rebuild(1, base=0)
    result = host.rebuild(1)
    assert result['changed'] is False and result['stored'] == host.path(v1, '.delta.json')
    assert not os.path.exists(host.path(v1, '.json'))


def test_load_kept_gives_the_exact_bytes_through_a_chain_of_three(host):
    host.rebuild(0)
    for n in (1, 2, 3):
        assert host.rebuild(n, base=n - 1)['stored'].endswith('.delta.json')
    v3 = version(3)[0]
    kept = _delta.load_kept(host.droot, v3)
    assert kept is not None and kept[1] == host.manifests[v3] and kept[0].digest == v3
    assert _delta.kept_chain(host.droot, v3) == [version(n)[0] for n in (3, 2, 1, 0)]
    # from disk (a new process), and from the cache while the files are unchanged
    _delta._KEPT.clear()  # pylint: disable=protected-access
    fresh = _delta.load_kept(host.droot, v3)
    assert fresh is not None and fresh[1] == host.manifests[v3]
    assert _delta.load_kept(host.droot, v3)[0] is fresh[0]
    # a base rewritten (here: in full, same bytes) is noticed: the chain is read again
    v2 = version(2)[0]
    os.unlink(host.path(v2, '.delta.json'))
    with open(host.path(v2, '.json'), 'wb') as handle:
        handle.write(host.manifests[v2])
    again = _delta.load_kept(host.droot, v3)
    assert again is not None and again[1] == host.manifests[v3] and again[0] is not fresh[0]


def test_chains_stay_short(host):
    host.rebuild(0)
    depth = _delta.MAX_CHAIN_DEPTH
    for n in range(1, depth + 3):
        result = host.rebuild(n, base=n - 1)
        expected = '.delta.json' if n <= depth else ('.json' if n == depth + 1 else '.delta.json')
        assert result['stored'] == host.path(version(n)[0], expected), n
    # the chain restarted at a full copy
    last = version(depth + 2)[0]
    assert _delta.kept_chain(host.droot, last) == [last, version(depth + 1)[0]]
    assert _delta.load_kept(host.droot, last)[1] == host.manifests[last]


def test_prune_keeps_the_bases_of_referenced_composes(host):
    ids = [version(n)[0] for n in range(5)]
    host.rebuild(0)
    host.rebuild(1, base=0)
    host.rebuild(2, base=1)
    host.refer('r2', ids[2])
    host.refer('r3', ids[3])
    host.rebuild(3, base=0)  # another delta on v0
    host.refer('r4', ids[4])
    host.rebuild(4)  # in full, signed
    with open(host.path(ids[4], '.json.sig'), 'w', encoding='utf-8') as handle:
        handle.write('signature')
    for name in ('r3', 'r4'):  # v3 and v4 removed: nothing refers to them any more
        os.unlink(host.droot.meta_path(name))
    assert _delta.stored_composes(host.droot) == sorted(ids)
    assert sorted(_delta.prune(host.droot)) == sorted([ids[3], ids[4]])
    assert _delta.stored_composes(host.droot) == sorted(ids[:3])
    names = os.listdir(os.path.join(host.root, '.stagehand', 'composes'))
    assert not [n for n in names if n.startswith((ids[3][7:], ids[4][7:]))]
    assert _delta.load_kept(host.droot, ids[2])[1] == host.manifests[ids[2]]
    # v2 no longer referenced, v1 is: v2 goes, v1 and its base stay
    os.unlink(host.droot.meta_path('r2'))
    host.refer('r1', ids[1])
    assert _delta.prune(host.droot) == [ids[2]]
    assert _delta.stored_composes(host.droot) == sorted(ids[:2])
    assert _delta.prune(host.droot) == []


def test_a_broken_chain_counts_as_not_kept_and_refuses_a_delta_on_it(host, snapshot, run_module):
    v0, v1 = version(0)[0], version(1)[0]
    host.rebuild(0)
    host.rebuild(1, base=0)
    host.refer('r1', v1)
    os.unlink(host.path(v0, '.json'))  # by hand
    assert _delta.load_kept(host.droot, v1) is None
    assert not _delta.is_kept(host.droot, v1)
    assert _delta.stored_composes(host.droot) == []  # not listed: the controller ships v1 in full again
    v2, data = version(2)
    delta = _delta.make_manifest_delta(_manifest.manifest_from_json(json.loads(host.manifests[v1])), json.loads(data), data)
    delta_path = os.path.join(host.up, 'manifest-delta.json')
    with open(delta_path, 'wb') as handle:
        handle.write(dump_json(delta))
    dest = os.path.join(host.up, 'manifest.json')
    if os.path.exists(dest):
        os.unlink(dest)
    before = snapshot(host.root), snapshot(host.up)
    with pytest.raises(_delta.DeltaError) as caught:
        _delta.rebuild(host.root, v2, dest, delta_path)
    assert v1 in caught.value.msg and 'not usable on this host' in caught.value.msg and v0 in caught.value.msg
    assert caught.value.details == {'base': v1}
    result = run_module(delta_main, {'operation': 'rebuild', 'root': host.root, 'compose_id': v2, 'path': dest, 'delta': delta_path})
    assert result.get('failed') is True and v1 in result['msg'] and 'full manifest' in result['msg']
    assert (snapshot(host.root), snapshot(host.up)) == before
    # nothing uploaded for v1 itself: there is no usable kept copy either
    with pytest.raises(_delta.DeltaError, match='ship the manifest'):
        _delta.rebuild(host.root, v1, dest)
    # the full manifest of v1 repairs it: kept in full, the broken delta removed
    repaired = host.rebuild(1)
    assert repaired['stored'] == host.path(v1, '.json') and not os.path.exists(host.path(v1, '.delta.json'))
    assert _delta.load_kept(host.droot, v1)[1] == host.manifests[v1]


def test_a_loop_of_kept_deltas_is_not_kept(host):
    host.rebuild(0)
    host.rebuild(1, base=0)
    v0, v1 = version(0)[0], version(1)[0]
    # v0 made a delta on v1 by hand: each is the other's base
    data0 = host.manifests[v0]
    loop = _delta.make_manifest_delta(_manifest.manifest_from_json(json.loads(host.manifests[v1])), json.loads(data0), data0)
    with open(host.path(v0, '.delta.json'), 'wb') as handle:
        handle.write(dump_json(loop))
    os.unlink(host.path(v0, '.json'))
    _delta._KEPT.clear()  # pylint: disable=protected-access
    assert _delta.load_kept(host.droot, v0) is None and _delta.load_kept(host.droot, v1) is None
    assert not _delta.is_kept(host.droot, v0) and _delta.stored_composes(host.droot) == []
    assert _delta.kept_chain(host.droot, v0) == [v0, v1]
    assert _delta.prune(host.droot) == sorted([v0, v1])  # nothing refers to them: removed all the same
    assert os.listdir(os.path.join(host.root, '.stagehand', 'composes')) == []


def test_check_mode_names_the_form_and_writes_nothing(host, snapshot):
    host.rebuild(0)
    v1, data = version(1)
    delta = _delta.make_manifest_delta(_manifest.manifest_from_json(json.loads(host.manifests[version(0)[0]])), json.loads(data), data)
    delta_path = os.path.join(host.up, 'manifest-delta.json')
    with open(delta_path, 'wb') as handle:
        handle.write(dump_json(delta))
    before = snapshot(host.root)
    result = _delta.rebuild(host.root, v1, os.path.join(host.up, 'other.json'), delta_path, check_mode=True)
    assert result['changed'] is True and result['stored'] == host.path(v1, '.delta.json')
    assert snapshot(host.root) == before


# -- releases on a host that keeps their compose as a delta ---------------------------------------
def test_release_tree_manifests_load_from_a_compose_kept_as_a_delta(run_module, tmp_path):
    _delta._KEPT.clear()  # pylint: disable=protected-access
    store = Store(tmp_path / 'store')
    v1 = store.compose('v1', APP)
    root = host_with(run_module, tmp_path, v1)
    v2 = store.compose('v2', changed(APP, {'app/f100.php': b'<?php // v2'}), extra={'release': 'v2'})
    info = run_module(release_info.main, {'root': root, 'sizes': False, 'history': 0})
    out = str(tmp_path / 'out')
    os.mkdir(out)
    shipment = _delta.create(v2['manifest'], v2['artifact'], out, have=info['releases'], manifests=[store.composes],
                             host_composes=info['composes'], shared=['storage'])
    prefix = os.path.join(root, '.stagehand', 'upload-v2')
    shutil.copy(shipment['archive'], prefix + '.tar.gz')
    shutil.copy(shipment['manifest_delta'], prefix + '.manifest-delta.json')
    rebuilt = run_module(delta_main, {'operation': 'rebuild', 'root': root, 'compose_id': v2['id'], 'path': prefix + '.manifest.json',
                                      'delta': prefix + '.manifest-delta.json'})
    assert rebuilt['stored'].endswith('.delta.json'), rebuilt
    os.makedirs(os.path.join(root, 'shared', 'storage'))
    staged = run_module(release.main, {'root': root, 'name': 'v2', 'src': prefix + '.tar.gz', 'manifest': prefix + '.manifest.json',
                                       'partial': True, 'shared': ['storage']})
    assert staged['changed'] is True and staged['manifest_digest'] == v2['id'], staged
    tree_path = os.path.join(root, '.stagehand', 'manifests', 'v2.json')
    with open(tree_path, encoding='utf-8') as handle:
        ref = json.load(handle)
    assert ref['derived'] is True and ref['source_digest'] == v2['id'] and ref['shared'] == ['storage']
    _delta._KEPT.clear()  # pylint: disable=protected-access
    tree = _release.load_tree_manifest(tree_path)
    assert tree is not None and tree.digest == ref['digest']
    assert _manifest.verify_tree(os.path.join(root, 'releases', 'v2'), tree) == []
    info = run_module(release_info.main, {'root': root, 'sizes': False, 'history': 0})
    assert info['composes'] == sorted([v1['id'], v2['id']])
    assert [r['name'] for r in info['releases'] if r['status'] == 'complete'] == ['v1', 'v2']
    # the same release again: unchanged (its tree manifest still loads)
    assert run_module(release.main, {'root': root, 'name': 'v2', 'manifest': prefix + '.manifest.json', 'partial': True,
                                     'shared': ['storage']})['changed'] is False
    # its base removed by hand: the reference no longer loads (and is not trusted)
    os.unlink(os.path.join(root, '.stagehand', 'composes', v1['id'][7:] + '.json'))
    _delta._KEPT.clear()  # pylint: disable=protected-access
    assert _release.load_tree_manifest(tree_path) is None


def test_both_forms_left_by_a_crash_are_one_compose_and_the_next_rebuild_keeps_one(host):
    host.rebuild(0)
    v1 = version(1)[0]
    host.rebuild(1, base=0)
    shutil.copy(os.path.join(host.up, 'manifest.json'), host.path(v1, '.json'))  # written in full, the delta not removed yet
    assert _delta.stored_composes(host.droot) == sorted([version(0)[0], v1])
    assert _delta.load_kept(host.droot, v1)[1] == host.manifests[v1]
    result = _delta.rebuild(host.root, v1, os.path.join(host.up, 'manifest.json'))
    assert result['changed'] is True and result['stored'] == host.path(v1, '.json')
    assert not os.path.exists(host.path(v1, '.delta.json'))


def test_the_controller_reads_a_delta_fetched_from_the_host(store_and_out):
    store, out, known = store_and_out
    v1 = store.compose('v1', APP)
    v2 = store.compose('v2', changed(APP, {'app/f001.php': b'two'}))
    v3 = store.compose('v3', changed(APP, {'app/f001.php': b'two', 'app/f002.php': b'three'}))
    with open(v2['manifest'], 'rb') as handle:
        data = handle.read()
    delta = _delta.make_manifest_delta(_manifest.load_manifest(v1['manifest']), json.loads(data), data)
    with open(os.path.join(known, v2['id'][7:] + '.delta.json'), 'wb') as handle:
        handle.write(dump_json(delta))
    shutil.rmtree(v2['dir'])  # the store lost v2: the host's delta (on v1, which the store has) is what the controller knows of it
    made = _delta.create(v3['manifest'], v3['artifact'], out, have=[{'manifest_digest': v2['id'], 'status': 'complete'}],
                         manifests=[store.composes, known], host_composes=[v1['id'], v2['id']])
    assert made['known'] == [v2['id']] and made['unknown'] == []
    assert made['paths'] == ['app/f002.php'] and made['base'] == v2['id'] and made['manifest_delta_entries'] == 1
    # a delta whose base the controller cannot find leaves the compose unknown
    os.unlink(v1['manifest'])
    again = _delta.create(v3['manifest'], v3['artifact'], out, have=[{'manifest_digest': v2['id'], 'status': 'complete'}],
                          manifests=[store.composes, known], host_composes=[v1['id'], v2['id']])
    assert again['unknown'] == [v2['id']] and again['base'] is None


@pytest.fixture
def store_and_out(tmp_path):
    for name in ('out', 'known'):
        os.mkdir(str(tmp_path / name))
    return Store(tmp_path / 'store'), str(tmp_path / 'out'), str(tmp_path / 'known')
