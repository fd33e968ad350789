#!/usr/bin/python
# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
---
module: compose
short_description: Build a release artifact once, reproducibly, into an artifact store
version_added: 0.1.0
description:
  - Runs on the controller (delegate the task to C(localhost)). Exports a git ref of O(repo) with C(git archive) (no C(.git)),
    or copies a prebuilt O(artifact) (a directory or a C(.tar.gz)/C(.tgz), refused when it holds absolute paths, C(..),
    device files, duplicates or symlinks leaving the tree), runs the build commands of the app's C(stagehand.yml),
    applies its C(include)/C(exclude) globs, writes the C(RELEASE) file (the release name) and packs a deterministic
    C(.tar.gz) (sorted, owner 0:0, the commit time as mtime, gzip mtime 0, modes C(u+rwX,go+rX,go-w)).
  - The compose id is the digest of the manifest of the tree (path, type, mode, sha256, size and symlink target of every
    entry), so the same commit and build tools give the same id and the same archive bytes.
  - C(stagehand.yml) (version 1) in the root of the tree has the keys C(version), C(include), C(exclude), C(build) (a list
    of argv lists run in the tree, no shell), C(shared) and C(platform) (C(php) constraint and C(extensions)); see
    C(docs/build.md). Without it, O(default_build) runs when the tree has a C(composer.json). Build commands of an
    O(artifact) are not run (it is prebuilt).
  - When composer runs, C(vendor/autoload.php) is seeded with the commit id as autoloader suffix and
    C(COMPOSER_ALLOW_SUPERUSER=1) is set; the build commands also get C(STAGEHAND_RELEASE), C(STAGEHAND_REF),
    C(STAGEHAND_COMMIT) and C(SOURCE_DATE_EPOCH) (the commit time).
  - The store (O(store)) is a local directory or an C(http://)/C(https://) URL with the layout
    C(<store>/<app>/composes/<hex>/{artifact.tar.gz,manifest.json,manifest.json.sig,inputs.json}) and
    C(<store>/<app>/refs/<ref>.json) (the last good compose of the ref). A local compose is built aside in
    C(<store>/<app>/tmp/) and renamed into place; a URL store is written with HTTP PUT (the compose files first, the ref
    pointer last) and read with GET, with a local copy in O(cache).
  - A stored compose is reused only when it passes an integrity check (its manifest has the compose id as digest, its
    artifact the sha256 recorded when it was packed, or for an older compose, exactly the manifest's content). One that
    fails is moved aside into C(<store>/<app>/quarantine/<hex>-<time>/) with a warning naming both paths, and composed
    again.
  - When the ref pointer of O(ref) already names a complete compose of the same commit and release, nothing is built
    (RV(reused=true), RV(ignore:changed=false)). A failed build (a build command fails, a bad C(stagehand.yml), an unsafe tree)
    publishes nothing and leaves the ref pointer untouched; the error names the last good compose of the ref.
  - With O(signing_key), C(manifest.json) is signed with C(ssh-keygen -Y sign -n stagehand) (C(manifest.json.sig)); a
    reused compose without signature is signed then.
author:
  - Stagehand Deploy contributors (@stagehand-deploy)
attributes:
  check_mode:
    support: partial
    description: Can run in check mode and report what would change.
    details: Resolves the ref and tells whether a stored compose would be reused (RV(ignore:changed=false)) or a new one built
      (RV(ignore:changed=true)); builds and writes nothing.
  diff_mode:
    support: none
    description: No diff is returned.
  idempotent:
    support: full
    description: A second identical run reports no change.
    details: A second run with the same ref reuses the stored compose; the same artifact gives the same compose id and
      writes nothing new.
options:
  repo:
    description: Path on the controller of the application's git repository. Required with O(ref).
    type: path
  ref:
    description:
      - A tag, branch or commit of O(repo) to compose. Also the name of the ref pointer C(refs/<ref>.json).
      - Exactly one of O(ref) and O(artifact) is required (except with O(step=pack), which takes what O(step=build) made).
    type: str
  artifact:
    description: A prebuilt release on the controller, a directory or a C(.tar.gz)/C(.tgz) file. No ref pointer is written for it.
    type: path
  release:
    description:
      - The release name written to the C(RELEASE) file (1 to 128 of C(A-Z a-z 0-9 . _ -), not starting with C(.)).
      - Omitted, the one naming rule of the deploy role decides it (docs/deploy.md, Release names) - for an O(artifact),
        its base name without C(.tar.gz)/C(.tgz); for a O(ref), the ref itself when it is a valid release name and not a
        branch, else the first 12 characters of its commit. The name recorded in the store's ref pointer never counts.
      - Required with O(step=pack) (the RV(release) of the O(step=build) run).
    type: str
  web_root:
    description:
      - The directory nginx serves, either as the nginx role's C(nginx_root) says it (an absolute path through the
        C(current) link, such as C(/srv/www/shop/current/public)) or relative to the release (C(public)).
      - A compose without that directory (the part of the path below C(current)) is refused before anything is published,
        as is one without any regular file besides C(RELEASE). An absolute path not through a C(current) component, or
        C(current) itself, checks only that the compose holds files.
      - Omitted, only the check for files is made.
    type: str
  app:
    description: The application name; the store keeps each application below C(<store>/<app>/).
    type: str
    required: true
  store:
    description: The artifact store, a local directory (C(~) is expanded) or an C(http://)/C(https://) URL answering GET and PUT.
    type: str
    required: true
  cache:
    description: Local directory that holds the composes of a URL O(store) (the returned paths point there). Unused for a local store.
    type: path
    default: ~/.cache/stagehand/store-cache
  validate_certs:
    description: Verify the TLS certificate of an C(https://) store.
    type: bool
    default: true
  signing_key:
    description: Private SSH key (ed25519 recommended, without passphrase) on the controller used to sign C(manifest.json).
    type: path
  default_build:
    description:
      - Build commands (a list of argv lists) used when the tree has no C(stagehand.yml) but has a C(composer.json).
      - A C(stagehand.yml) always takes precedence (without a C(build) key it builds nothing).
    type: list
    elements: list
    default: []
  platform_hosts:
    description:
      - What the php-fpm of each host of the deploy offers, by host name, as M(stagehand.deploy.platform) returned it
        (keys C(version) and C(modules); a host without C(version) is left out).
      - When given and the compose has to build, the PHP version and extensions the source requires
        (C(composer.json), C(composer.lock) and the C(platform) of C(stagehand.yml)) are checked against every host
        right after the export or copy of the source, before any build command runs; a host that lacks something
        fails the compose with C(failed_phase=platform) and a message naming each such host and what it lacks.
      - These are the requirements of the source, before the build may change them. What the build adds (a
        C(composer.lock) it writes) is checked on every host later, before anything is staged.
      - Not used when the compose is reused from the store, in check mode, nor by O(step=pack).
    type: dict
  work_dir:
    description: Directory on the controller under which the temporary build directory is made. Default is the system's temporary directory.
    type: path
  force:
    description: Build again even when the ref pointer names a compose of the same commit (the result is published only if its id is new).
    type: bool
    default: false
  step:
    description:
      - V(all) composes and publishes in one run.
      - V(build) only exports and builds the tree and returns RV(tree) (nothing is published), so that a hook can change it;
        V(pack) then finishes that tree (filters, C(RELEASE), manifest, archive, store) and removes its work directory.
    type: str
    choices: [all, build, pack]
    default: all
  tree:
    description: With O(step=pack), the RV(tree) returned by the O(step=build) run.
    type: path
notes:
  - Runs on the controller. Every path is a controller path.
  - The platform requirements (RV(platform)) are the C(php) and C(ext-*) entries of C(composer.json) C(require), of every
    C(composer.lock) package's C(require) and of C(stagehand.yml) C(platform); hosts check them with M(stagehand.deploy.platform).
seealso:
  - module: stagehand.deploy.platform
  - module: stagehand.deploy.signature
'''

EXAMPLES = r'''
- name: Compose tag v2 of the app into the local store
  stagehand.deploy.compose:
    repo: /home/me/shop
    ref: v2
    release: v2
    app: shop
    store: ~/.cache/stagehand/artifacts
    signing_key: ~/.ssh/stagehand_ed25519
  delegate_to: localhost
  run_once: true
  register: compose

- name: Compose a prebuilt tarball into an HTTP store
  stagehand.deploy.compose:
    artifact: build/shop-2026-11-22.tar.gz
    release: shop-2026-11-22
    app: shop
    store: https://artifacts.example.com/stagehand
  delegate_to: localhost
  run_once: true
'''

RETURN = r'''
compose_id:
  description: The compose id, C(sha256:<hex>), the digest of the manifest (null in check mode when a new compose would be built).
  returned: always
  type: str
  sample: sha256:3f1c0e6a1b5e1f9dd2f3b9d6c1c8a1c43c7b0c3a2a1f0e9d8c7b6a5f4e3d2c1b
dir:
  description: The compose directory on the controller (in O(cache) for a URL store).
  returned: with O(step=all) or O(step=pack)
  type: str
  sample: /home/me/.cache/stagehand/artifacts/shop/composes/3f1c0e6a1b5e1f9dd2f3b9d6c1c8a1c43c7b0c3a2a1f0e9d8c7b6a5f4e3d2c1b
artifact:
  description: Path of C(artifact.tar.gz) on the controller.
  returned: with O(step=all) or O(step=pack)
  type: str
  sample: /home/me/.cache/stagehand/artifacts/shop/composes/3f1c.../artifact.tar.gz
manifest:
  description: Path of C(manifest.json) on the controller (the C(save_manifest) file form).
  returned: with O(step=all) or O(step=pack)
  type: str
  sample: /home/me/.cache/stagehand/artifacts/shop/composes/3f1c.../manifest.json
signature:
  description: Path of C(manifest.json.sig), or null when the compose is not signed.
  returned: with O(step=all) or O(step=pack)
  type: str
  sample: /home/me/.cache/stagehand/artifacts/shop/composes/3f1c.../manifest.json.sig
inputs_path:
  description: Path of C(inputs.json) on the controller.
  returned: with O(step=all) or O(step=pack)
  type: str
  sample: /home/me/.cache/stagehand/artifacts/shop/composes/3f1c.../inputs.json
inputs:
  description:
    - The recorded inputs (the content of C(inputs.json)) of the compose as it is stored (a reused compose keeps the
      time it was first built).
  returned: with O(step=all) or O(step=pack)
  type: dict
  sample:
    ref: v2
    commit: 5d0b3c6f0e0d4c1b8f3e2a1d9c8b7a6f5e4d3c2b
    release: v2
    composer_lock_sha256: 9b2f6c1e...
    stagehand_yml_sha256: 1a2b3c4d...
    tools: {git: git version 2.39.5, php: 8.2.7, composer: Composer version 2.5.5, python: 3.11.2, ansible_core: 2.19.4, stagehand_deploy: 0.1.0}
    time: "2026-11-22T03:00:00Z"
    platform: {php: [">=8.2"], extensions: [memcached, pdo, pdo_mysql]}
shared:
  description: The C(shared) list of C(stagehand.yml), or null when it has none (the role's default applies then).
  returned: with O(step=all) or O(step=pack)
  type: list
  elements: str
  sample: [.env, storage]
platform:
  description: The platform requirements every host must meet, C(php) (constraints that must all hold) and C(extensions).
  returned: always
  type: dict
  sample: {php: [">=8.2"], extensions: [memcached, pdo, pdo_mysql]}
reused:
  description: True when the stored compose of the ref was reused and nothing was built.
  returned: always
  type: bool
  sample: false
release:
  description: The release name (the content of C(RELEASE)).
  returned: always
  type: str
  sample: v2
commit:
  description: The commit id composed (null for an artifact).
  returned: always
  type: str
  sample: 5d0b3c6f0e0d4c1b8f3e2a1d9c8b7a6f5e4d3c2b
ref:
  description: The ref composed (null for an artifact).
  returned: always
  type: str
  sample: v2
store:
  description: The store location of the application (C(<store>/<app>)).
  returned: always
  type: str
  sample: /home/me/.cache/stagehand/artifacts/shop
build:
  description: The build commands run, each with its exit code and the end of its output (empty when reused).
  returned: always
  type: list
  elements: dict
  sample: [{argv: [composer, install, --no-dev], rc: 0, output: "Generating optimized autoload files"}]
tree:
  description: With O(step=build), the built tree on the controller to give to O(step=pack).
  returned: with O(step=build)
  type: str
  sample: /tmp/stagehand-compose-k2j3/tree
work:
  description: With O(step=build), the work directory that holds RV(tree) (removed by O(step=pack)).
  returned: with O(step=build)
  type: str
  sample: /tmp/stagehand-compose-k2j3
failed_phase:
  description: V(platform) when a host cannot run what the source requires (see O(platform_hosts)).
  returned: when the compose is refused before building
  type: str
  sample: platform
unfit_hosts:
  description: Each host that cannot run what the source requires, with what it lacks.
  returned: when the compose is refused before building
  type: dict
  sample: {web2: "1 required PHP extension is missing: intl"}
'''


from ansible_collections.stagehand.deploy.plugins.module_utils._module import StagehandModule
from ansible_collections.stagehand.deploy.plugins.module_utils._compose import ComposeError, run
from ansible_collections.stagehand.deploy.plugins.module_utils._module import exit_with_result


def main() -> None:
    module = StagehandModule(
        argument_spec=dict(
            repo=dict(type='path'),
            ref=dict(type='str'),
            artifact=dict(type='path'),
            release=dict(type='str'),
            web_root=dict(type='str'),
            app=dict(type='str', required=True),
            store=dict(type='str', required=True),
            cache=dict(type='path', default='~/.cache/stagehand/store-cache'),
            validate_certs=dict(type='bool', default=True),
            signing_key=dict(type='path', no_log=False),
            default_build=dict(type='list', elements='list', default=[]),
            work_dir=dict(type='path'),
            force=dict(type='bool', default=False),
            step=dict(type='str', default='all', choices=['all', 'build', 'pack']),
            platform_hosts=dict(type='dict'),
            tree=dict(type='path'),
        ),
        mutually_exclusive=[('ref', 'artifact')],
        required_by={'ref': ('repo',)},
        supports_check_mode=True,
    )
    try:
        result = run(module.params, check_mode=module.check_mode)
    except ComposeError as exc:
        module.fail_json(msg=exc.msg, **exc.details)
    exit_with_result(module, result)


if __name__ == '__main__':
    main()
