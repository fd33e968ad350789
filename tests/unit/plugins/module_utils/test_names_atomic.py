# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import json
import os
import random

import pytest

from ansible_collections.stagehand.deploy.plugins.module_utils import _atomic
from ansible_collections.stagehand.deploy.plugins.module_utils._atomic import dump_json
from ansible_collections.stagehand.deploy.plugins.module_utils._names import InvalidName, check_release_name


@pytest.mark.parametrize('name', ['v1', '1.4.0', 'release_2026-11-22', 'a' * 128, '-x', '_'])
def test_valid_names(name):
    assert check_release_name(name) == name


@pytest.mark.parametrize('name, fragment', [
    ('', 'empty'),
    ('..', "'..'"),
    ('.hidden', "'.hidden'"),
    ('a/b', "'a/b'"),
    ('a\x00b', "'a\\x00b'"),
    ('a\nb', "'a\\nb'"),
    ('a' * 129, '129 characters'),
    ('héllo', 'h\\xe9llo'),
    ('sp ace', "'sp ace'"),
])
def test_invalid_names_are_explained(name, fragment):
    with pytest.raises(InvalidName) as exc:
        check_release_name(name)
    msg = str(exc.value)
    assert fragment in msg or fragment in msg.encode('unicode_escape').decode()
    assert "letters, digits, '.', '_' and '-'" in msg


def test_write_json_atomic_leaves_no_temp(tmp_path):
    target = tmp_path / 'state.json'
    _atomic.write_json_atomic(str(target), {'b': 1, 'a': [1, 2]})
    _atomic.write_json_atomic(str(target), {'b': 2})
    assert _atomic.read_json(str(target)) == {'b': 2}
    assert os.listdir(tmp_path) == ['state.json']


def test_replace_symlink_is_a_rename(tmp_path):
    link = tmp_path / 'current'
    _atomic.replace_symlink(str(link), 'releases/a')
    inode_before = os.lstat(link).st_ino
    _atomic.replace_symlink(str(link), 'releases/b')
    assert os.readlink(link) == 'releases/b'
    assert os.lstat(link).st_ino != inode_before
    assert sorted(os.listdir(tmp_path)) == ['current']


def test_exchange_swaps_directory_and_symlink(tmp_path):
    (tmp_path / 'current').mkdir()
    (tmp_path / 'current' / 'index.php').write_text('old')
    os.symlink('releases/new', tmp_path / 'tmp-link')
    try:
        _atomic.exchange(str(tmp_path / 'tmp-link'), str(tmp_path / 'current'))
    except OSError as exc:  # pragma: no cover - depends on the filesystem
        pytest.skip('RENAME_EXCHANGE unsupported here: %s' % exc)
    assert os.readlink(tmp_path / 'current') == 'releases/new'
    assert (tmp_path / 'tmp-link' / 'index.php').read_text() == 'old'


_SCALARS = [None, True, False, 0, -3, 2 ** 70, 1.5, 1e300, -0.0, 'x', '', 'é\u2028"\\\n\t', '\U0001f600', '},\n      {', '}, {']


def _random_value(rng, depth=0):
    roll = rng.random()
    if depth > 3 or roll < 0.35:
        return rng.choice(_SCALARS)
    if roll < 0.55:
        return {rng.choice(['a', 'b', 'é', 'path', '1', '']): _random_value(rng, depth + 1) for _n in range(rng.randint(0, 4))}
    if roll < 0.75:  # lists of flat objects (empty ones too), as the entries of a manifest
        return [{rng.choice(['a', 'b', 'k']): rng.choice(_SCALARS) for _k in range(rng.randint(0, 3))} for _n in range(rng.randint(0, 4))]
    return [_random_value(rng, depth + 1) for _n in range(rng.randint(0, 4))]


def test_dump_json_writes_exactly_what_json_dumps_with_indent_writes():
    """State files and rebuilt manifests must keep their bytes: dump_json is json.dumps(indent=2, sort_keys=True) + newline."""
    rng = random.Random(4)
    for _round in range(5000):
        value = _random_value(rng)
        assert dump_json(value) == (json.dumps(value, indent=2, sort_keys=True) + '\n').encode('utf-8'), value
    entries = [{'path': 'src/C%05d.php' % i, 'type': 'file', 'mode': '0644', 'sha256': '%064x' % i, 'size': i} for i in range(300)]
    doc = {'version': 1, 'digest': 'sha256:' + '0' * 64, 'entries': entries + [{'path': 'l', 'type': 'symlink', 'target': '../x'}]}
    assert dump_json(doc) == (json.dumps(doc, indent=2, sort_keys=True) + '\n').encode('utf-8')
