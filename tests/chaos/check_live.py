# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Run on the target (python3 check_live.py ROOT): what ``current`` names, and whether it is whole.

Prints one JSON object: ``release`` (or slot label), ``mode``, ``target``, ``status`` (from the
release metadata) and ``problems`` (every difference between the tree and the manifest it was
verified against; empty when whole). Uses the collection's own module_utils, copied beside this
file by the suite (tests/chaos/harness.py), so a manifest kept as a reference to a compose is read
the way the collection reads it.
"""

from __future__ import annotations

import json
import os
import sys
import types

HERE = os.path.dirname(os.path.abspath(__file__))


def _import_collection() -> None:
    """Make lib/module_utils importable as ansible_collections.stagehand.deploy.plugins.module_utils."""
    names = ['ansible_collections', 'ansible_collections.stagehand', 'ansible_collections.stagehand.deploy',
             'ansible_collections.stagehand.deploy.plugins']
    for name in names:
        module = types.ModuleType(name)
        module.__path__ = []
        sys.modules[name] = module
    utils = types.ModuleType('ansible_collections.stagehand.deploy.plugins.module_utils')
    utils.__path__ = [os.path.join(HERE, 'lib', 'module_utils')]
    sys.modules[utils.__name__] = utils


def main() -> int:
    _import_collection()
    from ansible_collections.stagehand.deploy.plugins.module_utils._manifest import verify_tree
    from ansible_collections.stagehand.deploy.plugins.module_utils._release import (
        load_tree_manifest,
        release_manifest_path,
        slot_manifest_path,
    )
    from ansible_collections.stagehand.deploy.plugins.module_utils._state import DeployRoot

    droot = DeployRoot(sys.argv[1])
    out: dict[str, object] = {'release': None, 'mode': None, 'target': None, 'status': None, 'problems': []}
    try:
        target = os.readlink(droot.current)
    except OSError as exc:
        out['problems'] = ['current cannot be read: %s' % exc]
        print(json.dumps(out))
        return 0
    mode, name = droot.designates(target)
    out.update(mode=mode, target=target)
    if name is None:
        out['problems'] = ['current points at %r, which is no release or slot' % target]
    elif mode == 'slots':
        meta = droot.read_slot_meta(name) or {}
        out.update(release=meta.get('release') or meta.get('label') or name, status=meta.get('status'))
        manifest = load_tree_manifest(slot_manifest_path(droot, name))
        out['problems'] = ['no usable manifest for slot %s' % name] if manifest is None else \
            verify_tree(droot.slot_path(name), manifest)
    else:
        meta = droot.read_meta(name) or {}
        out.update(release=name, status=meta.get('status'))
        manifest = load_tree_manifest(release_manifest_path(droot, name))
        out['problems'] = ['no usable manifest for release %s' % name] if manifest is None else \
            verify_tree(droot.release_path(name), manifest)
    print(json.dumps(out))
    return 0


if __name__ == '__main__':
    sys.exit(main())
