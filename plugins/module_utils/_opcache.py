# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Invalidating php-fpm's opcache for the files of an A/B slot, through the pool's FastCGI socket.

Why: in slots mode a slot directory is reused, so the same paths hold another
release's code. opcache keys compiled scripts by path and, with
``opcache.validate_timestamps=0`` (or until ``revalidate_freq`` has passed),
never looks at the file again: after the flip php-fpm could run the code the
slot held the previous time it was live.

How: a small PHP script (:data:`SCRIPT`, written root-owned and world-readable
to ``<root>/.stagehand/opcache-<digest>.php``, outside every document root) is run IN
the pool through its socket with a FastCGI request (:mod:`._fastcgi`), like
nginx would run a page. php-fpm's opcache lives in shared memory common to all
workers of the master, so what the script does is seen by every worker at once.
The script calls ``opcache_invalidate($file, true)`` for every file named and
for every cached script below the slot directory (from ``opcache_get_status``):
forced invalidation marks the cached script stale immediately, unlike
``opcache_reset()``, which is only scheduled and waits until no request runs.
It then checks with ``opcache_is_script_cached`` that none is cached any more
and answers JSON, which :func:`invalidate` checks.

The script only touches paths below the deploy root it lives in.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import typing as t

from ansible_collections.stagehand.deploy.plugins.module_utils._atomic import write_bytes_atomic
from ansible_collections.stagehand.deploy.plugins.module_utils._fastcgi import FastCGIError, parse_cgi_response, request
from ansible_collections.stagehand.deploy.plugins.module_utils._state import DeployRoot

DEFAULT_TIMEOUT = 30.0

SCRIPT = r"""<?php
// Written by stagehand.deploy (the opcache module); replaced on every run, do not edit.
// Invalidates php-fpm's opcache for files below this deploy root, for A/B slots. See docs/slots.md.
declare(strict_types=1);
header('Content-Type: application/json');
header('Cache-Control: no-store');
$root = dirname(__DIR__);
$input = json_decode((string) file_get_contents('php://input'), true);
if (!is_array($input)) {
    http_response_code(400);
    echo json_encode(['error' => 'the request body must be a JSON object']);
    return;
}
$inside = static function ($path) use ($root): bool {
    return is_string($path) && strncmp($path, $root . '/', strlen($root) + 1) === 0 && strpos($path, '/../') === false;
};
$dry = !empty($input['dry']);
$prefix = $input['prefix'] ?? null;
$out = ['ok' => true, 'enabled' => false, 'pid' => getmypid(), 'php' => PHP_VERSION, 'sapi' => PHP_SAPI,
        'listed' => false, 'candidates' => 0, 'cached' => [], 'invalidated' => [], 'still_cached' => [],
        'gone' => [], 'refused' => []];
if ($prefix !== null && !$inside(rtrim((string) $prefix, '/') . '/x')) {
    $out['refused'][] = (string) $prefix;
    $prefix = null;
}
$candidates = [];
foreach ((array) ($input['files'] ?? []) as $file) {
    if ($inside($file)) {
        $candidates[$file] = true;
    } else {
        $out['refused'][] = (string) $file;
    }
}
if (!function_exists('opcache_get_status') || !function_exists('opcache_invalidate')) {
    echo json_encode($out);
    return;
}
$status = @opcache_get_status(true);
$out['enabled'] = is_array($status) && !empty($status['opcache_enabled']);
if (is_array($status) && isset($status['scripts']) && is_array($status['scripts'])) {
    $out['listed'] = true;
    if ($prefix !== null) {
        $below = rtrim((string) $prefix, '/') . '/';
        foreach ($status['scripts'] as $script) {
            $path = (string) ($script['full_path'] ?? '');
            if (strncmp($path, $below, strlen($below)) === 0) {
                $candidates[$path] = true;
            }
        }
    }
}
$out['candidates'] = count($candidates);
if (!$out['enabled']) {
    echo json_encode($out);
    return;
}
foreach (array_keys($candidates) as $file) {
    $file = (string) $file;
    if (!file_exists($file)) {
        // opcache_invalidate() resolves the real path, so a removed file cannot be invalidated:
        // nothing can include it by that path any more unless it comes back (then with a new timestamp).
        $out['gone'][] = $file;
        continue;
    }
    $was = opcache_is_script_cached($file);
    if ($was) {
        $out['cached'][] = $file;
    }
    // invalidate even what does not look cached (harmless); report only what was cached
    if (!$dry && opcache_invalidate($file, true) && $was) {
        $out['invalidated'][] = $file;
    }
}
if (!$dry) {
    foreach ($out['cached'] as $file) {
        if (opcache_is_script_cached($file)) {
            $out['still_cached'][] = $file;
        }
    }
}
$out['ok'] = $out['still_cached'] === [];
echo json_encode($out);
"""


# The script's file name carries a digest of its content: opcache may keep a compiled script
# forever (validate_timestamps=0), so a new version must be a new path, never a rewrite.
SCRIPT_NAME = 'opcache-%s.php' % hashlib.sha256(SCRIPT.encode('utf-8')).hexdigest()[:16]
SCRIPT_PATTERN = re.compile(r'\Aopcache-[0-9a-f]{16}\.php\Z')


class OpcacheError(Exception):
    """The invalidation could not be done or confirmed; ``result`` holds what is known."""

    def __init__(self, msg: str, **result: t.Any) -> None:
        super().__init__(msg)
        self.msg = msg
        self.result = result


def script_path(root: str) -> str:
    return os.path.join(DeployRoot(root).state_dir, SCRIPT_NAME)


def script_is_current(path: str) -> bool:
    """Whether ``path`` holds exactly :data:`SCRIPT`, root-readable by everyone and not writable by others."""
    try:
        st = os.lstat(path)
        with open(path, 'rb') as f:
            data = f.read()
    except OSError:
        return False
    return (hashlib.sha256(data).digest() == hashlib.sha256(SCRIPT.encode('utf-8')).digest()
            and st.st_mode & 0o7777 == 0o644 and st.st_uid == os.geteuid())


def ensure_script(root: str, check_mode: bool = False) -> bool:
    """Write the script (mode 0644, owned by us) when it is missing or differs; return whether it changed."""
    path = script_path(root)
    if script_is_current(path):
        return False
    if not check_mode:
        directory = os.path.dirname(path)
        if not os.path.isdir(directory):
            raise OpcacheError('%s does not exist: is %s a deploy root?' % (directory, root))
        write_bytes_atomic(path, SCRIPT.encode('utf-8'), mode=0o644)
        for name in os.listdir(directory):  # earlier versions of the script
            if SCRIPT_PATTERN.match(name) and name != SCRIPT_NAME:
                os.unlink(os.path.join(directory, name))
    return True


def run_script(socket_path: str, script: str, payload: dict[str, t.Any], timeout: float = DEFAULT_TIMEOUT) -> dict[str, t.Any]:
    """Run the script in the pool behind ``socket_path`` with ``payload`` (JSON) and return its JSON answer."""
    body = json.dumps(payload).encode('utf-8')
    params = {
        'GATEWAY_INTERFACE': 'CGI/1.1',
        'SERVER_SOFTWARE': 'stagehand.deploy',
        'SERVER_PROTOCOL': 'HTTP/1.1',
        'REQUEST_METHOD': 'POST',
        'REQUEST_URI': '/' + SCRIPT_NAME,
        'SCRIPT_NAME': '/' + SCRIPT_NAME,
        'SCRIPT_FILENAME': script,
        'DOCUMENT_ROOT': os.path.dirname(script),
        'QUERY_STRING': '',
        'CONTENT_TYPE': 'application/json',
        'CONTENT_LENGTH': str(len(body)),
        'REMOTE_ADDR': '127.0.0.1',
        'SERVER_NAME': 'localhost',
        'SERVER_ADDR': '127.0.0.1',
        'SERVER_PORT': '80',
    }
    try:
        response = request(socket_path, params, body, timeout=timeout)
        status, _headers, text = parse_cgi_response(response.stdout)
    except FastCGIError as exc:
        raise OpcacheError(str(exc)) from None
    stderr = response.stderr.decode('utf-8', 'replace').strip()
    try:
        answer = json.loads(text.decode('utf-8'))
    except ValueError:
        answer = None
    if status != 200 or not isinstance(answer, dict):
        raise OpcacheError('%s answered status %d instead of the JSON of %s: %s%s'
                           % (socket_path, status, script, text[:300].decode('utf-8', 'replace'),
                              ('; stderr: ' + stderr[:300]) if stderr else ''), status=status)
    return answer


def invalidate(
    root: str,
    socket_path: str,
    files: t.Sequence[str] = (),
    prefix: str | None = None,
    check_mode: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
) -> dict[str, t.Any]:
    """Invalidate ``files`` and every cached script below ``prefix`` in the pool; return the module result."""
    droot = DeployRoot(root)
    if not os.path.isdir(droot.root):
        raise OpcacheError('root %s does not exist or is not a directory' % droot.root)
    paths: list[str] = []
    for raw in files:
        path = raw if os.path.isabs(raw) else os.path.join(prefix or droot.root, raw)
        path = os.path.normpath(path)
        if not (path + '/').startswith(droot.root.rstrip('/') + '/'):
            raise OpcacheError('file %s is outside the deploy root %s: only files of the deploy root are invalidated'
                               % (raw, droot.root))
        paths.append(path)
    if prefix is not None:
        prefix = os.path.normpath(prefix)
        if not prefix.startswith(droot.root.rstrip('/') + '/'):
            raise OpcacheError('prefix %s is outside the deploy root %s' % (prefix, droot.root))
    if not os.path.exists(socket_path):
        raise OpcacheError('the php-fpm socket %s does not exist: is the pool running (deploy_php_fpm_socket)?' % socket_path)
    wrote = ensure_script(root, check_mode)
    script = script_path(root)
    result: dict[str, t.Any] = {'changed': wrote, 'script': script, 'socket': socket_path, 'script_written': wrote}
    if check_mode and wrote:
        # the script is not there yet: nothing can be asked; assume the cache holds what is named
        result.update(enabled=None, candidates=len(paths), cached=[], invalidated=[], still_cached=[], gone=[])
        result['changed'] = True
        return result
    answer = run_script(socket_path, script, {'files': paths, 'prefix': prefix, 'dry': check_mode}, timeout)
    for key in ('enabled', 'listed', 'candidates', 'cached', 'invalidated', 'still_cached', 'gone', 'pid', 'php'):
        result[key] = answer.get(key)
    if answer.get('refused'):
        raise OpcacheError('the script refused paths outside %s: %s' % (droot.root, ', '.join(map(str, answer['refused'][:10]))),
                           **result)
    if not answer.get('ok') or answer.get('still_cached'):
        raise OpcacheError('opcache still holds %d of the scripts after invalidating them: %s'
                           % (len(answer.get('still_cached') or []), ', '.join(map(str, (answer.get('still_cached') or [])[:10]))),
                           **result)
    if check_mode:
        result['changed'] = wrote or bool(answer.get('cached'))
    else:
        result['changed'] = wrote or bool(answer.get('invalidated'))
    return result
