# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The preview check: a staged release (or slot) answers a health request before anyone sees it.

The nginx role serves a second, loopback-only server (``nginx_preview_port``, 8180 by default)
whose root is the web root below ``<deploy root>/preview`` instead of ``<deploy root>/current``.
``preview`` is a symlink that this module points at the staged release (``releases/<name>``) or
slot (``slots/<a|b>``) with one rename(2); nginx resolves it with ``$realpath_root`` and php-fpm
runs the staged release's own code, against the database as it is after the migrations. The
health request of the deploy (its path and query, the expected release header) is sent to that
server; only when it answers 200 with the staged release does the release go live.

The public server never serves ``preview``; the link is left pointing at the last release
checked, and a dangling link (a release since removed) is harmless: the next check repoints it.
"""

from __future__ import annotations

import os
import typing as t

from ansible_collections.stagehand.deploy.plugins.module_utils import _switch
from ansible_collections.stagehand.deploy.plugins.module_utils._atomic import replace_symlink
from ansible_collections.stagehand.deploy.plugins.module_utils._state import MODE_RELEASES, MODE_SLOTS, DeployRoot

PREVIEW_LINK = 'preview'
DEFAULT_PREVIEW_PORT = 8180


class PreviewFailed(Exception):
    """The staged release did not pass its preview check (or could not be checked); ``result`` says what was seen."""

    def __init__(self, msg: str, result: dict[str, t.Any]) -> None:
        super().__init__(msg)
        self.msg = msg
        self.result = result


def check_port(port: object) -> int:
    """``port`` as an int (0: no preview check), else :class:`_switch.SwitchError` naming the value."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise _switch.SwitchError('preview port %r is invalid: use the port of the nginx preview server (nginx_preview_port, '
                                  '%d by default) between 1 and 65535, or 0 for no preview check' % (port, DEFAULT_PREVIEW_PORT))
    return port


def preview_url(health_url: str, port: int) -> str:
    """The health URL sent to the preview server: ``http://127.0.0.1:<port>`` with the path and query of ``health_url``.

    The preview server listens on the loopback only and speaks plain HTTP, whatever the scheme and
    host of the public health URL (``https://shop.example.com/health?deep=1`` gives
    ``http://127.0.0.1:8180/health?deep=1``).
    """
    _switch.check_health_args(health_url, '', _switch.DEFAULT_HEALTH_TIMEOUT)
    return 'http://127.0.0.1:%d%s' % (check_port(port), _switch.split_url(health_url)[2])


def link_path(droot: DeployRoot) -> str:
    """``<root>/preview``, the link the preview server serves."""
    return os.path.join(droot.root, PREVIEW_LINK)


def point_preview(droot: DeployRoot, mode: str, name: str) -> bool:
    """Point ``<root>/preview`` at ``releases/<name>`` (or ``slots/<name>``) atomically; True when it changed.

    A plain file or directory at that path is not ours: refused, naming it, rather than replaced.
    """
    if mode not in (MODE_RELEASES, MODE_SLOTS):
        raise _switch.SwitchError('mode %r is invalid: use releases or slots' % (mode,))
    path = link_path(droot)
    text = DeployRoot.link_text(mode, name)
    if os.path.islink(path):
        if os.readlink(path) == text:
            return False
    elif os.path.lexists(path):
        raise _switch.SwitchError('%s exists and is not a symlink: it is where the preview check points nginx\'s preview '
                                  'server at the staged release; move it away' % path)
    replace_symlink(path, text)
    return True


def check_staged(droot: DeployRoot, mode: str, name: str, expected: str, health_url: str, port: int,
                 header: str = _switch.DEFAULT_RELEASE_HEADER, timeout: float = _switch.DEFAULT_HEALTH_TIMEOUT,
                 live: str | None = None, fetch: _switch.Fetcher | None = None,
                 clock: t.Callable[[], float] | None = None, sleep: t.Callable[[float], None] | None = None) -> dict[str, t.Any]:
    """Point the preview at the staged ``name`` and wait until it answers healthy as ``expected``.

    Returns ``{'url', 'link', 'changed', 'health'}`` (``health`` as :func:`_switch.wait_healthy`
    returns it). Raises :class:`PreviewFailed` when it does not answer healthy within ``timeout``;
    the message names the URL, what was seen, and that ``current`` (``live``) was not touched.
    """
    url = preview_url(health_url, port)
    changed = point_preview(droot, mode, name)
    health = _switch.wait_healthy(url, expected, header=header, timeout=timeout, fetch=fetch, clock=clock, sleep=sleep)
    result = {'url': url, 'link': '%s -> %s' % (link_path(droot), DeployRoot.link_text(mode, name)), 'changed': changed, 'health': health}
    if health['ok']:
        return result
    parts = ['%s did not pass its preview check before going live: %s answered %s after %d attempt(s) in %.1f s'
             % (expected, url, health['error'], health['attempts'], health['elapsed'])]
    if health['status'] is None:
        parts.append('Is nginx serving the preview route? The stagehand.deploy.nginx role adds it (nginx_preview_port %d, '
                     'root below %s); set deploy_preview_port: 0 to deploy without the preview check' % (port, link_path(droot)))
    elif header and health['release'] is not None and health['release'] != expected:
        parts.append('The preview server answered for another release: its root must be the web root below %s '
                     '(nginx_preview_root)' % link_path(droot))
    parts.append('current was not touched (%s is live)' % (live or 'nothing'))
    if health.get('body'):
        parts.append('Start of the answer: %r' % health['body'][:200])
    msg = '. '.join(parts)
    raise PreviewFailed(msg, result)


def run(params: t.Mapping[str, t.Any], check_mode: bool = False, fetch: _switch.Fetcher | None = None) -> dict[str, t.Any]:
    """The module's run: check the arguments, then :func:`check_staged` (in check mode, only say what it would point at).

    ``params``: ``root, mode, release, target, health_url, health_release_header, health_timeout, port``.
    Raises :class:`_switch.SwitchError` for bad arguments (nothing read or written) and
    :class:`PreviewFailed` when the staged release fails its check.
    """
    # pylint: disable-next=import-outside-toplevel
    from ansible_collections.stagehand.deploy.plugins.module_utils._names import InvalidName, check_release_name

    mode = params.get('mode') or MODE_RELEASES
    release = params.get('release')
    try:
        check_release_name(release)
    except InvalidName as exc:
        raise _switch.SwitchError(str(exc)) from None
    droot = DeployRoot(params['root'])
    if mode == MODE_SLOTS:
        target = params.get('target')
        if target not in ('a', 'b'):
            raise _switch.SwitchError('target %r is invalid: in slots mode name the staged slot, a or b' % (target,))
    else:
        target = release
    port = check_port(params.get('port'))
    header = params.get('health_release_header')
    header = _switch.DEFAULT_RELEASE_HEADER if header is None else header
    timeout = params.get('health_timeout')
    timeout = _switch.DEFAULT_HEALTH_TIMEOUT if timeout is None else timeout
    url = params.get('health_url')
    _switch.check_health_args(url, header, timeout)
    if not os.path.isdir(droot.root):
        raise _switch.SwitchError('the deploy root %r does not exist on this host: provision it first' % (droot.root,))
    tree = droot.slot_path(target) if mode == MODE_SLOTS else droot.release_path(target)
    if not os.path.isdir(tree):
        raise _switch.SwitchError('%s is not staged on this host (no directory %s): nothing to check' % (target, tree))
    text = DeployRoot.link_text(mode, target)
    path = link_path(droot)
    before = os.readlink(path) if os.path.islink(path) else None
    diff = {'before': '%s -> %s\n' % (path, before) if before else '', 'after': '%s -> %s\n' % (path, text)}
    if port == 0 or url is None:
        return {'changed': False, 'skipped_check': True, 'url': None, 'link': None, 'health': None, 'diff': None}
    if check_mode:
        return {'changed': before != text, 'skipped_check': False, 'url': preview_url(url, port), 'link': '%s -> %s' % (path, text),
                'health': None, 'diff': diff if before != text else None}
    live_kind, live_name = droot.live()
    live = droot.label(live_kind, live_name) if live_kind == mode else None
    checked = check_staged(droot, mode, target, release, url, port, header=header, timeout=timeout, live=live, fetch=fetch)
    checked.update(skipped_check=False, diff=diff if checked['changed'] else None)
    return checked
