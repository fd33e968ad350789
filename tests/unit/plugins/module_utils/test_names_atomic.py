# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import os

import pytest

from ansible_collections.stagehand.deploy.plugins.module_utils import _atomic
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
