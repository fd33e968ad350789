# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What a deploy would do on one host, worked out on the controller without changing anything.

``deploy.yml --check`` runs the ship action in check mode: it reads what the host holds (one
read-only shell command: the live link, the release and slot metadata, the kept composes, the
lock, the migrations record), works out what the host lacks of the compose without writing it
(:func:`_delta.create` in check mode), and :func:`plan` turns that into what the deploy would
send, stage, migrate and switch, or why it would be refused, with one line for the report.
"""

from __future__ import annotations

import tarfile
import typing as t

from ansible_collections.stagehand.deploy.plugins.module_utils._migrate import IRREVERSIBLE_MARK, MIGRATION_RE, is_irreversible


def manifest_migrations(paths: t.Iterable[str], migrations_dir: str) -> list[str]:
    """The ids of the up migrations directly in ``migrations_dir`` of a release, from its manifest's paths, in order."""
    prefix = migrations_dir.strip('/') + '/'
    found = []
    for path in paths:
        if not path.startswith(prefix) or '/' in path[len(prefix):]:
            continue
        match = MIGRATION_RE.match(path[len(prefix):])
        if match is not None and match.group('kind') == 'up':
            found.append((int(match.group('num')), match.group('id')))
    return [mid for _num, mid in sorted(found)]


def pending_migrations(ids: list[str], record: object, database: str | None) -> tuple[list[str] | None, str | None]:
    """``(pending, None)`` from the host's migrations record, or ``(None, why)`` when the record cannot say."""
    if not isinstance(record, dict) or not isinstance(record.get('applied'), list):
        return None, 'the host has no usable migrations record: the deploy asks the database'
    if database is not None and record.get('database') != database:
        return None, 'the migrations record is about database %r, not %r: the deploy asks the database' % (record.get('database'), database)
    applied = set(record['applied'])
    return [mid for mid in ids if mid not in applied], None


def irreversible_migrations(pending: t.Sequence[str], paths: t.Iterable[str], migrations_dir: str,
                            read: t.Callable[[list[str]], t.Mapping[str, bytes]]) -> list[str]:
    """Which of ``pending`` are irreversible, by the rule of the migrate module (:func:`_migrate.is_irreversible`).

    One without a ``.down.sql`` in ``paths`` (the release's manifest) is; one with it is when its up
    file has the line ``-- stagehand: irreversible``. ``read`` gets the paths of the up files to
    look into and returns their contents (a file it cannot give counts as irreversible: the preview
    never says a migration can be undone on a guess).
    """
    prefix = migrations_dir.strip('/') + '/'
    have = set(paths)
    irreversible = [mid for mid in pending if prefix + mid + '.down.sql' not in have]
    to_read = [prefix + mid + '.up.sql' for mid in pending if mid not in irreversible]
    contents = read(to_read) if to_read else {}
    for mid in pending:
        if mid in irreversible:
            continue
        sql = contents.get(prefix + mid + '.up.sql')
        if sql is None or is_irreversible(sql, has_down=True):
            irreversible.append(mid)
    return [mid for mid in pending if mid in irreversible]


def read_from_artifact(artifact: str) -> t.Callable[[list[str]], dict[str, bytes]]:
    """A ``read`` for :func:`irreversible_migrations` that takes the files from a compose's ``.tar.gz`` (one pass)."""
    def read(paths: list[str]) -> dict[str, bytes]:
        wanted = set(paths)
        found: dict[str, bytes] = {}
        try:
            with tarfile.open(artifact, mode='r|gz') as tar:
                for member in tar:
                    if member.name in wanted and member.isfile():
                        handle = tar.extractfile(member)
                        if handle is not None:
                            found[member.name] = handle.read()
                        if len(found) == len(wanted):
                            break
        except (OSError, tarfile.TarError):
            pass  # what was not read counts as irreversible
        return found
    return read


def size_text(count: int) -> str:
    """``count`` bytes for a person: ``512 bytes``, ``2.1 kB``, ``26.3 MB``."""
    for unit in ('bytes', 'kB', 'MB', 'GB'):
        if count < 1000 or unit == 'GB':
            return ('%d %s' % (count, unit)) if unit == 'bytes' else ('%.1f %s' % (count, unit))
        count = count / 1000  # type: ignore[assignment]
    return '%d bytes' % count  # pragma: no cover (the loop always returns)


def plan(host: str, release: str, compose_id: str | None, mode: str, live: str | None, live_compose: t.Mapping[str, t.Any] | None,
         lock: t.Mapping[str, t.Any] | None, shipment: t.Mapping[str, t.Any] | None, pending: list[str] | None,
         pending_reason: str | None, failed_attempt: bool, inactive_slot: str | None,
         irreversible: t.Sequence[str] = (), allow_irreversible: bool = False) -> dict[str, t.Any]:
    """What the deploy of ``release`` (compose ``compose_id``) would do on ``host``; ``line`` says it in one sentence.

    ``shipment`` is what :func:`_delta.create` in check mode says the host lacks (None when the
    release is not composed yet: what it would get is known after the build). ``lock``: the lock
    file on the host, if any. ``failed_attempt``: an earlier failed attempt of the release is there
    (it would be removed first). ``inactive_slot``: in slots mode, the slot that would be patched.
    ``irreversible``: those of ``pending`` that cannot be undone (:func:`irreversible_migrations`);
    without ``allow_irreversible`` the deploy would refuse them in its migrate phase, and the
    preview says so instead of what it would switch.
    """
    preview: dict[str, t.Any] = {'host': host, 'release': release, 'compose_id': compose_id, 'mode': mode, 'live': live,
                                 'already_live': False, 'send': None, 'stage': None, 'migrations': pending,
                                 'migrations_note': pending_reason, 'irreversible': list(irreversible), 'refused': None,
                                 'switch': None, 'lock': None, 'changes': True}
    if lock:
        holder = dict(lock)
        preview['lock'] = holder
        who = ', '.join('%s %s' % (key, holder[key]) for key in ('owner', 'controller', 'purpose', 'expires') if holder.get(key))
        preview['line'] = ('%s: the deploy lock is held (%s): the deploy would take it over if its holder is proven dead, '
                           'else be refused; nothing else was worked out' % (host, who or 'no holder recorded'))
        return preview
    if compose_id is not None and live_compose == {'release': release, 'compose_id': compose_id}:
        preview.update(already_live=True, changes=False)
        preview['line'] = '%s: %s (%s) is already live: the deploy would change nothing' % (host, release, compose_id)
        return preview
    where = ('slot %s' % inactive_slot) if mode == 'slots' else 'releases/%s' % release
    preview['stage'] = where
    preview['switch'] = {'from': live, 'to': release}
    parts = []
    if shipment is None:
        parts.append('compose %s on the controller first (the store has no compose of it yet: what this host lacks is '
                     'known after that, see playbooks/build.yml)' % release)
    else:
        preview['send'] = {'files': shipment.get('files', 0), 'total_files': shipment.get('total_files', 0),
                           'bytes': shipment.get('bytes', 0), 'paths': list(shipment.get('paths') or [])}
        parts.append('send %d file(s) of %d (%s)' % (shipment.get('files', 0), shipment.get('total_files', 0),
                                                     size_text(int(shipment.get('bytes') or 0))))
    if failed_attempt:
        parts.append('remove the failed earlier attempt of %s' % release)
    parts.append(('patch %s to it in place' % where) if mode == 'slots' else ('stage %s (hardlinks for every unchanged file)' % where))
    if pending and irreversible and not allow_irreversible:
        preview.update(refused='the migration(s) %s cannot be undone (no .down.sql, or the line "%s"); the deploy would '
                               'apply them only with -e allow_irreversible=true' % (', '.join(irreversible), IRREVERSIBLE_MARK),
                       switch=None, changes=False)
        preview['line'] = ('%s: would be refused in phase migrate: %s. Nothing would change: %s stays live'
                           % (host, preview['refused'], live or 'nothing'))
        return preview
    if pending:
        marked = (' (%s irreversible)' % ', '.join(irreversible)) if irreversible else ''
        parts.append('apply the migration(s) %s%s (after a dump)' % (', '.join(pending), marked))
    elif pending is None and pending_reason:
        parts.append('check the migrations (%s)' % pending_reason)
    parts.append('switch current from %s to %s' % (live or 'nothing', release))
    preview['line'] = '%s: would %s' % (host, ', '.join(parts[:-1]) + ' and ' + parts[-1] if len(parts) > 1 else parts[0])
    return preview
