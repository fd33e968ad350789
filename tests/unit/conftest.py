# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Shared fixtures for the unit tests.

The collection is imported as ``ansible_collections.stagehand.deploy``. When it
is not installed that way (a plain checkout), a symlink farm outside the tree
makes the checkout importable under that name.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import typing as t

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _make_importable() -> None:
    try:
        import ansible_collections.stagehand.deploy  # noqa: F401  pylint: disable=unused-import
        return
    except ImportError:
        pass
    farm = os.path.join(
        tempfile.gettempdir(), 'stagehand-collections-%s' % hashlib.sha256(REPO.encode()).hexdigest()[:12]
    )
    link_dir = os.path.join(farm, 'ansible_collections', 'stagehand')
    os.makedirs(link_dir, exist_ok=True)
    link = os.path.join(link_dir, 'deploy')
    if not os.path.islink(link) or os.readlink(link) != REPO:
        tmp = link + '.%d' % os.getpid()
        os.symlink(REPO, tmp)
        os.replace(tmp, link)
    sys.path.insert(0, farm)
    for name in list(sys.modules):
        if name == 'ansible_collections' or name.startswith('ansible_collections.'):
            del sys.modules[name]


_make_importable()

from unittest import mock  # noqa: E402

from ansible.module_utils import _internal as module_utils_internal  # noqa: E402

from ansible_collections.stagehand.deploy.tests.unit.module_args import patch_module_args  # noqa: E402

if not hasattr(module_utils_internal, 'is_controller'):
    # ansible-core < 2.19 (scripts/test minimum) has no controller/target switch for
    # AnsibleModule's warnings; nothing there reads this stand-in, which lets the tests
    # patch it on every core.
    module_utils_internal.is_controller = False


class ModuleRunner:
    """Run a module's ``main()`` in process and return its parsed result."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys

    def __call__(
        self,
        main: t.Callable[[], None],
        args: dict[str, t.Any],
        check_mode: bool = False,
        diff: bool = False,
    ) -> dict[str, t.Any]:
        args = dict(args)
        if check_mode:
            args['_ansible_check_mode'] = True
        if diff:
            args['_ansible_diff'] = True
        self.capsys.readouterr()
        # Once controller code was imported in this process (an action plugin
        # test, say), AnsibleModule would send warnings to the controller's
        # display instead of the result: run modules as they run on a target.
        with mock.patch.object(module_utils_internal, 'is_controller', False), patch_module_args(args):
            with pytest.raises(SystemExit) as exc:
                main()
        out = self.capsys.readouterr().out
        result = json.loads(out)
        result['rc_exit'] = exc.value.code
        return result


@pytest.fixture
def run_module(capsys: pytest.CaptureFixture[str]) -> ModuleRunner:
    """``run_module(main, args, check_mode=False, diff=False)`` -> result dict (``failed`` set on fail_json)."""
    return ModuleRunner(capsys)


def snapshot_tree(path: str) -> dict[str, t.Any]:
    """Everything observable about a tree: type, mode, content digest, link target, inode link count.

    Used to prove that a refused call changed nothing on disk.
    """
    snap: dict[str, t.Any] = {}
    if not os.path.lexists(path):
        return snap
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames.sort()
        for name in sorted(dirnames + filenames) + ([''] if dirpath == path else []):
            full = os.path.join(dirpath, name) if name else dirpath
            rel = os.path.relpath(full, path)
            st = os.lstat(full)
            entry: dict[str, t.Any] = {'mode': st.st_mode, 'nlink': st.st_nlink if not os.path.isdir(full) else None}
            if os.path.islink(full):
                entry['target'] = os.readlink(full)
            elif os.path.isfile(full):
                with open(full, 'rb') as f:
                    entry['sha256'] = hashlib.sha256(f.read()).hexdigest()
                entry['mtime_ns'] = st.st_mtime_ns
            snap[rel] = entry
    return snap


@pytest.fixture
def snapshot() -> t.Callable[[str], dict[str, t.Any]]:
    """``snapshot(path)`` -> dict describing the whole tree (see :func:`snapshot_tree`)."""
    return snapshot_tree
