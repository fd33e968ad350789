# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Host side of ``stagehand.deploy.ship``: a whole deploy of one host in one module run.

Order, under the deploy lock (taken first; held by someone else: refused, nothing done):

1. check  -- the manifest of the compose is rebuilt from what was uploaded (or the host's own
   copy) and must have the compose id as digest (:func:`_delta.rebuild`); with allowed signers
   its signature is verified (:func:`_signing.verify`); php-fpm must meet the platform
   requirements (:func:`_platform.check_host`). Any refusal here stages nothing.
2. stage  -- the shared directories and ``shared/.env`` are made ready, an earlier failed
   attempt of the release (never the live one) is removed, and the release is assembled from the
   uploaded files and hardlinks to the releases already there (:func:`_release.ensure_release`,
   partial), verified against the manifest and renamed into ``releases/``. Nothing live changes.
3. migrations -- with ``migrations``, the release's migrations must all be in the record of what
   the database holds (``.stagehand/migrations.json``); when some are pending (or the record
   cannot say), the run stops here with ``needs_migrate`` and the caller migrates and switches
   the usual way. The release stays staged.
4. switch -- with ``switch``, :func:`_switch.switch_guarded` (no second lock): rename of
   ``current``, post commands, health check, switching straight back when they fail, which then
   marks the release failed. The history line is appended there; a run that stops earlier
   appends its own (outcome ``refused`` or ``failed``).

The lock is released whatever happens.
"""

from __future__ import annotations

import datetime
import os
import time
import typing as t

from ansible_collections.stagehand.deploy.plugins.module_utils import (
    _delta,
    _history,
    _lock,
    _migrate,
    _platform,
    _release,
    _signing,
    _switch,
)
from ansible_collections.stagehand.deploy.plugins.module_utils._atomic import fsync_dir, read_json, write_bytes_atomic
from ansible_collections.stagehand.deploy.plugins.module_utils._names import InvalidName, account_id, check_release_name
from ansible_collections.stagehand.deploy.plugins.module_utils._state import STATUS_FAILED, DeployRoot, format_utc

# failed_phase names; the history line times the same steps as the deploy role's phases do
# (lock, stage -- the checks included --, migrate, then the switch's own switch and health)
PHASE_LOCK = 'lock'
PHASE_CHECK = 'verify'
PHASE_STAGE = 'stage'
PHASE_MIGRATIONS = 'migrate'
PHASE_SWITCH = 'switch'
HISTORY_PHASE = {PHASE_LOCK: PHASE_LOCK, PHASE_CHECK: PHASE_STAGE, PHASE_STAGE: PHASE_STAGE, PHASE_MIGRATIONS: PHASE_MIGRATIONS,
                 PHASE_SWITCH: PHASE_SWITCH}


def _timed(phases: dict[str, float], phase: str, seconds: float) -> None:
    key = HISTORY_PHASE[phase]
    phases[key] = round(phases.get(key, 0.0) + seconds, 3)


class ShipError(Exception):
    """A refusal or failure; ``result`` is what the module returns with it."""

    def __init__(self, msg: str, result: dict[str, t.Any] | None = None) -> None:
        super().__init__(msg)
        self.msg = msg
        self.result = result or {}


def check_args(params: t.Mapping[str, t.Any]) -> None:
    """Refuse bad arguments before anything is read or written on the host."""
    try:
        check_release_name(params.get('release'))
    except InvalidName as exc:
        raise ShipError(str(exc)) from None
    try:
        _delta.compose_hex(params.get('compose_id'))
    except _delta.DeltaError as exc:
        raise ShipError(exc.msg) from None
    for name in params.get('shared_dirs') or []:
        if not isinstance(name, str) or not name or name.startswith('/') or '..' in name.split('/'):
            raise ShipError('shared_dirs entry %r is not a relative path inside shared/ (no "..", not absolute)' % (name,))
    env = params.get('env_file')
    if env is not None and not isinstance(env.get('content'), str):
        raise ShipError('env_file needs content, the text of shared/.env')
    migrations = params.get('migrations')
    if migrations is not None:
        _switch.check_migrations_dir(migrations.get('dir'))
    switch = params.get('switch')
    if switch is not None:
        _switch.check_post_commands(switch.get('post_commands') or [])
        _switch.check_health_args(switch.get('health_url'), switch.get('health_release_header') or _switch.DEFAULT_RELEASE_HEADER,
                                  switch.get('health_timeout') if switch.get('health_timeout') is not None else _switch.DEFAULT_HEALTH_TIMEOUT)


def _ensure_dir(path: str, uid: int, gid: int, mode: int) -> bool:
    """Make ``path`` a directory with this owner and mode; True when anything changed."""
    changed = False
    if not os.path.isdir(path):
        if os.path.lexists(path):
            raise ShipError('%s exists but is not a directory' % path)
        os.mkdir(path, mode)
        fsync_dir(os.path.dirname(path))
        changed = True
    st = os.stat(path)
    if (st.st_uid, st.st_gid) != (uid, gid):
        os.chown(path, uid, gid)
        changed = True
    if st.st_mode & 0o7777 != mode:
        os.chmod(path, mode)
        changed = True
    return changed


def prepare_shared(droot: DeployRoot, params: t.Mapping[str, t.Any]) -> bool:
    """``shared/`` (owner/group), each of ``shared_dirs`` (the app user, 0775) and ``shared/.env``; True when changed."""
    dirs = params.get('shared_dirs') or []
    env = params.get('env_file')
    if not dirs and env is None:
        return False
    uid, gid = account_id(params.get('owner') or 0), account_id(params.get('group') or 0, group=True)
    changed = _ensure_dir(droot.shared_dir, uid, gid, 0o755)
    app_uid = account_id(params.get('app_user') or uid)
    app_gid = account_id(params.get('app_group') or gid, group=True)
    for name in dirs:
        parts = name.strip('/').split('/')
        for depth in range(1, len(parts) + 1):
            changed |= _ensure_dir(os.path.join(droot.shared_dir, *parts[:depth]), app_uid, app_gid, 0o775)
    if env is not None:
        path = os.path.join(droot.shared_dir, '.env')
        data = env['content'].encode('utf-8')
        env_gid = account_id(env.get('group') or app_gid, group=True)
        mode = int(str(env.get('mode') or '0640'), 8)
        try:
            st: os.stat_result | None = os.stat(path)
            with open(path, 'rb') as handle:
                same = handle.read() == data
        except FileNotFoundError:
            st, same = None, False
        if not same or st is None or (st.st_uid, st.st_gid, st.st_mode & 0o7777) != (uid, env_gid, mode):
            write_bytes_atomic(path, data, mode)
            os.chown(path, uid, env_gid)
            changed = True
    return changed


def pending_migrations(droot: DeployRoot, release: str, migrations_dir: str, database: str | None) -> tuple[list[str], str | None]:
    """The migrations of ``release`` the record says the database lacks, or ``([], reason)`` when the record cannot say."""
    path = _switch.migrations_record_path(droot)
    try:
        record = read_json(path)
    except (OSError, ValueError) as exc:
        return [], 'the migrations record %s cannot be read: %s' % (path, exc)
    if not isinstance(record, dict) or not isinstance(record.get('applied'), list):
        return [], 'there is no usable migrations record %s' % path
    if database is not None and record.get('database') != database:
        return [], 'the migrations record %s is about database %r, not %r' % (path, record.get('database'), database)
    try:
        ids = [m.id for m in _migrate.scan_migrations(os.path.join(droot.release_path(release), migrations_dir))]
    except (_migrate.MigrateError, OSError) as exc:
        return [], 'the migrations of %s cannot be read: %s' % (release, getattr(exc, 'msg', exc))
    applied = set(record['applied'])
    return [mid for mid in ids if mid not in applied], None


def _history_line(root: str, params: t.Mapping[str, t.Any], moment: datetime.datetime, outcome: str, error: str,
                  previous: str | None, phases: dict[str, float]) -> dict[str, t.Any] | None:
    history = params.get('history')
    if history is None:
        return None
    entry = dict(history)
    entry.update({'start': entry.get('start') or format_utc(moment), 'release': params['release'], 'previous': previous,
                  'outcome': outcome, 'error': error, 'phases': dict(history.get('phases') or {}, **phases)})
    try:
        return _history.append_record(root, entry)['record']
    except (_history.HistoryError, OSError):
        return None


def run(params: t.Mapping[str, t.Any], run_command: t.Callable[[list[str]], tuple[int, str, str]] | None = None,
        clock: t.Callable[[], float] = time.monotonic) -> dict[str, t.Any]:
    """Check, stage, and (with ``switch``) switch; see the module docstring. Raises :class:`ShipError`.

    ``run_command(argv) -> (rc, stdout, stderr)`` runs the post commands (the module's run_command).
    """
    check_args(params)
    root = params['root']
    name = params['release']
    droot = DeployRoot(root)
    moment = datetime.datetime.now(datetime.timezone.utc)
    if not os.path.isdir(root):
        raise ShipError('the deploy root %s does not exist on this host: provision it first' % root)
    result: dict[str, t.Any] = {'changed': False, 'release': name, 'compose_id': params['compose_id'], 'staged': None,
                                'switched': False, 'needs_migrate': False, 'needs_phases': False, 'pending_migrations': [], 'previous': None,
                                'current': None, 'health': None, 'history': None, 'phases': {}, 'failed_phase': None,
                                'signature': None, 'platform': None, 'manifest': None, 'warnings': []}
    lock_args = params.get('lock')
    token = None
    if lock_args is not None:
        started = clock()
        try:
            got = _lock.acquire(root, **{k: v for k, v in lock_args.items() if v is not None})
        except _lock.LockHeld as exc:
            refused = dict(result, failed_phase=PHASE_LOCK, lock={'holder': exc.holder})
            _timed(refused['phases'], PHASE_LOCK, clock() - started)
            refused['history'] = _history_line(root, params, moment, 'refused', exc.msg, droot.live_release(), refused['phases'])
            raise ShipError(exc.msg, refused) from None
        except _lock.LockError as exc:
            raise ShipError(exc.msg, dict(result, failed_phase=PHASE_LOCK)) from None
        token = got['token']
        _timed(result['phases'], PHASE_LOCK, clock() - started)
        result['warnings'].extend(got['warnings'])
    phase, started = PHASE_CHECK, clock()
    live = droot.live_release()
    result['previous'] = result['current'] = live
    outcome = 'refused'
    try:
        upload = params.get('upload') or {}
        rebuilt = _delta.rebuild(root, params['compose_id'], upload['manifest'], upload.get('manifest_delta'))
        result['manifest'] = rebuilt['path']
        result['changed'] |= bool(rebuilt['pruned'])
        if params.get('allowed_signers'):
            result['signature'] = _signing.verify(rebuilt['path'], rebuilt['signature'], params['allowed_signers'],
                                                  params.get('identity') or '')
        platform = params.get('platform')
        if platform is not None and (platform.get('php') or platform.get('extensions')):
            checked = _platform.check_host(platform.get('binary') or 'php-fpm', platform.get('php') or [], platform.get('extensions') or [])
            result['platform'] = checked
            if checked['missing']:
                raise ShipError(_platform.message(platform.get('binary') or 'php-fpm', checked) + ' Nothing was staged.')
        _timed(result['phases'], phase, clock() - started)

        phase, started, outcome = PHASE_STAGE, clock(), 'failed'
        result['changed'] |= prepare_shared(droot, params)
        meta = droot.read_meta(name) if os.path.isdir(droot.release_path(name)) else None
        if meta is not None and meta.get('status') == STATUS_FAILED and live != name:
            _release.remove_release(root, name)
            result['changed'] = True
        staged = _release.ensure_release(root, name, upload.get('archive'), shared=params.get('shared') or [],
                                         manifest_path=rebuilt['path'], owner=params.get('owner'), group=params.get('group'),
                                         partial=True)
        staged.pop('diff', None)
        result['staged'] = staged
        result['changed'] |= staged['changed']
        if staged['status'] != 'complete':
            raise ShipError('release %s is %s on this host, not complete: deploy it under a new release name, or remove it first'
                            % (name, staged['status']))
        _timed(result['phases'], phase, clock() - started)

        migrations = params.get('migrations')
        if migrations is not None:
            phase, started = PHASE_MIGRATIONS, clock()
            pending, reason = pending_migrations(droot, name, migrations['dir'], migrations.get('database'))
            _timed(result['phases'], phase, clock() - started)
            if pending or reason:
                result.update(needs_migrate=True, pending_migrations=pending, needs_migrate_reason=reason or
                              'migrations to apply: %s' % ', '.join(pending))
                return result

        switch = params.get('switch')
        if switch is None:
            return result
        phase = PHASE_SWITCH
        history = params.get('history')
        if history is not None:
            history = dict(history, phases=dict(history.get('phases') or {}, **result['phases']))
        try:
            switched = _switch.switch_guarded(
                root, history=history, now=moment, mode='releases', release=name,
                post_commands=_switch.check_post_commands(switch.get('post_commands') or []),
                health_url=switch.get('health_url'),
                health_release_header=switch.get('health_release_header') or _switch.DEFAULT_RELEASE_HEADER,
                health_timeout=switch.get('health_timeout') if switch.get('health_timeout') is not None else _switch.DEFAULT_HEALTH_TIMEOUT,
                revert_on_failure=True, run_command=run_command)
        except _switch.GuardedFailure as exc:
            failed = exc.result
            result.update(switched=False, current=failed.get('current', live), health=failed.get('health'), history=failed.get('history'),
                          failed_phase=PHASE_SWITCH, changed=True)
            if failed.get('reverted') or failed.get('current') == name:  # it went live: never again by accident
                try:
                    _release.mark_failed(root, name, reason='%s: %s' % (PHASE_SWITCH, exc.msg[:900]))
                except _release.ReleaseError:
                    pass
            raise ShipError(exc.msg, result) from None
        result.update(switched=switched.get('previous') != switched.get('current'), current=switched.get('current'),
                      previous=switched.get('previous'), health=switched.get('health'), history=switched.get('history'),
                      post_commands=switched.get('post_commands'))
        result['changed'] = True
        result['warnings'].extend(switched.get('warnings') or [])
        return result
    except ShipError as exc:
        if exc.result:
            raise
        _timed(result['phases'], phase, clock() - started)
        result.update(failed_phase=phase, history=_history_line(root, params, moment, outcome, exc.msg, live, result['phases']))
        raise ShipError(exc.msg, result) from None
    except (_delta.DeltaError, _release.ReleaseError, _signing.SignatureError, _platform.PlatformError) as exc:
        msg = getattr(exc, 'msg', None) or str(exc)
        if phase == PHASE_CHECK or isinstance(exc, _signing.SignatureError):
            msg = msg.rstrip('.') + '. Nothing was staged.'
        _timed(result['phases'], phase, clock() - started)
        result.update(failed_phase=phase, history=_history_line(root, params, moment, outcome, msg, live, result['phases']))
        raise ShipError(msg, result) from None
    except (OSError, ValueError) as exc:
        msg = 'could not %s release %s in %s: %s' % (phase, name, root, exc)
        result.update(failed_phase=phase, history=_history_line(root, params, moment, 'failed', msg, live, result['phases']))
        raise ShipError(msg, result) from None
    finally:
        if token is not None:
            try:
                released = _lock.release(root, token=token)
                result['warnings'].extend(released['warnings'])
            except OSError as exc:
                result['warnings'].append('the deploy lock %s could not be released: %s' % (droot.lock_path, exc))
