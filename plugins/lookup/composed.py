# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
---
name: composed
short_description: The compose of a git ref or of a prebuilt artifact that is already in the local artifact store
version_added: 0.1.0
description:
  - Looks, on the controller, for a compose of O(version) of the application repository O(repo) in the artifact store
    O(store), as M(stagehand.deploy.compose) leaves it (C(<store>/<app>/refs/<version>.json) and the compose directory
    it names).
  - Returns the compose id and the release name when the version still names the same commit as when it was
    composed, and the compose recorded in the store says so and was not changed by a prepare hook; otherwise an empty
    dictionary. It never builds, never
    writes (but for a stored compose that fails its integrity check - its manifest's digest, its artifact's recorded
    sha256 - which it moves into the store's C(quarantine/) folder with a warning naming it, so that the deploy composes
    the version again) and never fails for a version it cannot use (a deploy then composes as usual and reports any
    error).
  - The deploy role uses it to end a redeploy of what is already live after one read-only call per host, and its fast
    path ships the compose it names without running the compose module.
  - With O(artifact) instead of O(repo) and O(version), the compose that prebuilt artifact (a directory or C(.tar.gz))
    gave for this release name and web root, found by the artifact's identity (the sha256 of a C(.tar.gz); for a
    directory, the path, size, times and inode of every entry) in C(<store>/<app>/artifacts/), as
    M(stagehand.deploy.compose) records it; nothing is copied or hashed but a C(.tar.gz) read once.
  - Only local stores are looked at; for an C(http(s\)://) store the result is empty.
author:
  - Stagehand Deploy contributors (@stagehand-deploy)
options:
  repo:
    description: Path of the application's git repository on the controller. Needed with O(version).
    type: path
  version:
    description: A tag, branch or commit of O(repo). Give either O(version) or O(artifact).
    type: str
  artifact:
    description:
      - A prebuilt artifact on the controller, a directory or a C(.tar.gz) (C(-e artifact=)); C(~) is expanded. Empty for
        none.
    type: str
    default: ''
  web_root:
    description: With O(artifact), the web root the compose was checked for (the role's C(deploy_web_root)); empty for the default.
    type: str
    default: ''
  store:
    description: The artifact store (a directory on the controller).
    type: str
    required: true
  app:
    description: The application name (the store keeps each application under C(<store>/<app>/)).
    type: str
    required: true
  release:
    description:
      - The release name given to the deploy (C(-e release=NAME)); empty for the name the deploy role's naming rule gives
        O(version) (the version itself when it is a valid release name and not a branch, else the first 12 characters
        of its commit) or O(artifact) (its base name without C(.tar.gz)). The compose must have been made for that
        name; the name recorded in the store does not count.
    type: str
    default: ''
notes:
  - The lookup takes no terms.
'''

EXAMPLES = r'''
- name: Show what v1.4.0 composed to, if it was composed already
  ansible.builtin.debug:
    msg: "{{ lookup('stagehand.deploy.composed', repo='/home/alice/src/shop', version='v1.4.0',
             store='~/.cache/stagehand/artifacts', app='shop') }}"

- name: Show what a prebuilt artifact composed to, if it was composed already
  ansible.builtin.debug:
    msg: "{{ lookup('stagehand.deploy.composed', artifact='build/shop-1.4.0.tar.gz',
             store='~/.cache/stagehand/artifacts', app='shop') }}"
'''

RETURN = r'''
_raw:
  description:
    - One dictionary describing the compose as M(stagehand.deploy.compose) returns it when it reuses one
      (C(compose_id), C(release), C(dir), C(artifact), C(manifest), C(signature), C(shared), C(platform), C(commit),
      C(ref)), or an empty one when the store has no usable compose of the version (or of the artifact).
  type: list
  elements: dict
'''

import os
import re
import typing as t

from ansible.plugins.lookup import LookupBase
from ansible.utils.display import Display

from ansible_collections.stagehand.deploy.plugins.module_utils._compose import (
    ComposeError, LocalStore, artifact_key, find_artifact_compose, find_reusable, release_for, resolve_ref,
)


display = Display()

RESULT_KEYS = ('compose_id', 'release', 'dir', 'artifact', 'manifest', 'signature', 'shared', 'platform', 'commit', 'ref')


class LookupModule(LookupBase):
    """Find the compose of a version in the local artifact store, without building anything."""

    def run(self, terms: list[t.Any], variables: dict[str, t.Any] | None = None, **kwargs: t.Any) -> list[dict[str, t.Any]]:
        self.set_options(var_options=variables, direct=kwargs)
        store = self.get_option('store')
        if re.match(r'\A[A-Za-z][A-Za-z0-9+.-]*://', store or ''):
            return [{}]
        repo = self.get_option('repo')
        version = self.get_option('version')
        artifact = os.path.expanduser(self.get_option('artifact') or '')
        if bool(version) == bool(artifact) or (version and not repo):
            return [{}]  # the deploy refuses that input itself (start.yml), naming it
        try:
            warnings: list[str] = []
            local = LocalStore(store, self.get_option('app'))
            try:
                if artifact:
                    release = release_for({'artifact': artifact, 'release': self.get_option('release') or None}, None)
                    key = artifact_key(artifact, release, self.get_option('web_root') or None)
                    found = find_artifact_compose(local, key, release, warnings) if key else None
                else:
                    commit = resolve_ref(repo, version)[0]
                    # the release name the deploy gives this version (one rule, _names.release_name), never the one
                    # recorded in the store's ref pointer: a compose made for another name is not this deploy's
                    release = release_for({'repo': repo, 'ref': version, 'release': self.get_option('release') or None}, commit)
                    found = find_reusable(local, version, commit, release, warnings)
            finally:
                for warning in warnings:  # a corrupt compose, quarantined: the deploy composes the version again
                    display.warning(warning)
        except (ComposeError, OSError, ValueError):
            return [{}]
        if not found:
            return [{}]
        return [{key: found[key] for key in RESULT_KEYS}]
