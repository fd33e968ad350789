# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The schema guard: may a release go live on the database as it is, and which dump would a restore use.

One rule for every path that makes a release live (the deploy's migrate phase, the fast
deploy of the ``ship`` module, ``switch`` in a rollback, the rollback with the database
checked):

* A release may go live when every **irreversible** migration applied to the database is
  known to it (its ``migrations/`` has the file). Reversible migrations it lacks stay applied
  (expand, then contract), as rollbacks always allowed. The live release itself is never
  refused: "going live" again only runs the health check.
* Otherwise it is refused before anything changes, unless a restore is asked for. The
  message names the release, the migrations it lacks, and the dump a restore would use, but
  only when that file exists.
* The dump a restore uses is the one taken right before the **oldest** irreversible migration
  the release lacks was applied. Each dump is recorded when it is taken, in
  ``<dumps dir>/index.json``, with the migrations applied at that moment (``before``) and those
  the same run then applied (``precedes``). When there are several (a migration applied again
  after a restore), the newest one is used. A missing record or file refuses the restore,
  and so does a dump that holds migrations the release does not know as irreversible, or
  (``pending_ok=False``, a rollback, which never applies migrations) that lacks migrations
  the release has.

Nothing here talks to the database or changes anything but the dump index.
"""

from __future__ import annotations

import os
import re
import typing as t

from ansible_collections.stagehand.deploy.plugins.module_utils._atomic import read_json, write_json_atomic

INDEX_NAME = 'index.json'
DUMPS_DIR = 'dumps'
_NUMBER_RE = re.compile(r'\A([0-9]+)')


def migration_order(mid: str) -> tuple[int, str]:
    """The order migrations apply in: the number ``NNNN`` of the id, then the id."""
    match = _NUMBER_RE.match(mid)
    return (int(match.group(1)) if match else -1, mid)


def dumps_path(state_dir: str) -> str:
    """``<root>/.stagehand/dumps``: where the migrate phase of a deploy writes its dumps and their index."""
    return os.path.join(state_dir, DUMPS_DIR)


def index_path(dumps_dir: str) -> str:
    """``<dumps_dir>/index.json``: one entry per dump file kept there."""
    return os.path.join(dumps_dir, INDEX_NAME)


def read_index(dumps_dir: str) -> tuple[list[dict[str, t.Any]], str | None]:
    """The entries of the dump index (``[]`` when there is none) and, when it cannot be used, why."""
    path = index_path(dumps_dir)
    try:
        data = read_json(path, {'dumps': []})
    except (OSError, ValueError) as exc:
        return [], 'the dump index %s cannot be read: %s' % (path, exc)
    entries = data.get('dumps') if isinstance(data, dict) else None
    if not isinstance(entries, list):
        return [], 'the dump index %s is not valid (no list "dumps")' % path
    good = []
    for entry in entries:
        if isinstance(entry, dict) and isinstance(entry.get('file'), str) and '/' not in entry['file'] \
                and isinstance(entry.get('before'), list) and isinstance(entry.get('precedes'), list):
            good.append(entry)
    return good, None


def record_dump(dump: str, database: str, release: str | None, before: t.Iterable[str], precedes: t.Iterable[str],
                taken_at: str) -> dict[str, t.Any]:
    """Record the dump file ``dump`` in the index of its directory, atomically; return the entry.

    ``before``: the migrations applied when it was taken; ``precedes``: those the run applied
    after it, in order. An entry for the same file (a dump replaced) is replaced.
    """
    directory = os.path.dirname(os.path.abspath(dump))
    entries, _problem = read_index(directory)  # an unreadable index is rewritten with this dump only
    entry = {'file': os.path.basename(dump), 'database': database, 'release': release,
             'before': sorted(set(before), key=migration_order), 'precedes': list(precedes), 'taken_at': taken_at}
    kept = [e for e in entries if e.get('file') != entry['file']]
    kept.append(entry)
    write_json_atomic(index_path(directory), {'dumps': kept}, 0o600)
    return entry


def choose_dump(dumps_dir: str | None, database: str | None, migration: str) -> dict[str, t.Any]:
    """The dump taken right before ``migration`` was applied: ``{path, entry, exists, problem}``.

    ``path`` is None when no dump is recorded before it; ``exists`` says whether the file is there.
    """
    found: dict[str, t.Any] = {'path': None, 'entry': None, 'exists': False, 'problem': None}
    if not dumps_dir:
        found['problem'] = 'no dump directory is known here'
        return found
    entries, problem = read_index(dumps_dir)
    if problem:
        found['problem'] = problem
        return found
    matches = [e for e in entries if migration in e['precedes'] and (database is None or e.get('database') in (None, database))]
    if not matches:
        found['problem'] = 'no dump was recorded in %s right before %s was applied' % (index_path(dumps_dir), migration)
        return found
    entry = max(matches, key=lambda e: str(e.get('taken_at') or ''))
    path = os.path.join(dumps_dir, entry['file'])
    found.update(path=path, entry=entry, exists=os.path.isfile(path))
    if not found['exists']:
        found['problem'] = 'the dump recorded right before %s was applied is no longer in %s' % (migration, dumps_dir)
    return found


def assess(
    release: str,
    known: t.Iterable[str],
    applied: t.Mapping[str, bool | None],
    live: str | None = None,
    dumps_dir: str | None = None,
    database: str | None = None,
    restore: bool = False,
    pending_ok: bool = True,
) -> dict[str, t.Any]:
    """May ``release`` (whose migrations are ``known``) go live on a database holding ``applied``?

    ``applied`` maps each applied migration id to whether it is irreversible (None: not known
    here, which makes the answer ``undecided``). Returns::

        release, live (the release is the live one), lacking (applied, not known, in order),
        irreversible (those of lacking that are irreversible), undecided, allowed,
        restore (a restore is needed and possible: use dump), dump (its path, only when the
        file exists), dump_entry, dump_problem, pending_after_restore, msg (why refused)
    """
    known_ids = set(known)
    lacking = sorted((mid for mid in applied if mid not in known_ids), key=migration_order)
    result: dict[str, t.Any] = {
        'release': release, 'live': live is not None and release == live, 'lacking': lacking,
        'irreversible': [mid for mid in lacking if applied[mid]],
        'undecided': [mid for mid in lacking if applied[mid] is None],
        'allowed': True, 'restore': False, 'dump': None, 'dump_entry': None, 'dump_problem': None,
        'pending_after_restore': [], 'msg': None,
    }
    if result['live']:
        return result
    if result['undecided']:  # never allowed on a guess: the caller asks the database instead
        result['allowed'] = False
        result['msg'] = ('whether %s, applied to the database and not in %s, are irreversible is not known here: check the '
                         'database. Nothing was changed' % (', '.join(result['undecided']), release))
        return result
    if not result['irreversible']:
        return result
    result['allowed'] = False
    oldest = result['irreversible'][0]
    chosen = choose_dump(dumps_dir, database, oldest)
    problem = chosen['problem']
    if chosen['exists']:
        before = set(chosen['entry']['before'])
        still = [mid for mid in before if mid not in known_ids and applied.get(mid) is not False]
        pending = sorted((mid for mid in known_ids if mid not in before), key=migration_order)
        if still:
            problem = 'the dump taken right before %s (%s) already holds %s, which %s does not know either' % (
                oldest, chosen['path'], ', '.join(sorted(still, key=migration_order)), release)
        elif pending and not pending_ok:
            problem = ('the dump taken right before %s (%s) was taken before %s too, which %s needs and a rollback '
                       'does not apply: deploy %s with restore_db=true instead' % (
                           oldest, chosen['path'], ', '.join(pending), release, release))
        else:
            result.update(dump=chosen['path'], dump_entry=chosen['entry'], pending_after_restore=pending)
    result['dump_problem'] = problem
    lacks = ('%s does not have the irreversible migrations %s that the database holds, so it cannot go live on this '
             'schema' % (release, ', '.join(result['irreversible'])))
    if result['dump']:
        entry = result['dump_entry']
        how = ('a restore (restore_db=true) would restore %s, the dump taken right before %s was applied (%s, by the '
               'deploy of %s); everything written to the database since then is lost'
               % (result['dump'], oldest, entry.get('taken_at') or 'time unknown', entry.get('release') or 'unknown'))
        if restore:
            result['restore'] = True
            return result
        result['msg'] = '%s. Nothing was changed: %s' % (lacks, how)
    elif restore:
        result['msg'] = '%s, and the database cannot be restored: %s. Nothing was changed' % (lacks, problem)
    else:
        result['msg'] = '%s. Nothing was changed. No restore is possible: %s' % (lacks, problem)
    return result
