# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Verify the slots scenario: no request lost or mixed, no stale code, slots patched in place and recorded."""

from __future__ import annotations

import json

import pytest

ROOT = '/srv/www/app'
DIR = '/var/tmp/stagehand-slots'
MIN_REQUESTS = 300

# Compare every slot with its recorded manifest, on the host (python3 of the target, stdlib only).
VERIFY_SLOT = r'''
import hashlib, json, os, stat, sys
root, slot = sys.argv[1], sys.argv[2]
top = os.path.join(root, 'slots', slot)
state = os.path.join(root, '.stagehand')
doc = json.load(open(os.path.join(state, 'slots', slot + '.manifest.json')))

def kept(compose_id):
    # a compose manifest the host keeps: <hex>.json whole, or <hex>.delta.json against another kept one
    name = os.path.join(state, 'composes', compose_id.split(':', 1)[1])
    if os.path.exists(name + '.json'):
        return {e['path']: e for e in json.load(open(name + '.json'))['entries']}
    delta = json.load(open(name + '.delta.json'))
    entries = kept(delta['base'])
    for path in delta['remove']:
        del entries[path]
    entries.update((e['path'], e) for e in delta['set'])
    return entries

if doc.get('derived'):
    # the tree manifest is a reference: the compose manifest with the shared paths linked in
    want = kept(doc['source_digest'])
    for path in doc['shared']:
        parts = path.split('/')
        for depth in range(1, len(parts)):
            want.setdefault('/'.join(parts[:depth]), {'path': '/'.join(parts[:depth]), 'type': 'dir', 'mode': '0755'})
        for other in [p for p in want if p == path or p.startswith(path + '/')]:
            del want[other]
        want[path] = {'path': path, 'type': 'symlink', 'target': '../' * (2 + path.count('/')) + 'shared/' + path}
else:
    want = {e['path']: e for e in doc['entries']}
found = {}
for dirpath, dirnames, filenames in os.walk(top):
    for name in dirnames + filenames:
        full = os.path.join(dirpath, name)
        rel = os.path.relpath(full, top)
        st = os.lstat(full)
        if stat.S_ISLNK(st.st_mode):
            found[rel] = {'path': rel, 'type': 'symlink', 'target': os.readlink(full)}
        elif stat.S_ISDIR(st.st_mode):
            found[rel] = {'path': rel, 'type': 'dir', 'mode': '%04o' % stat.S_IMODE(st.st_mode)}
        else:
            data = open(full, 'rb').read()
            found[rel] = {'path': rel, 'type': 'file', 'mode': '%04o' % stat.S_IMODE(st.st_mode),
                          'sha256': hashlib.sha256(data).hexdigest(), 'size': len(data)}
problems = sorted(p for p in set(want) | set(found) if want.get(p) != found.get(p))
print(json.dumps({'entries': len(want), 'problems': problems[:20]}))
'''


def _json(host, path):
    assert host.file(path).exists, 'no %s: did side_effect run?' % path
    return json.loads(host.file(path).content_string)


@pytest.fixture(name='deploys')
def fixture_deploys(host):
    return {tool: _json(host, '%s/deploys.%s.json' % (DIR, tool)) for tool in ('loadgen', 'codecheck')}


@pytest.fixture(name='control')
def fixture_control(host):
    return {tool: _json(host, '%s/control.%s.json' % (DIR, tool)) for tool in ('loadgen', 'codecheck')}


def test_the_load_was_real_and_saw_every_flip(deploys):
    load = deploys['loadgen']
    assert load['stopped_by'] == 'stop_file', load
    assert load['requests'] > MIN_REQUESTS and load['probes'] > MIN_REQUESTS // 4, load
    # v1 (slot a) -> v2 (slot b) -> v3-slots (slot a, patched) -> v2 (rollback: slot b)
    assert load['pointer_changes'][:4] == ['v1', 'v2', 'v3-slots', 'v2'], load
    assert load['in_flight_at_switch'] > 0 and load['probes_in_flight_at_switch'] > 0, load
    assert deploys['codecheck']['requests'] > MIN_REQUESTS // 3, deploys['codecheck']


@pytest.mark.parametrize('counter', ['non_2xx', 'socket_errors', 'mixed', 'stale', 'bad_probes'])
def test_no_request_failed_mixed_or_stale_during_the_deploys(deploys, counter):
    assert deploys['loadgen'][counter] == 0, deploys['loadgen']


def test_no_stale_code_during_the_deploys(deploys):
    check = deploys['codecheck']
    assert check['stale_code'] == 0, check
    assert check['unknown_release'] == 0 and check['non_200'] == 0 and check['errors'] == 0, check
    served = check['by_release_and_code']
    # each release answered with its own code
    for release in ('v2', 'v3-slots'):
        assert served.get('%s: %s' % (release, release), 0) > 0, check


def test_the_control_served_stale_code_without_the_invalidation(control):
    """Patched and flipped without the opcache invalidation: the old compiled greeting is served.

    php-fpm is not reloaded and opcache.validate_timestamps=0, so the code slot a held
    before (v3-slots) stays cached for its paths: v1's RELEASE with v3-slots' greeting.
    This proves that codecheck sees stale code, and that the zero above is the invalidation's doing.
    """
    check = control['codecheck']
    assert check['stale_code'] > 0, check
    assert check['by_release_and_code'].get('v1: v3-slots', 0) > 0, check


def test_slot_a_was_patched_in_place(host):
    before = host.file('%s/slot-a-inode' % DIR).content_string.strip()
    now = host.run('stat -c %%i %s/slots/a' % ROOT)
    assert now.rc == 0 and now.stdout.strip() == before


def test_slot_metadata_and_manifests(host):
    current = host.file('%s/current' % ROOT)
    assert current.is_symlink and current.linked_to == '%s/slots/a' % ROOT  # the control deploy made a live again
    releases = {'a': 'v1', 'b': 'v2'}
    for slot, release in releases.items():
        meta = json.loads(host.file('%s/.stagehand/slots/%s.json' % (ROOT, slot)).content_string)
        assert meta['status'] == 'complete' and meta['release'] == release, meta
        assert host.file('%s/slots/%s/RELEASE' % (ROOT, slot)).content_string.strip() == release
        manifest = json.loads(host.file('%s/.stagehand/slots/%s.manifest.json' % (ROOT, slot)).content_string)
        assert manifest['digest'] == meta['tree_digest'], (manifest['digest'], meta)
        result = host.run("python3 -c %s %s %s" % (_quote(VERIFY_SLOT), ROOT, slot))
        assert result.rc == 0, result.stderr
        verified = json.loads(result.stdout)
        assert verified['entries'] > 10 and verified['problems'] == [], verified


def test_no_patch_leftovers(host):
    for slot in ('a', 'b'):
        work = host.file('%s/.stagehand/patch-%s' % (ROOT, slot))
        if work.exists:
            assert not host.file('%s/.stagehand/patch-%s/patch-journal.json' % (ROOT, slot)).exists
            assert host.run('find %s/.stagehand/patch-%s -mindepth 1' % (ROOT, slot)).stdout.strip() == ''
    assert host.run('ls -A %s/.stagehand | grep -c extract || true' % ROOT).stdout.strip() == '0'


def test_the_opcache_script_is_outside_the_docroots(host):
    scripts = host.run('ls %s/.stagehand/ | grep -E "^opcache-[0-9a-f]{16}[.]php$"' % ROOT).stdout.split()
    assert len(scripts) == 1, scripts
    script = host.file('%s/.stagehand/%s' % (ROOT, scripts[0]))
    assert script.user == 'root' and script.mode == 0o644


def _quote(text):
    return "'" + text.replace("'", "'\"'\"'") + "'"


def test_deploys_without_a_migration_took_the_one_call_path(host):
    """v3-slots (no new migration) and the control's v1 went in one ship call; v2 (a migration) through the phases."""
    lines = [json.loads(line) for line in host.file('%s/.stagehand/history.jsonl' % ROOT).content_string.splitlines()]
    deploys = [line for line in lines if line['action'] == 'deploy' and line['outcome'] == 'success']
    assert [line['release'] for line in deploys] == ['v1', 'v2', 'v3-slots', 'v1'], deploys
    for line in (deploys[2], deploys[3]):
        # one call: the ship module times stage, switch and health itself; the phases would add post_switch
        assert {'ship', 'lock', 'stage', 'switch', 'health'} <= set(line['phases']), line
        assert 'post_switch' not in line['phases'], line
    assert 'post_switch' in deploys[1]['phases'] and 'migrate' in deploys[1]['phases'], deploys[1]
    # the history names slots by their release labels
    assert [line['previous'] for line in deploys] == [None, 'v1', 'v2', 'v2'], deploys
