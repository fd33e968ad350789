# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Verify the host after deploying v1, v2 (only what changed shipped), v2 again (nothing shipped) and the signing runs."""

from __future__ import annotations

import json

ROOT = '/srv/www/app'
# Written by side_effect.yml from the ship reports of the three deploys.
SHIPPED = '/var/tmp/molecule-delta-shipped.json'


def _files(host, release):
    out = host.check_output("cd %s/releases/%s && find . -type f -printf '%%P\\t%%i\\n'" % (ROOT, release))
    inodes = dict(line.split('\t') for line in out.splitlines())
    sums = host.check_output("cd %s/releases/%s && find . -type f -print0 | xargs -0 sha256sum" % (ROOT, release))
    result = {}
    for line in sums.splitlines():
        digest, path = line.split(None, 1)
        path = path[2:] if path.startswith('./') else path
        result[path] = (inodes[path], digest)
    return result


def test_unchanged_files_are_one_inode(host):
    v1, v2 = _files(host, 'v1'), _files(host, 'v2')
    same = [p for p in v1 if p in v2 and v1[p][1] == v2[p][1]]
    changed = [p for p in v1 if p in v2 and v1[p][1] != v2[p][1]]
    assert len(same) >= 10, same
    for path in same:
        assert v1[path][0] == v2[path][0], path  # hardlinked, not copied
    for path in changed:
        assert v1[path][0] != v2[path][0], path
    assert 'RELEASE' in changed


def test_v2_is_live_and_complete(host):
    assert host.check_output('readlink %s', ROOT + '/current') == 'releases/v2'
    meta = json.loads(host.file(ROOT + '/.stagehand/releases/v2.json').content_string)
    assert meta['status'] == 'complete'
    out = host.check_output('curl -sS -i http://127.0.0.1/')
    assert 'X-Release: v2' in out


def test_shipped_figures(host):
    shipped = json.loads(host.file(SHIPPED).content_string)
    v1, v2, again = shipped['deploy v1'], shipped['deploy v2'], shipped['redeploy v2']
    # v2 changes the page, adds a migration, and composer's autoloader and RELEASE change with the commit
    assert 1 <= int(v2['files']) <= 10 and int(v1['files']) >= 20
    assert int(v2['bytes']) * 4 < int(v1['bytes'])
    assert int(v2['compressed']) * 3 < int(v1['compressed'])
    assert (int(again['files']), int(again['bytes']), int(again['manifest_bytes'])) == (0, 0, 0)


def test_no_upload_is_left_and_manifests_are_kept(host):
    leftovers = host.check_output('ls -a %s/.stagehand' % ROOT).split()
    assert not [name for name in leftovers if name.startswith('upload-')], leftovers
    kept = host.check_output('ls %s/.stagehand/composes' % ROOT).split()
    digest = {r: json.loads(host.file(ROOT + '/.stagehand/releases/%s.json' % r).content_string)['manifest_digest'][len('sha256:'):]
              for r in ('v1', 'v2', 'v2-signed')}
    # v1's manifest came whole and is kept whole; v2's came as a delta against v1's and is kept as that delta;
    # v2-signed's too, with its signature. The composes of the refused deploys are not kept (v2-stranger's id
    # is nowhere; v2-signed's unsigned attempt has the id of the signed one, which came later)
    assert sorted(kept) == sorted([digest['v1'] + '.json', digest['v2'] + '.delta.json', digest['v2-signed'] + '.delta.json',
                                   digest['v2-signed'] + '.json.sig'])
    delta = host.file('%s/.stagehand/composes/%s.delta.json' % (ROOT, digest['v2']))
    assert delta.size < host.file('%s/.stagehand/composes/%s.json' % (ROOT, digest['v1'])).size


def test_history_has_the_deploys_the_refusals_and_the_rollback(host):
    lines = host.file(ROOT + '/.stagehand/history.jsonl').content_string.splitlines()
    history = [json.loads(line) for line in lines if line.strip()]
    assert [(e['action'], e['release'], e['outcome']) for e in history] == [
        ('deploy', 'v1', 'success'), ('deploy', 'v2', 'success'), ('deploy', 'v2', 'success'),
        # signatures required: unsigned, then signed by a key that is not allowed, then signed by the allowed key
        ('deploy', 'v2-signed', 'refused'), ('deploy', 'v2-stranger', 'refused'), ('deploy', 'v2-signed', 'success'),
        ('rollback', 'v2', 'success')]
    assert 'is not signed' in history[3]['error'] and 'not an allowed signer' in history[4]['error']


def test_the_refused_releases_were_never_staged(host):
    assert not host.file(ROOT + '/releases/v2-stranger').exists
    assert not host.file(ROOT + '/.stagehand/releases/v2-stranger.json').exists
