# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Compose: build a release artifact once, on the controller, from a git ref or a prebuilt artifact.

The app repository describes its build in a static ``stagehand.yml``::

    version: 1
    include: [composer.json, composer.lock, public, src, migrations]   # optional
    exclude: ["**/*.md", tests]                                          # optional
    build:                                                               # argv lists
      - [composer, install, --no-dev, --optimize-autoloader, --no-interaction]
    shared: [.env, storage]                                              # optional
    platform: {php: ">=8.2", extensions: [pdo_mysql, memcached]}         # optional

A compose is: export the commit (``git archive``, no ``.git``) or copy the
artifact (read safely), run the build commands in the tree, apply
include/exclude, write ``RELEASE``, take the manifest
(:func:`_manifest.build_manifest`) and pack a deterministic ``.tar.gz``
(sorted, owner 0:0, a fixed mtime, gzip mtime 0, modes ``u+rwX,go+rX,go-w``).
The compose id is the manifest digest, so the same inputs give the same id.

Artifact store layout (a local directory, or an http(s) URL with the same
relative paths read with GET and written with PUT)::

    <store>/<app>/composes/<hex>/artifact.tar.gz
                                 manifest.json       (save_manifest form)
                                 manifest.json.sig   (when signed)
                                 inputs.json         (recorded inputs)
    <store>/<app>/refs/<ref>.json                    (last good compose of the ref)

A compose directory is built aside in ``<store>/<app>/tmp/`` and renamed into
place; the ref pointer is replaced only after that succeeded, so a failed
build leaves the last good compose of the ref and its pointer untouched.
"""

from __future__ import annotations

import datetime
import errno
import gzip
import hashlib
import os
import platform as pyplatform
import re
import shutil
import stat
import subprocess
import tarfile
import tempfile
import time
import typing as t

from ansible_collections.stagehand.deploy.plugins.module_utils._atomic import (
    dump_json,
    fsync_dir,
    fsync_file,
    read_json,
    temp_name,
    write_bytes_atomic,
    write_json_atomic,
)
from ansible_collections.stagehand.deploy.plugins.module_utils._manifest import (
    TYPE_DIR,
    TYPE_SYMLINK,
    Manifest,
    ManifestError,
    build_manifest,
    check_rel_path,
    check_shared_paths,
    load_manifest,
    save_manifest,
    scan_tar,
)
from ansible_collections.stagehand.deploy.plugins.module_utils._names import InvalidName, check_release_name, is_release_name, release_name
from ansible_collections.stagehand.deploy.plugins.module_utils._platform import (
    PlatformError,
    Requirements,
    composer_requirements,
    unfit_hosts,
)
from ansible_collections.stagehand.deploy.plugins.module_utils._signing import SignatureError, fingerprint, key_fingerprint, sign

COLLECTION_VERSION = '0.1.0'
CONFIG_NAME = 'stagehand.yml'
CONFIG_VERSION = 1
CONFIG_KEYS = ('build', 'exclude', 'include', 'platform', 'shared', 'version')
PLATFORM_KEYS = ('extensions', 'php')

ARTIFACT = 'artifact.tar.gz'
MANIFEST = 'manifest.json'
SIGNATURE = 'manifest.json.sig'
INPUTS = 'inputs.json'
COMPOSE_FILES = (ARTIFACT, MANIFEST, INPUTS)
# <store>/<app>/quarantine/<hex>-<time>: stored composes that failed their integrity check, moved aside
QUARANTINE = 'quarantine'
# <store>/<app>/artifacts/<key>.json: the compose a prebuilt artifact gave (artifact_key), so that a
# redeploy of the same artifact reuses it without copying or hashing the tree again
ARTIFACTS = 'artifacts'

RELEASE_FILE = 'RELEASE'
GZIP_LEVEL = 6
OUTPUT_TAIL = 2000
STALE_TMP_SECONDS = 24 * 3600
_AUTOLOAD_STUB = "<?php\n// ComposerAutoloaderInit%s::\n"
_APP_RE = re.compile(r'\A[A-Za-z0-9_][A-Za-z0-9._-]{0,127}\Z')


class ComposeError(Exception):
    """A compose failed; ``msg`` says why and what is unchanged, ``details`` go into the module result."""

    def __init__(self, msg: str, **details: t.Any) -> None:
        super().__init__(msg)
        self.msg = msg
        self.details = details


def now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')


def sha256_file(path: str) -> str | None:
    if not os.path.isfile(path) or os.path.islink(path):
        return None
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1024 * 1024), b''):
            h.update(chunk)
    return h.hexdigest()


# -- stagehand.yml ------------------------------------------------------------
def _string_list(value: object, key: str, example: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ComposeError('%s: %s must be a list of non-empty strings (e.g. %s), got %r' % (CONFIG_NAME, key, example, value))
    return list(value)


def _patterns(value: object, key: str) -> list[str]:
    patterns = _string_list(value, key, '["src", "public", "**/*.php"]')
    for pattern in patterns:
        rel = pattern.rstrip('/')
        try:
            check_rel_path(rel, '%s pattern' % key)
        except ManifestError as exc:
            raise ComposeError('%s: %s (patterns are relative to the tree root)' % (CONFIG_NAME, exc.msg)) from None
        compile_glob(pattern)
    return patterns


def parse_config(text: bytes) -> dict[str, t.Any]:
    """Validate the content of a ``stagehand.yml``; :class:`ComposeError` names the bad key and value and what is allowed."""
    import yaml  # the controller always has PyYAML (ansible-core needs it)
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ComposeError('%s is not valid YAML: %s' % (CONFIG_NAME, exc)) from None
    if not isinstance(doc, dict):
        raise ComposeError('%s must be a mapping with at least "version: 1", got %r' % (CONFIG_NAME, doc))
    unknown = sorted(str(k) for k in doc if k not in CONFIG_KEYS)
    if unknown:
        raise ComposeError('%s has unknown key%s %s: allowed keys are %s'
                           % (CONFIG_NAME, 's' if len(unknown) > 1 else '', ', '.join(repr(k) for k in unknown), ', '.join(CONFIG_KEYS)))
    version = doc.get('version')
    if version != CONFIG_VERSION or isinstance(version, bool):
        raise ComposeError('%s has version %r: only "version: %d" is supported' % (CONFIG_NAME, version, CONFIG_VERSION))
    config: dict[str, t.Any] = {'version': CONFIG_VERSION, 'present': True, 'sha256': hashlib.sha256(text).hexdigest()}
    config['include'] = _patterns(doc['include'], 'include') if doc.get('include') is not None else []
    config['exclude'] = _patterns(doc['exclude'], 'exclude') if doc.get('exclude') is not None else []
    build = doc.get('build')
    if build is None:
        build = []
    if not isinstance(build, list):
        raise ComposeError('%s: build must be a list of commands, each a list of strings (an argv such as [composer, install, --no-dev]), got %r'
                           % (CONFIG_NAME, build))
    for i, argv in enumerate(build):
        if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv) or not argv[0]:
            raise ComposeError('%s: build[%d] must be a non-empty list of strings (an argv such as [composer, install, --no-dev], '
                               'no shell), got %r' % (CONFIG_NAME, i, argv))
    config['build'] = [list(a) for a in build]
    shared = doc.get('shared')
    if shared is None:
        config['shared'] = None
    else:
        if not isinstance(shared, list):
            raise ComposeError('%s: shared must be a list of paths relative to the release (e.g. [.env, storage]), got %r' % (CONFIG_NAME, shared))
        try:
            config['shared'] = check_shared_paths(shared)
        except ManifestError as exc:
            raise ComposeError('%s: shared: %s' % (CONFIG_NAME, exc.msg)) from None
    plat = doc.get('platform')
    config['platform'] = {'php': None, 'extensions': []}
    if plat is not None:
        if not isinstance(plat, dict):
            raise ComposeError('%s: platform must be a mapping with php (a composer constraint) and extensions (a list), got %r' % (CONFIG_NAME, plat))
        bad = sorted(str(k) for k in plat if k not in PLATFORM_KEYS)
        if bad:
            raise ComposeError('%s: platform has unknown key %s: allowed keys are %s'
                               % (CONFIG_NAME, ', '.join(repr(k) for k in bad), ', '.join(PLATFORM_KEYS)))
        php = plat.get('php')
        if php is not None:
            if not isinstance(php, (str, int, float)) or isinstance(php, bool):
                raise ComposeError('%s: platform.php must be a composer version constraint string such as ">=8.2" or "^8.2", got %r' % (CONFIG_NAME, php))
            config['platform']['php'] = str(php)
        if plat.get('extensions') is not None:
            config['platform']['extensions'] = _string_list(plat['extensions'], 'platform.extensions', '[pdo_mysql, memcached]')
    return config


def default_config(tree: str, default_build: list[list[str]] | None) -> dict[str, t.Any]:
    """The configuration used when the tree has no ``stagehand.yml``: the default build when it has a composer.json."""
    build = [list(a) for a in (default_build or [])] if os.path.isfile(os.path.join(tree, 'composer.json')) else []
    return {'version': CONFIG_VERSION, 'present': False, 'sha256': None, 'include': [], 'exclude': [], 'build': build,
            'shared': None, 'platform': {'php': None, 'extensions': []}}


def load_config(tree: str, default_build: list[list[str]] | None = None) -> dict[str, t.Any]:
    path = os.path.join(tree, CONFIG_NAME)
    if os.path.islink(path) or (os.path.lexists(path) and not os.path.isfile(path)):
        raise ComposeError('%s must be a regular file in the root of the tree' % CONFIG_NAME)
    if not os.path.isfile(path):
        return default_config(tree, default_build)
    with open(path, 'rb') as f:
        return parse_config(f.read())


# -- include / exclude --------------------------------------------------------
def compile_glob(pattern: str) -> t.Pattern[str]:
    """Regex of a path glob: ``*`` and ``?`` stay within one path component, ``**`` spans components, ``[..]`` classes."""
    pat = pattern.rstrip('/')
    out = []
    i = 0
    while i < len(pat):
        c = pat[i]
        if pat.startswith('**/', i):
            out.append('(?:[^/]+/)*')
            i += 3
        elif pat.startswith('**', i):
            out.append('.*')
            i += 2
        elif c == '*':
            out.append('[^/]*')
            i += 1
        elif c == '?':
            out.append('[^/]')
            i += 1
        elif c == '[':
            end = pat.find(']', i + 2 if pat[i + 1:i + 2] in ('!', ']') else i + 1)
            if end < 0:
                raise ComposeError('%s: pattern %r has an unclosed [' % (CONFIG_NAME, pattern))
            body = pat[i + 1:end]
            if body.startswith('!'):
                body = '^' + body[1:]
            out.append('[' + body.replace('\\', '\\\\') + ']')
            i = end + 1
        else:
            out.append(re.escape(c))
            i += 1
    try:
        return re.compile(r'\A' + ''.join(out) + r'\Z')
    except re.error as exc:
        raise ComposeError('%s: pattern %r is not a valid glob: %s' % (CONFIG_NAME, pattern, exc)) from None


def _matches(path: str, regexes: t.Sequence[t.Pattern[str]]) -> bool:
    """True when ``path`` or one of its parent directories matches a pattern."""
    parts = path.split('/')
    for i in range(1, len(parts) + 1):
        prefix = '/'.join(parts[:i])
        if any(r.match(prefix) for r in regexes):
            return True
    return False


def apply_filters(tree: str, include: t.Sequence[str], exclude: t.Sequence[str]) -> list[str]:
    """Remove from ``tree`` what ``include`` does not select and what ``exclude`` selects; return the removed paths."""
    inc = [compile_glob(p) for p in include]
    exc = [compile_glob(p) for p in exclude]
    removed: list[str] = []
    if not inc and not exc:
        return removed
    keep_dirs: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(tree, topdown=True):
        rel_dir = os.path.relpath(dirpath, tree)
        rel_dir = '' if rel_dir == '.' else rel_dir
        for name in sorted(dirnames + filenames):
            rel = rel_dir + '/' + name if rel_dir else name
            full = os.path.join(dirpath, name)
            is_dir = os.path.isdir(full) and not os.path.islink(full)
            if _matches(rel, exc):
                _remove(full)
                removed.append(rel)
            elif inc and _matches(rel, inc):
                keep_dirs.add(rel)
            elif inc and not is_dir:
                _remove(full)
                removed.append(rel)
        dirnames[:] = sorted(d for d in dirnames if os.path.isdir(os.path.join(dirpath, d)))
    if inc:
        # directories that neither match nor hold anything that was kept
        for dirpath, dirnames, filenames in os.walk(tree, topdown=False):
            rel_dir = os.path.relpath(dirpath, tree)
            if rel_dir == '.' or dirnames or filenames:
                continue
            if not _matches(rel_dir, inc):
                os.rmdir(dirpath)
                removed.append(rel_dir)
    return sorted(removed)


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        os.unlink(path)


# -- building the tree ----------------------------------------------------------
def _run(argv: list[str], cwd: str | None = None, env: dict[str, str] | None = None, what: str | None = None) -> tuple[int, str]:
    try:
        proc = subprocess.run(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)
    except OSError as exc:
        raise ComposeError('%s: cannot run %s: %s' % (what or 'compose', argv[0], exc.strerror or exc)) from None
    return proc.returncode, proc.stdout.decode('utf-8', 'replace')


def resolve_ref(repo: str, ref: str) -> tuple[str, int]:
    """``(commit id, committer time)`` of a tag, branch or commit of the git repository ``repo``."""
    if not os.path.isdir(repo):
        raise ComposeError('repo %r is not a directory on the controller: give the path of the application\'s git repository' % (repo,))
    rc, out = _run(['git', '-C', repo, 'rev-parse', '--verify', '--quiet', '--end-of-options', ref + '^{commit}'], what='git')
    if rc != 0:
        raise ComposeError('version %r is not a tag, branch or commit of the git repository %r%s' % (ref, repo, (': ' + out.strip()) if out.strip() else ''))
    commit = out.strip().splitlines()[0]
    rc, out = _run(['git', '-C', repo, 'show', '-s', '--format=%ct', commit], what='git')
    if rc != 0:
        raise ComposeError('git show %s in %s failed: %s' % (commit, repo, out.strip()))
    return commit, int(out.strip() or 0)


def ref_is_branch(repo: str, ref: str) -> bool:
    """Whether ``ref`` is a branch (``refs/heads/<ref>``) of the git repository ``repo``: a name that moves."""
    rc = _run(['git', '-C', repo, 'show-ref', '--verify', '--quiet', 'refs/heads/' + ref], what='git')[0]
    return rc == 0


def release_for(params: t.Mapping[str, t.Any], commit: str | None) -> str:
    """The release name of a compose (:func:`_names.release_name`, the one naming rule) from ``release``, ``artifact`` or ``ref``."""
    release = params.get('release') or None
    ref = params.get('ref') or None
    branch = False
    if release is None and ref is not None and commit is not None and is_release_name(ref):
        branch = ref_is_branch(os.path.abspath(os.path.expanduser(params['repo'])), ref)
    try:
        return release_name(release=release, version=ref, commit=commit, branch=branch, artifact=params.get('artifact') or None)
    except InvalidName as exc:
        raise ComposeError(str(exc)) from None


def normalise_mode(mode: int, is_dir: bool) -> int:
    """``chmod u+rwX,go+rX,go-w``: readable by all, writable by the owner only, executable where anyone could execute."""
    mode &= 0o7777
    mode |= 0o644
    if is_dir or mode & 0o111:
        mode |= 0o111
    return mode & ~0o022


def normalise_modes(tree: str) -> None:
    for dirpath, dirnames, filenames in os.walk(tree):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            if stat.S_ISLNK(st.st_mode):
                continue
            wanted = normalise_mode(st.st_mode, stat.S_ISDIR(st.st_mode))
            if stat.S_IMODE(st.st_mode) != wanted:
                os.chmod(full, wanted)


def _apply_manifest_modes(tree: str, manifest: Manifest) -> None:
    for entry in manifest.entries:
        if entry['type'] != TYPE_SYMLINK:
            os.chmod(os.path.join(tree, entry['path']), normalise_mode(int(entry['mode'], 8), entry['type'] == TYPE_DIR))


def export_git(repo: str, commit: str, tree: str, work: str) -> None:
    """Export ``commit`` of ``repo`` into the empty directory ``tree`` with ``git archive`` (read back safely)."""
    archive = os.path.join(work, 'source.tar.gz')
    rc, out = _run(['git', '-C', repo, 'archive', '--format=tar.gz', '--output=' + archive, commit], what='git archive')
    if rc != 0:
        raise ComposeError('git archive of %s in %s failed: %s' % (commit, repo, out.strip()))
    try:
        manifest = scan_tar(archive, tree)
    except ManifestError as exc:
        raise ComposeError('the commit %s cannot be deployed: %s' % (commit, exc.msg)) from None
    finally:
        os.unlink(archive)
    _apply_manifest_modes(tree, manifest)


def copy_artifact(src: str, tree: str) -> None:
    """Copy a prebuilt artifact (a directory or a ``.tar.gz``/``.tgz``) into the empty directory ``tree``, refusing unsafe content."""
    if os.path.isdir(src):
        try:
            manifest = build_manifest(src)
        except ManifestError as exc:
            raise ComposeError('artifact %s cannot be deployed: %s' % (src, exc.msg)) from None
        for entry in manifest.entries:
            source = os.path.join(src, entry['path'])
            dest = os.path.join(tree, entry['path'])
            if entry['type'] == TYPE_DIR:
                os.mkdir(dest, 0o700)
            elif entry['type'] == TYPE_SYMLINK:
                os.symlink(entry['target'], dest)
            else:
                shutil.copyfile(source, dest, follow_symlinks=False)
        _apply_manifest_modes(tree, manifest)
        return
    if os.path.isfile(src) and src.lower().endswith(('.tar.gz', '.tgz')):
        try:
            manifest = scan_tar(src, tree)
        except ManifestError as exc:
            raise ComposeError('artifact %s cannot be deployed: %s' % (src, exc.msg)) from None
        _apply_manifest_modes(tree, manifest)
        return
    raise ComposeError('artifact %s is not a directory or a .tar.gz/.tgz file on the controller' % src)


def served_subdir(web_root: str | None) -> str | None:
    """The directory nginx serves, relative to a release: the part of ``web_root`` below its ``current`` component.

    ``web_root`` is the nginx role's ``nginx_root`` (``/srv/www/shop/current/public`` -> ``public``) or already
    relative to the release (``public``). None when there is nothing to check: no ``web_root``, ``current``
    itself, or an absolute path that does not go through a ``current`` component.
    """
    if not web_root:
        return None
    parts = [p for p in web_root.split('/') if p not in ('', '.')]
    if web_root.startswith('/'):
        if 'current' not in parts:
            return None
        parts = parts[len(parts) - parts[::-1].index('current'):]
    if not parts:
        return None
    if '..' in parts:
        raise ComposeError('web_root %r leaves the release (a ".." component): give the directory nginx serves, '
                           'such as %r or %r' % (web_root, 'public', '/srv/www/app/current/public'))
    return '/'.join(parts)


def check_content(tree: str, what: str, web_root: str | None) -> None:
    """Refuse a tree to compose that holds no regular file (``RELEASE`` aside) or lacks the directory nginx serves.

    ``what`` names the source in the message (``the artifact '/path/app.tar.gz'``). Called before
    ``RELEASE`` is written and before anything is packed or published: such a release would go live
    and serve only 404s.
    """
    has_file = False
    for dirpath, _dirnames, filenames in os.walk(tree):
        for name in filenames:
            if dirpath == tree and name == RELEASE_FILE:
                continue
            if stat.S_ISREG(os.lstat(os.path.join(dirpath, name)).st_mode):
                has_file = True
                break
        if has_file:
            break
    if not has_file:
        raise ComposeError('%s holds no files%s: there is nothing to deploy (a release of it would serve only 404s); '
                           'give an artifact or version with the application\'s files'
                           % (what, ' besides RELEASE' if os.path.lexists(os.path.join(tree, RELEASE_FILE)) else ''))
    sub = served_subdir(web_root)
    if sub is not None:
        path = os.path.join(tree, *sub.split('/'))
        if os.path.islink(path) or not os.path.isdir(path):
            raise ComposeError('%s has no directory %r, the directory nginx serves (web_root %r): a release of it would '
                               'serve only 404s; put the public files in %r, or set deploy_web_root (the nginx role\'s '
                               'nginx_root) to the directory the application serves from'
                               % (what, sub + '/', web_root, sub + '/'))


def _runs_composer(build: t.Sequence[t.Sequence[str]]) -> bool:
    return any(os.path.basename(argv[0]).startswith('composer') for argv in build)


def run_build(tree: str, build: t.Sequence[t.Sequence[str]], env: t.Mapping[str, str], suffix: str | None) -> list[dict[str, t.Any]]:
    """Run each argv of ``build`` in ``tree``; :class:`ComposeError` for the first that fails.

    When composer runs, ``vendor/autoload.php`` is pre-seeded with ``suffix``
    as autoloader suffix (composer keeps the suffix of an existing autoloader,
    else it picks a random one), so the same commit gives the same files.
    """
    stub = None
    autoload = os.path.join(tree, 'vendor', 'autoload.php')
    if suffix and build and _runs_composer(build) and os.path.isfile(os.path.join(tree, 'composer.json')) and not os.path.lexists(autoload):
        os.makedirs(os.path.dirname(autoload), exist_ok=True)
        stub = (_AUTOLOAD_STUB % suffix).encode()
        with open(autoload, 'wb') as f:
            f.write(stub)
    log = []
    for i, argv in enumerate(build):
        rc, out = _run(list(argv), cwd=tree, env=dict(env), what='build[%d]' % i)
        log.append({'argv': list(argv), 'rc': rc, 'output': out[-OUTPUT_TAIL:]})
        if rc != 0:
            raise ComposeError('build command %d of %d (%s) failed with exit code %d: %s'
                               % (i + 1, len(build), ' '.join(argv), rc, out.strip()[-600:] or 'no output'), build=log)
    if stub is not None and os.path.isfile(autoload):
        with open(autoload, 'rb') as f:
            if f.read() == stub:
                os.unlink(autoload)
                try:
                    os.rmdir(os.path.dirname(autoload))
                except OSError:
                    pass
    return log


# -- packing ------------------------------------------------------------------
def pack(tree: str, manifest: Manifest, dest: str, mtime: int) -> None:
    """Write the deterministic ``.tar.gz`` of ``tree`` (which ``manifest`` describes) to ``dest``."""
    with open(dest, 'wb') as raw:
        with gzip.GzipFile(filename='', mode='wb', fileobj=raw, compresslevel=GZIP_LEVEL, mtime=0) as gz:
            with tarfile.open(fileobj=gz, mode='w|', format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
                for entry in manifest.entries:
                    info = tarfile.TarInfo(entry['path'])
                    info.uid = info.gid = 0
                    info.uname = info.gname = ''
                    info.mtime = mtime
                    if entry['type'] == TYPE_DIR:
                        info.type = tarfile.DIRTYPE
                        info.mode = int(entry['mode'], 8)
                        tar.addfile(info)
                    elif entry['type'] == TYPE_SYMLINK:
                        info.type = tarfile.SYMTYPE
                        info.mode = 0o777
                        info.linkname = entry['target']
                        tar.addfile(info)
                    else:
                        info.type = tarfile.REGTYPE
                        info.mode = int(entry['mode'], 8)
                        info.size = entry['size']
                        with open(os.path.join(tree, entry['path']), 'rb') as f:
                            tar.addfile(info, f)
        raw.flush()
        os.fsync(raw.fileno())


# -- tool versions ------------------------------------------------------------
def _version_of(argv: list[str], env: t.Mapping[str, str]) -> str | None:
    try:
        proc = subprocess.run(argv, env=dict(env), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=False)
    except OSError:
        return None
    if proc.returncode != 0:
        return None
    lines = proc.stdout.decode('utf-8', 'replace').strip().splitlines()
    return lines[0].strip() if lines else None


def tool_versions(env: t.Mapping[str, str], build: t.Sequence[t.Sequence[str]]) -> dict[str, str | None]:
    from ansible.module_utils.ansible_release import __version__ as ansible_version
    tools: dict[str, str | None] = {
        'git': _version_of(['git', '--version'], env),
        'php': _version_of(['php', '-r', 'echo PHP_VERSION, PHP_EOL;'], env),
        'composer': None,
        'python': pyplatform.python_version(),
        'ansible_core': ansible_version,
        'stagehand_deploy': COLLECTION_VERSION,
    }
    composer = next((argv[0] for argv in build if os.path.basename(argv[0]).startswith('composer')), None)
    if composer:
        tools['composer'] = _version_of([composer, '--version', '--no-ansi'], env)
    return tools


# -- stores -------------------------------------------------------------------
def _hex(compose_id: str) -> str:
    return compose_id.split(':', 1)[1]


def _check_ref_path(ref: str) -> str:
    try:
        return check_rel_path(ref + '.json', 'ref')
    except ManifestError as exc:
        raise ComposeError('ref %r cannot name a file in the store: %s' % (ref, exc.msg)) from None


class LocalStore:
    """``<root>/<app>/`` on the controller."""

    def __init__(self, root: str, app: str) -> None:
        self.root = os.path.abspath(os.path.expanduser(root))
        self.base = os.path.join(self.root, app)
        self.location = self.base

    def compose_dir(self, compose_id: str) -> str:
        return os.path.join(self.base, 'composes', _hex(compose_id))

    def ref_path(self, ref: str) -> str:
        return os.path.join(self.base, 'refs', _check_ref_path(ref))

    def read_ref(self, ref: str) -> dict[str, t.Any] | None:
        try:
            doc = read_json(self.ref_path(ref))
        except (OSError, ValueError) as exc:
            raise ComposeError('cannot read the ref pointer %s: %s' % (self.ref_path(ref), exc)) from None
        return doc if isinstance(doc, dict) and isinstance(doc.get('compose_id'), str) else None

    def complete(self, compose_id: str) -> bool:
        """True when the compose directory holds a manifest with this digest, an artifact and the inputs."""
        directory = self.compose_dir(compose_id)
        if not all(os.path.isfile(os.path.join(directory, name)) for name in COMPOSE_FILES):
            return False
        try:
            return load_manifest(os.path.join(directory, MANIFEST)).digest == compose_id
        except ManifestError:
            return False

    def problem(self, compose_id: str) -> str | None:
        """Why the stored compose fails its integrity check, or None when it passes (or is not there at all).

        The manifest must have the compose id as digest; the artifact must have the sha256 recorded when
        it was packed (``inputs.json`` ``artifact_sha256``), or, for a compose recorded without it, hold
        exactly the manifest's content (read in full).
        """
        directory = self.compose_dir(compose_id)
        if not os.path.lexists(directory):
            return None
        missing = [name for name in COMPOSE_FILES if not os.path.isfile(os.path.join(directory, name))]
        if missing:
            return 'it lacks %s' % ', '.join(missing)
        try:
            digest = load_manifest(os.path.join(directory, MANIFEST)).digest
        except ManifestError as exc:
            return 'its %s is unreadable: %s' % (MANIFEST, exc.msg)
        if digest != compose_id:
            return 'its %s has the digest %s' % (MANIFEST, digest)
        try:
            inputs = read_json(os.path.join(directory, INPUTS))
        except (OSError, ValueError) as exc:
            return 'its %s is unreadable: %s' % (INPUTS, exc)
        artifact = os.path.join(directory, ARTIFACT)
        recorded = inputs.get('artifact_sha256') if isinstance(inputs, dict) else None
        if isinstance(recorded, str):
            actual = sha256_file(artifact)
            return None if actual == recorded else 'its %s has the sha256 %s, not the %s recorded when it was packed' % (ARTIFACT, actual, recorded)
        try:
            packed = scan_tar(artifact).digest
        except ManifestError as exc:
            return 'its %s is unreadable: %s' % (ARTIFACT, exc.msg)
        return None if packed == compose_id else 'its %s holds other content than its manifest (digest %s)' % (ARTIFACT, packed)

    def quarantine(self, compose_id: str, problem: str) -> str:
        """Move the stored compose aside into ``<store>/<app>/quarantine/`` (one rename); the warning that says so."""
        directory = self.compose_dir(compose_id)
        parent = os.path.join(self.base, QUARANTINE)
        os.makedirs(parent, exist_ok=True)
        dest = os.path.join(parent, '%s-%s' % (_hex(compose_id), datetime.datetime.now(datetime.timezone.utc).strftime('%Y%m%dT%H%M%S.%fZ')))
        os.rename(directory, dest)
        fsync_dir(os.path.dirname(directory))
        fsync_dir(parent)
        return ('the compose %s in the artifact store %r failed its integrity check (%s): it was moved to %r and is '
                'composed again (remove that directory once inspected)' % (compose_id, self.root, problem, dest))

    def usable(self, compose_id: str, warnings: list[str]) -> bool:
        """True when the stored compose is complete and passes :meth:`problem`; a corrupt one is quarantined (warning added)."""
        problem = self.problem(compose_id)
        if problem is not None:
            warnings.append(self.quarantine(compose_id, problem))
            return False
        return self.complete(compose_id)

    def tmp_dir(self) -> str:
        path = os.path.join(self.base, 'tmp')
        os.makedirs(path, exist_ok=True)
        return path

    def clean_tmp(self, max_age: int = STALE_TMP_SECONDS) -> None:
        """Remove what interrupted composes left in ``tmp/`` (entries older than ``max_age`` seconds)."""
        path = os.path.join(self.base, 'tmp')
        if not os.path.isdir(path):
            return
        limit = time.time() - max_age
        for name in os.listdir(path):
            full = os.path.join(path, name)
            try:
                if os.lstat(full).st_mtime < limit:
                    _remove(full)
            except OSError:
                pass

    def publish(self, staging: str, compose_id: str) -> bool:
        """Rename the staged compose directory into place; False when an identical compose is already there."""
        final = self.compose_dir(compose_id)
        parent = os.path.dirname(final)
        os.makedirs(parent, exist_ok=True)
        if self.complete(compose_id):
            shutil.rmtree(staging)
            return False
        if os.path.lexists(final):
            # an incomplete leftover (interrupted copy by hand?): move it aside, then replace it
            aside = temp_name(self.tmp_dir(), 'broken')
            os.rename(final, aside)
            shutil.rmtree(aside, ignore_errors=True)
        try:
            os.rename(staging, final)
        except OSError as exc:
            if exc.errno in (errno.EEXIST, errno.ENOTEMPTY) and self.complete(compose_id):
                shutil.rmtree(staging)
                return False
            raise
        fsync_dir(parent)
        return True

    def add_signature(self, compose_id: str, sig_path: str) -> None:
        with open(sig_path, 'rb') as f:
            write_bytes_atomic(os.path.join(self.compose_dir(compose_id), SIGNATURE), f.read())

    def write_ref(self, ref: str, doc: dict[str, t.Any]) -> bool:
        path = self.ref_path(ref)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        old = read_json(path)
        if isinstance(old, dict) and {k: v for k, v in old.items() if k != 'updated'} == {k: v for k, v in doc.items() if k != 'updated'}:
            return False
        write_json_atomic(path, doc)
        return True

    def artifact_path(self, key: str) -> str:
        return os.path.join(self.base, ARTIFACTS, key + '.json')

    def read_artifact(self, key: str) -> dict[str, t.Any] | None:
        """The record of the compose an artifact with this :func:`artifact_key` gave, or None (none, or unreadable)."""
        try:
            doc = read_json(self.artifact_path(key))
        except (OSError, ValueError):
            return None
        return doc if isinstance(doc, dict) and isinstance(doc.get('compose_id'), str) else None

    def write_artifact(self, key: str, doc: dict[str, t.Any]) -> None:
        path = self.artifact_path(key)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_json_atomic(path, doc)


class HttpStore:
    """An http(s) store: the same layout below ``url``, read with GET and written with PUT.

    A local :class:`LocalStore` (``cache``) holds the composes this controller
    built or downloaded; the module returns paths in it.
    """

    def __init__(self, url: str, app: str, cache: str, validate_certs: bool = True, timeout: int = 60) -> None:
        self.url = url.rstrip('/')
        self.app = app
        self.cache = LocalStore(cache, app)
        self.validate_certs = validate_certs
        self.timeout = timeout
        self.location = '%s/%s' % (self.url, app)

    def _url(self, rel: str) -> str:
        from urllib.parse import quote
        return '%s/%s/%s' % (self.url, quote(self.app), quote(rel))

    def get(self, rel: str) -> bytes | None:
        from urllib.error import HTTPError, URLError
        from ansible.module_utils.urls import open_url
        url = self._url(rel)
        try:
            with open_url(url, method='GET', validate_certs=self.validate_certs, timeout=self.timeout) as resp:
                return resp.read()
        except HTTPError as exc:
            if exc.code == 404:
                return None
            raise ComposeError('GET %s failed: HTTP %s %s' % (url, exc.code, exc.reason)) from None
        except (URLError, OSError) as exc:
            raise ComposeError('GET %s failed: %s' % (url, getattr(exc, 'reason', exc))) from None

    def put(self, rel: str, data: bytes, content_type: str = 'application/octet-stream') -> None:
        from urllib.error import HTTPError, URLError
        from ansible.module_utils.urls import open_url
        url = self._url(rel)
        try:
            with open_url(url, data=data, method='PUT', validate_certs=self.validate_certs, timeout=self.timeout,
                          headers={'Content-Type': content_type}) as resp:
                resp.read()
        except HTTPError as exc:
            raise ComposeError('PUT %s failed: HTTP %s %s' % (url, exc.code, exc.reason)) from None
        except (URLError, OSError) as exc:
            raise ComposeError('PUT %s failed: %s' % (url, getattr(exc, 'reason', exc))) from None

    def read_ref(self, ref: str) -> dict[str, t.Any] | None:
        import json
        data = self.get('refs/' + _check_ref_path(ref))
        if data is None:
            return None
        try:
            doc = json.loads(data.decode('utf-8'))
        except ValueError as exc:
            raise ComposeError('the ref pointer %s is not JSON: %s' % (self._url('refs/' + ref + '.json'), exc)) from None
        return doc if isinstance(doc, dict) and isinstance(doc.get('compose_id'), str) else None

    def remote_has(self, compose_id: str) -> bool:
        data = self.get('composes/%s/%s' % (_hex(compose_id), MANIFEST))
        return data is not None and _manifest_bytes_digest(data) == compose_id

    def fetch(self, compose_id: str) -> None:
        """Download a compose into the local cache (verified against its id) unless it is there already."""
        if self.cache.complete(compose_id):
            return
        hexid = _hex(compose_id)
        staging = tempfile.mkdtemp(prefix='.fetch-', dir=self.cache.tmp_dir())
        try:
            for name in COMPOSE_FILES + (SIGNATURE,):
                data = self.get('composes/%s/%s' % (hexid, name))
                if data is None:
                    if name == SIGNATURE:
                        continue
                    raise ComposeError('the store %s has no %s for compose %s' % (self.location, name, compose_id))
                write_bytes_atomic(os.path.join(staging, name), data)
            _verify_compose_dir(staging, compose_id)
            self.cache.publish(staging, compose_id)
        finally:
            if os.path.isdir(staging):
                shutil.rmtree(staging, ignore_errors=True)

    def upload(self, compose_id: str) -> None:
        directory = self.cache.compose_dir(compose_id)
        hexid = _hex(compose_id)
        names = [ARTIFACT, INPUTS, SIGNATURE, MANIFEST] if not self.remote_has(compose_id) else [SIGNATURE]
        for name in names:
            path = os.path.join(directory, name)
            if os.path.isfile(path):
                with open(path, 'rb') as f:
                    self.put('composes/%s/%s' % (hexid, name), f.read(),
                             'application/json' if name.endswith('.json') else 'application/octet-stream')

    def write_ref(self, ref: str, doc: dict[str, t.Any]) -> bool:
        old = self.read_ref(ref)
        if old is not None and {k: v for k, v in old.items() if k != 'updated'} == {k: v for k, v in doc.items() if k != 'updated'}:
            return False
        self.put('refs/' + _check_ref_path(ref), dump_json(doc), 'application/json')
        return True


def _manifest_bytes_digest(data: bytes) -> str | None:
    import json
    from ansible_collections.stagehand.deploy.plugins.module_utils._manifest import manifest_from_json
    try:
        return manifest_from_json(json.loads(data.decode('utf-8'))).digest
    except (ValueError, ManifestError):
        return None


def _verify_compose_dir(directory: str, compose_id: str) -> None:
    try:
        manifest = load_manifest(os.path.join(directory, MANIFEST))
        packed = scan_tar(os.path.join(directory, ARTIFACT))
    except ManifestError as exc:
        raise ComposeError('compose %s in the store is unusable: %s' % (compose_id, exc.msg)) from None
    if manifest.digest != compose_id or packed.digest != compose_id:
        raise ComposeError('compose %s in the store is corrupt: manifest %s, artifact %s' % (compose_id, manifest.digest, packed.digest))


def open_store(store: str, app: str, cache: str, validate_certs: bool = True) -> LocalStore | HttpStore:
    if re.match(r'\Ahttps?://', store, re.I):
        return HttpStore(store, app, cache, validate_certs)
    if '://' in store:
        raise ComposeError('store %s: use a local directory or an http:// or https:// URL' % store)
    return LocalStore(store, app)


# -- the compose ----------------------------------------------------------------
def _last_good(ref: str | None, pointer: dict[str, t.Any] | None) -> str:
    if ref is None:
        return 'nothing was published to the store'
    if pointer:
        return 'the last good compose of %s (%s) is unchanged' % (ref, pointer.get('compose_id'))
    return 'nothing was published and there is no earlier good compose of %s in the store' % ref


def _result(store: LocalStore | HttpStore, compose_id: str, inputs: dict[str, t.Any], reused: bool, changed: bool) -> dict[str, t.Any]:
    local = store.cache if isinstance(store, HttpStore) else store
    directory = local.compose_dir(compose_id)
    sig = os.path.join(directory, SIGNATURE)
    return {
        'changed': changed,
        'compose_id': compose_id,
        'dir': directory,
        'artifact': os.path.join(directory, ARTIFACT),
        'manifest': os.path.join(directory, MANIFEST),
        'signature': sig if os.path.isfile(sig) else None,
        'inputs_path': os.path.join(directory, INPUTS),
        'inputs': {k: v for k, v in inputs.items() if k != 'build_log'},
        'shared': inputs.get('shared'),
        'platform': {'php': inputs.get('platform', {}).get('php', []), 'extensions': inputs.get('platform', {}).get('extensions', [])},
        'reused': reused,
        'release': inputs.get('release'),
        'commit': inputs.get('commit'),
        'ref': inputs.get('ref'),
        'store': store.location,
        'build': inputs.get('build_log', []),
    }


def _ensure_signature(store: LocalStore | HttpStore, compose_id: str, signing_key: str | None) -> bool:
    """Make the stored compose's manifest signed by ``signing_key``; True when a signature was added or replaced.

    A compose signed by another key (an earlier key, or a mistake) is signed
    again, so the store never keeps a signature the configured key did not make.
    """
    if not signing_key:
        return False
    key = os.path.expanduser(signing_key)
    local = store.cache if isinstance(store, HttpStore) else store
    directory = local.compose_dir(compose_id)
    sig = os.path.join(directory, SIGNATURE)
    manifest = os.path.join(directory, MANIFEST)
    remote_rel = 'composes/%s/%s' % (_hex(compose_id), SIGNATURE)
    if os.path.isfile(sig) and fingerprint(manifest, sig) == key_fingerprint(key):
        if isinstance(store, HttpStore):
            with open(sig, 'rb') as f:
                data = f.read()
            if store.get(remote_rel) != data:
                store.put(remote_rel, data)
                return True
        return False
    work = tempfile.mkdtemp(prefix='.sign-', dir=local.tmp_dir())
    try:
        copy = os.path.join(work, MANIFEST)
        shutil.copyfile(manifest, copy)
        sign(copy, key)
        local.add_signature(compose_id, copy + '.sig')
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if isinstance(store, HttpStore):
        with open(sig, 'rb') as f:
            store.put(remote_rel, f.read())
    return True


def _reusable(store: LocalStore | HttpStore, pointer: dict[str, t.Any] | None, commit: str, release: str,
              check_mode: bool = False, warnings: list[str] | None = None) -> dict[str, t.Any] | None:
    if not pointer or pointer.get('commit') != commit or pointer.get('release') != release:
        return None
    compose_id = pointer['compose_id']
    if not re.match(r'\Asha256:[0-9a-f]{64}\Z', compose_id):
        return None
    if isinstance(store, HttpStore) and check_mode and not store.cache.complete(compose_id):
        import json
        data = store.get('composes/%s/%s' % (_hex(compose_id), INPUTS)) if store.remote_has(compose_id) else None
        try:
            inputs = json.loads(data.decode('utf-8')) if data is not None else None
        except ValueError:
            return None
        ok = isinstance(inputs, dict) and inputs.get('commit') == commit and inputs.get('release') == release and not inputs.get('prepared')
        return inputs if ok else None
    warnings = [] if warnings is None else warnings
    local = store.cache if isinstance(store, HttpStore) else store
    if check_mode and local.problem(compose_id) is not None:
        return None  # a real run quarantines it and composes again
    if not check_mode and not local.usable(compose_id, warnings) and not isinstance(store, HttpStore):
        return None
    if isinstance(store, HttpStore):
        try:
            store.fetch(compose_id)
        except ComposeError:
            return None
    inputs = read_json(os.path.join(local.compose_dir(compose_id), INPUTS))
    if not isinstance(inputs, dict) or inputs.get('commit') != commit or inputs.get('release') != release:
        return None
    if inputs.get('prepared'):
        # changed by a prepare hook after the build: not what this ref alone composes to
        return None
    return inputs


def find_reusable(store: LocalStore, ref: str, commit: str, release: str | None = None,
                  warnings: list[str] | None = None) -> dict[str, t.Any] | None:
    """The compose of ``ref`` in a local store (as the compose module returns it, ``reused``), without building.

    The ref pointer must name a compose of ``commit`` made for ``release`` (any release name
    recorded with it when None) whose recorded inputs say the same and that a prepare hook did
    not change. The stored compose must pass its integrity check (:meth:`LocalStore.problem`: the
    manifest's digest, the artifact's recorded sha256); one that fails is moved into the store's
    quarantine (a warning in ``warnings`` says where) and None is returned, so the deploy composes
    it again. Never builds.
    """
    pointer = store.read_ref(ref)
    if not pointer or pointer.get('commit') != commit:
        return None
    compose_id = pointer['compose_id']
    wanted = release if release is not None else pointer.get('release')
    if not isinstance(wanted, str) or pointer.get('release') != wanted or not re.match(r'\Asha256:[0-9a-f]{64}\Z', compose_id):
        return None
    try:
        inputs = read_json(os.path.join(store.compose_dir(compose_id), INPUTS))
    except (OSError, ValueError):
        return None
    if not isinstance(inputs, dict) or inputs.get('commit') != commit or inputs.get('release') != wanted or inputs.get('prepared'):
        return None
    if not store.usable(compose_id, [] if warnings is None else warnings):
        return None
    return _result(store, compose_id, inputs, reused=True, changed=False)


def artifact_identity(src: str) -> str | None:
    """What a prebuilt artifact holds, read without copying it; None when it is neither a file nor a directory.

    A ``.tar.gz`` file: the sha256 of its bytes (the same bytes handed over again, under any name,
    give the same identity). A directory: the sha256 of a listing of every entry below it (path,
    type, mode, size, modification and change times in nanoseconds, inode, link target), as git's
    index tells changed files: writing, renaming into place or chmod-ing any file changes its
    change time, which no tool can set back, so changed content never keeps the identity.
    """
    if os.path.isfile(src):
        return 'file:' + t.cast(str, sha256_file(src))
    if not os.path.isdir(src):
        return None
    digest = hashlib.sha256()
    for top, dirs, files in os.walk(src):
        dirs.sort()
        for name in sorted(dirs + files):
            path = os.path.join(top, name)
            st = os.lstat(path)
            target = os.readlink(path) if stat.S_ISLNK(st.st_mode) else ''
            digest.update(('%s\0%o\0%d\0%d\0%d\0%d\0%d\0%s\n' % (
                os.path.relpath(path, src), st.st_mode, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev,
                target)).encode('utf-8', 'surrogateescape'))
    return 'dir:' + digest.hexdigest()


def artifact_key(src: str, release: str, web_root: str | None) -> str | None:
    """The key of the compose a prebuilt artifact gives: its :func:`artifact_identity`, the release name, the web root.

    Those are all a compose of an artifact depends on (no build runs for an artifact; its own
    ``stagehand.yml`` is part of its content; ``RELEASE`` holds the release name). None when the
    artifact is not there (the compose then reports that).
    """
    identity = artifact_identity(src)
    if identity is None:
        return None
    return hashlib.sha256(dump_json([identity, release, web_root or None])).hexdigest()


def find_artifact_compose(store: LocalStore, key: str, release: str, warnings: list[str] | None = None) -> dict[str, t.Any] | None:
    """The compose recorded for the artifact key ``key`` (:func:`artifact_key`), as the compose module returns a reuse; else None.

    It must be a compose of an artifact, made for ``release``, not changed by a prepare hook,
    and pass the store's integrity check (a corrupt one is quarantined, a warning added to
    ``warnings``, and None returned so that the artifact is composed again).
    """
    record = store.read_artifact(key)
    if record is None or not re.match(r'\Asha256:[0-9a-f]{64}\Z', record['compose_id']):
        return None
    compose_id = record['compose_id']
    try:
        inputs = read_json(os.path.join(store.compose_dir(compose_id), INPUTS))
    except (OSError, ValueError):
        return None
    if not isinstance(inputs, dict) or inputs.get('source') != 'artifact' or inputs.get('release') != release or inputs.get('prepared'):
        return None
    if not store.usable(compose_id, [] if warnings is None else warnings):
        return None
    return _result(store, compose_id, inputs, reused=True, changed=False)


def check_params(params: t.Mapping[str, t.Any]) -> None:
    if bool(params.get('ref')) == bool(params.get('artifact')) and params.get('step') != 'pack':
        raise ComposeError('give exactly one of ref (a tag, branch or commit of repo) and artifact (a directory or .tar.gz)')
    if params.get('ref') and not params.get('repo'):
        raise ComposeError('ref %s needs repo, the path of the git repository on the controller' % params['ref'])
    if params.get('release'):
        try:
            check_release_name(params['release'], 'release name given with -e release')
        except InvalidName as exc:
            raise ComposeError(str(exc)) from None
    elif params.get('step') == 'pack':
        raise ComposeError('step=pack needs release, the release name returned by the step=build run')
    app = params.get('app')
    if not isinstance(app, str) or not _APP_RE.match(app):
        raise ComposeError('app %r is not a valid application name (1 to 128 of A-Z a-z 0-9 . _ -, not starting with "." or "-")' % (app,))
    if params.get('signing_key') and not os.path.isfile(os.path.expanduser(params['signing_key'])):
        raise ComposeError('signing_key %s does not exist on the controller (create one with ssh-keygen -t ed25519 -N "" -f %s)'
                           % (params['signing_key'], params['signing_key']))
    if params.get('step') == 'pack' and not params.get('tree'):
        raise ComposeError('step=pack needs tree, the tree returned by the step=build run')
    if params.get('ref'):
        _check_ref_path(params['ref'])
    for i, argv in enumerate(params.get('default_build') or []):
        if not isinstance(argv, list) or not argv or not all(isinstance(a, str) and a for a in argv):
            raise ComposeError('default_build[%d] must be a non-empty list of strings (an argv), got %r' % (i, argv))


def _build_env(commit: str | None, ref: str | None, release: str, mtime: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        'COMPOSER_ALLOW_SUPERUSER': '1',
        'STAGEHAND_RELEASE': release,
        'STAGEHAND_REF': ref or '',
        'STAGEHAND_COMMIT': commit or '',
        'SOURCE_DATE_EPOCH': str(mtime),
    })
    return env


def requirements(tree: str, config: dict[str, t.Any]) -> Requirements:
    """The platform requirements of ``tree``: composer.json, composer.lock and the ``platform`` of stagehand.yml."""
    req = Requirements()
    try:
        composer_requirements(tree, req)
        if config['platform']['php']:
            req.add_php(config['platform']['php'], CONFIG_NAME)
        for ext in config['platform']['extensions']:
            req.add_extension(ext, CONFIG_NAME)
    except PlatformError as exc:
        raise ComposeError(exc.msg) from None
    return req


def _source_inputs(tree: str, config: dict[str, t.Any]) -> dict[str, t.Any]:
    return {
        'composer_lock_sha256': sha256_file(os.path.join(tree, 'composer.lock')),
        'stagehand_yml_sha256': config['sha256'],
        'platform': requirements(tree, config).to_json(),
    }


def refuse_unfit_hosts(tree: str, config: dict[str, t.Any], hosts: t.Mapping[str, t.Any], source: str) -> None:
    """Before the build runs: refuse the compose when a host's php-fpm cannot run what the source requires.

    What the build adds (a composer.lock it writes) is checked later, on every host, before anything is staged.
    """
    unfit = unfit_hosts(hosts, requirements(tree, config))
    if unfit:
        where = ('%d hosts' % len(unfit)) if len(unfit) > 1 else 'host'
        raise ComposeError('%s cannot run on %s %s. Found before building: nothing was built, sent or changed on any host'
                           % (source, where, '; '.join('%s: %s' % item for item in unfit.items())),
                           failed_phase='platform', unfit_hosts=unfit)


def build_tree(params: t.Mapping[str, t.Any], work: str, commit: str | None, mtime: int) -> dict[str, t.Any]:
    """Export or copy the source into ``<work>/tree`` and run the build; return the state the pack step needs."""
    tree = os.path.join(work, 'tree')
    os.mkdir(tree, 0o755)
    if commit is not None:
        export_git(os.path.abspath(os.path.expanduser(params['repo'])), commit, tree, work)
    else:
        copy_artifact(os.path.abspath(os.path.expanduser(params['artifact'])), tree)
    config = load_config(tree, params.get('default_build') or [])
    if params.get('platform_hosts'):
        refuse_unfit_hosts(tree, config, params['platform_hosts'], _source_text(params, commit))
    build = config['build'] if commit is not None else []
    env = _build_env(commit, params.get('ref'), params['release'], mtime)
    log = run_build(tree, build, env, commit)
    return {'tree': tree, 'config': config, 'log': log, 'build': build, 'env': env}


def _source_text(params: t.Mapping[str, t.Any], commit: str | None) -> str:
    """What a compose is made of, for messages: ``the artifact '/x/app.tar.gz'`` or ``version 'v1' (commit 0123456789ab)``."""
    if params.get('artifact'):
        return 'the artifact %r' % (params['artifact'],)
    return 'version %r (commit %s)' % (params.get('ref'), (commit or '')[:12])


def pack_compose(params: t.Mapping[str, t.Any], store: LocalStore | HttpStore, tree: str, config: dict[str, t.Any],
                 log: list[dict[str, t.Any]], build: list[list[str]], env: t.Mapping[str, str], commit: str | None, mtime: int) -> dict[str, t.Any]:
    """Filter the built tree, write RELEASE, take the manifest, pack, record the inputs and publish. Returns the result."""
    release = params['release']
    ref = params.get('ref')
    source = _source_inputs(tree, config)
    apply_filters(tree, config['include'], config['exclude'])
    check_content(tree, _source_text(params, commit), params.get('web_root'))
    release_path = os.path.join(tree, RELEASE_FILE)
    if os.path.lexists(release_path):
        _remove(release_path)
    with open(release_path, 'wb') as f:
        f.write((release + '\n').encode('utf-8'))
    normalise_modes(tree)
    try:
        manifest = build_manifest(tree)
    except ManifestError as exc:
        raise ComposeError('the built tree cannot be deployed: %s' % exc.msg) from None
    compose_id = manifest.digest
    artifact_src = None
    if params.get('artifact'):
        src = os.path.abspath(os.path.expanduser(params['artifact']))
        artifact_src = {'path': src, 'sha256': sha256_file(src) if os.path.isfile(src) else None}
    inputs: dict[str, t.Any] = {
        'compose_id': compose_id,
        'source': 'git' if commit else 'artifact',
        'repo': os.path.abspath(os.path.expanduser(params['repo'])) if commit else None,
        'ref': ref,
        'commit': commit,
        'artifact': artifact_src,
        'release': release,
        'stagehand_yml': config['present'],
        'build': build,
        'include': config['include'],
        'exclude': config['exclude'],
        'shared': config['shared'],
        'tools': tool_versions(env, build),
        'time': now_iso(),
        'mtime': mtime,
        'files': manifest.files,
        'bytes': manifest.bytes,
        'prepared': params.get('step') == 'pack',
    }
    inputs.update(source)
    local = store.cache if isinstance(store, HttpStore) else store
    local.clean_tmp()
    changed = False
    warnings: list[str] = []
    if local.usable(compose_id, warnings):
        existing = read_json(os.path.join(local.compose_dir(compose_id), INPUTS))
        if isinstance(existing, dict):
            inputs = existing
    else:
        staging = tempfile.mkdtemp(prefix='.compose-', dir=local.tmp_dir())
        try:
            os.chmod(staging, 0o755)
            artifact = os.path.join(staging, ARTIFACT)
            pack(tree, manifest, artifact, mtime)
            packed = scan_tar(artifact)
            if packed.digest != compose_id:
                raise ComposeError('the packed artifact does not match the tree (%s, expected %s)' % (packed.digest, compose_id))
            save_manifest(os.path.join(staging, MANIFEST), manifest)
            # what the integrity check of a reuse compares the artifact with (LocalStore.problem)
            inputs['artifact_sha256'] = sha256_file(artifact)
            write_json_atomic(os.path.join(staging, INPUTS), inputs)
            if params.get('signing_key'):
                sign(os.path.join(staging, MANIFEST), os.path.expanduser(params['signing_key']))
                fsync_file(os.path.join(staging, SIGNATURE))
            changed = local.publish(staging, compose_id)
        finally:
            if os.path.isdir(staging):
                shutil.rmtree(staging, ignore_errors=True)
    if _ensure_signature(store, compose_id, params.get('signing_key')):
        changed = True
    if isinstance(store, HttpStore):
        if not store.remote_has(compose_id):
            store.upload(compose_id)
            changed = True
    if params.get('artifact_key'):  # set by _compose for a whole compose (step all) of an artifact
        # read before the copy: the next deploy of the same artifact reuses this compose at once
        local.write_artifact(params['artifact_key'], {'compose_id': compose_id, 'release': release,
                                                      'artifact': params['artifact'], 'updated': now_iso()})
    if ref:
        pointer = {'ref': ref, 'commit': commit, 'release': release, 'compose_id': compose_id, 'updated': now_iso()}
        if isinstance(store, HttpStore):
            store.cache.write_ref(ref, pointer)
        if store.write_ref(ref, pointer):
            changed = True
    inputs['build_log'] = log
    result = _result(store, compose_id, inputs, reused=False, changed=changed)
    result.update({'ref': ref, 'commit': commit, 'release': release, 'warnings': warnings})
    return result


def run(params: t.Mapping[str, t.Any], check_mode: bool = False) -> dict[str, t.Any]:
    """The compose module: ``step`` all (default), build (export and build only) or pack (finish a tree from step build).

    The result's ``warnings`` name any stored compose that failed its integrity check and was
    quarantined (then composed again).
    """
    warnings: list[str] = []
    try:
        result = _compose(params, check_mode, warnings)
    except ComposeError as exc:
        if warnings:
            raise ComposeError('%s; %s' % (exc.msg, '; '.join(warnings)), **exc.details) from None
        raise
    result['warnings'] = warnings + [w for w in result.get('warnings') or [] if w not in warnings]
    return result


def _compose(params: t.Mapping[str, t.Any], check_mode: bool, warnings: list[str]) -> dict[str, t.Any]:
    check_params(params)
    params = dict(params)
    store = open_store(params['store'], params['app'], params.get('cache') or '~/.cache/stagehand/store-cache',
                       params.get('validate_certs', True))
    ref = params.get('ref')
    step = params.get('step') or 'all'
    pointer = None
    commit = None
    mtime = 0
    if ref:
        pointer = store.read_ref(ref)
    try:
        if ref:
            commit, mtime = resolve_ref(os.path.abspath(os.path.expanduser(params['repo'])), ref)
        params['release'] = release_for(params, commit)
        if ref and step == 'all' and not params.get('force'):
            inputs = _reusable(store, pointer, t.cast(str, commit), params['release'], check_mode, warnings)
            if inputs is not None:
                compose_id = pointer['compose_id']  # type: ignore[index]
                if check_mode:
                    return _result(store, compose_id, inputs, reused=True, changed=bool(params.get('signing_key'))
                                   and not os.path.isfile(os.path.join((store.cache if isinstance(store, HttpStore) else store).compose_dir(compose_id),
                                                                       SIGNATURE)))
                changed = _ensure_signature(store, compose_id, params.get('signing_key'))
                return _result(store, compose_id, inputs, reused=True, changed=changed)
        if params.get('artifact') and step == 'all' and not params.get('force') and not check_mode and isinstance(store, LocalStore):
            # recorded by pack_compose below when there is no compose of this artifact yet
            params['artifact_key'] = artifact_key(os.path.abspath(os.path.expanduser(params['artifact'])), params['release'],
                                                  params.get('web_root'))
            found = find_artifact_compose(store, params['artifact_key'], params['release'], warnings) if params['artifact_key'] else None
            if found is not None:
                found['changed'] = _ensure_signature(store, found['compose_id'], params.get('signing_key'))
                return found
        if check_mode:
            return {'changed': True, 'compose_id': None, 'dir': None, 'artifact': None, 'manifest': None, 'signature': None,
                    'inputs_path': None, 'inputs': {}, 'shared': None, 'platform': {'php': [], 'extensions': []}, 'reused': False,
                    'release': params['release'], 'commit': commit, 'ref': ref, 'store': store.location, 'build': []}
        if step == 'pack':
            tree = os.path.abspath(params['tree'])
            if not os.path.isdir(tree):
                raise ComposeError('tree %s is not a directory: give the tree returned by the step=build run' % tree)
            config = load_config(tree, params.get('default_build') or [])
            build = config['build'] if commit else []
            env = _build_env(commit, ref, params['release'], mtime)
            try:
                return pack_compose(params, store, tree, config, [], build, env, commit, mtime)
            finally:
                shutil.rmtree(os.path.dirname(tree), ignore_errors=True)
        work_parent = os.path.expanduser(params['work_dir']) if params.get('work_dir') else None
        if work_parent:
            os.makedirs(work_parent, exist_ok=True)
        work = tempfile.mkdtemp(prefix='stagehand-compose-', dir=work_parent)
        keep = False
        try:
            built = build_tree(params, work, commit, mtime)
            if step == 'build':
                keep = True
                return {'changed': False, 'tree': built['tree'], 'work': work, 'commit': commit, 'mtime': mtime, 'ref': ref,
                        'release': params['release'], 'store': store.location, 'reused': False, 'build': built['log']}
            return pack_compose(params, store, built['tree'], built['config'], built['log'], built['build'], built['env'], commit, mtime)
        finally:
            if not keep:
                shutil.rmtree(work, ignore_errors=True)
    except ComposeError as exc:
        raise ComposeError('%s; %s' % (exc.msg, _last_good(ref, pointer)), **exc.details) from None
    except (SignatureError, ManifestError) as exc:
        raise ComposeError('%s; %s' % (exc.msg, _last_good(ref, pointer))) from None
    except OSError as exc:
        raise ComposeError('compose failed: %s%s; %s' % (exc.strerror or exc, (' (%s)' % exc.filename) if exc.filename else '',
                                                         _last_good(ref, pointer))) from None
