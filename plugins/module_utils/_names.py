# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Validation of release and slot names.

Release names become directory names under ``releases/`` and file names under
``.stagehand/``, so they are restricted to a small, portable alphabet.
"""

from __future__ import annotations

import grp
import os
import pwd
import re

MAX_NAME_LENGTH = 128
SLOT_NAMES = ('a', 'b')

_NAME_RE = re.compile(r'\A[A-Za-z0-9_-][A-Za-z0-9._-]*\Z')

ALLOWED_DESCRIPTION = (
    "1 to %d characters from ASCII letters, digits, '.', '_' and '-', not starting with '.'"
    % MAX_NAME_LENGTH
)


class InvalidName(ValueError):
    """Raised for a release name outside the allowed alphabet."""


def check_release_name(name: object, what: str = 'release name') -> str:
    """Return ``name`` if it is a valid release name, else raise :class:`InvalidName`.

    The message names the rejected value (with control characters escaped) and
    says what is allowed.
    """
    if not isinstance(name, str):
        raise InvalidName('%s %r is invalid: it must be a string of %s' % (what, name, ALLOWED_DESCRIPTION))
    if not name:
        raise InvalidName('%s is empty: use %s' % (what, ALLOWED_DESCRIPTION))
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidName(
            '%s %r is %d characters long: use %s' % (what, name[:40] + '...', len(name), ALLOWED_DESCRIPTION)
        )
    if not _NAME_RE.match(name):
        raise InvalidName('%s %r is invalid: use %s' % (what, name, ALLOWED_DESCRIPTION))
    return name


def is_release_name(name: object) -> bool:
    """Tell whether ``name`` is a valid release name, without raising."""
    try:
        check_release_name(name)
    except InvalidName:
        return False
    return True


def release_name(release: str | None = None, version: str | None = None, commit: str | None = None,
                 branch: bool = False, artifact: str | None = None) -> str:
    """The release name of a deploy: the one rule of docs/deploy.md (Release names), for every path.

    * ``release`` (``-e release=NAME``), when given, is the name;
    * else, for an ``artifact`` (``-e artifact=PATH``), its base name without ``.tar.gz``/``.tgz``;
    * else, for a git ``version``, the version itself when it is a valid release name and not a
      ``branch`` (a branch moves), otherwise the first 12 characters of its ``commit``.

    Nothing recorded anywhere (an artifact store's ref pointer, an earlier deploy) takes part.
    Raises :class:`InvalidName` naming the value and what is allowed.
    """
    if release:
        return check_release_name(release, 'release name given with -e release')
    if artifact:
        base = os.path.basename(artifact.rstrip('/'))
        for suffix in ('.tar.gz', '.tgz'):
            if base.endswith(suffix):
                base = base[:-len(suffix)]
                break
        if not is_release_name(base):
            raise InvalidName('the artifact %r gives the release name %r, which is invalid: use %s, or give one with -e release=NAME'
                              % (artifact, base, ALLOWED_DESCRIPTION))
        return base
    if not version:
        raise InvalidName('no release name: give -e version=REF, -e artifact=PATH or -e release=NAME')
    if is_release_name(version) and not branch:
        return version
    if not isinstance(commit, str) or not re.match(r'\A[0-9a-f]{12,64}\Z', commit):
        raise InvalidName('version %r needs the commit id it names to be named (got %r)' % (version, commit))
    return commit[:12]


def account_id(value: object, group: bool = False) -> int:
    """A user (or, with ``group``, a group) name or numeric id on this host -> uid (or gid).

    Raises ValueError naming the value and what is allowed.
    """
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    try:
        if isinstance(value, str) and value:
            return grp.getgrnam(value).gr_gid if group else pwd.getpwnam(value).pw_uid
    except KeyError:
        pass
    kind = 'group' if group else 'user'
    raise ValueError('%r is not a known %s on this host: use an existing %s name or a numeric id' % (value, kind, kind))
