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

import typing as t

from ansible_collections.stagehand.deploy.plugins.module_utils._migrate import MIGRATION_RE


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


def _size(count: int) -> str:
    for unit in ('bytes', 'kB', 'MB', 'GB'):
        if count < 1000 or unit == 'GB':
            return ('%d %s' % (count, unit)) if unit == 'bytes' else ('%.1f %s' % (count, unit))
        count = count / 1000  # type: ignore[assignment]
    return '%d bytes' % count  # pragma: no cover (the loop always returns)


def plan(host: str, release: str, compose_id: str | None, mode: str, live: str | None, live_compose: t.Mapping[str, t.Any] | None,
         lock: t.Mapping[str, t.Any] | None, shipment: t.Mapping[str, t.Any] | None, pending: list[str] | None,
         pending_reason: str | None, failed_attempt: bool, inactive_slot: str | None) -> dict[str, t.Any]:
    """What the deploy of ``release`` (compose ``compose_id``) would do on ``host``; ``line`` says it in one sentence.

    ``shipment`` is what :func:`_delta.create` in check mode says the host lacks (None when the
    release is not composed yet: what it would get is known after the build). ``lock``: the lock
    file on the host, if any. ``failed_attempt``: an earlier failed attempt of the release is there
    (it would be removed first). ``inactive_slot``: in slots mode, the slot that would be patched.
    """
    preview: dict[str, t.Any] = {'host': host, 'release': release, 'compose_id': compose_id, 'mode': mode, 'live': live,
                                 'already_live': False, 'send': None, 'stage': None, 'migrations': pending,
                                 'migrations_note': pending_reason, 'switch': None, 'lock': None, 'changes': True}
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
                                                     _size(int(shipment.get('bytes') or 0))))
    if failed_attempt:
        parts.append('remove the failed earlier attempt of %s' % release)
    parts.append(('patch %s to it in place' % where) if mode == 'slots' else ('stage %s (hardlinks for every unchanged file)' % where))
    if pending:
        parts.append('apply the migration(s) %s (after a dump)' % ', '.join(pending))
    elif pending is None and pending_reason:
        parts.append('check the migrations (%s)' % pending_reason)
    parts.append('switch current from %s to %s' % (live or 'nothing', release))
    preview['line'] = '%s: would %s' % (host, ', '.join(parts[:-1]) + ' and ' + parts[-1] if len(parts) > 1 else parts[0])
    return preview
