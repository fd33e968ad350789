# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Host side of ``stagehand.deploy.ship``: a whole deploy of one host in one module run.

Order, under the deploy lock (taken first; held by someone else: refused, nothing done):

1. check  -- the manifest of the compose is rebuilt from what was uploaded (or the host's own
   copy) and must have the compose id as digest (:func:`_delta.rebuild`); with allowed signers
   its signature is verified (:func:`_signing.verify`); php-fpm must meet the platform
   requirements (:func:`_platform.check_host`). Any refusal here stages nothing.
2. stage  -- the shared directories and ``shared/.env`` are made ready. Mode ``releases``: an
   earlier failed attempt of the release (never the live one) is removed, and the release is
   assembled from the uploaded files and hardlinks to the releases already there
   (:func:`_release.ensure_release`, partial), verified against the manifest and renamed into
   ``releases/``. Mode ``slots``: the inactive slot is patched in place to the manifest as one
   transaction (:func:`_slot_patch.patch_slot`, content from the upload or either slot). Nothing
   live changes.
3. migrations -- with ``migrations``, the release's migrations must all be in the record of what
   the database holds (``.stagehand/migrations.json``); when some are pending (or the record
   cannot say), the run stops here with ``needs_migrate`` and the caller migrates and switches
   the usual way. The release (or slot) stays staged.
4. preview -- with ``switch`` (its health URL) and ``preview_check`` (a port): in slots mode and with
   ``opcache``, php-fpm's opcache is first invalidated for the patched slot
   (:func:`_opcache.invalidate`); then the staged release answers the health request through
   nginx's loopback preview server (:func:`_preview_health.check_staged`) before anyone sees it.
   When it does not, nothing goes live: a release this run staged is removed (as the deploy role's
   undo does), one that was there before and a slot are marked failed.
5. switch -- with ``switch``:
   :func:`_switch.switch_guarded` (no second lock): rename of ``current``, post commands, health
   check, switching straight back when they fail, which then marks the release failed. The
   history line is appended there; a run that stops earlier appends its own (outcome
   ``refused`` or ``failed``). In slots mode a run that fails after patching the slot marks the
   slot failed, as the deploy role's undo phase does, so that a rollback never flips to it.

The lock is released whatever happens.
"""

from __future__ import annotations

import datetime
import os
import time
import typing as t

# Only what every run needs is imported here. The module runs from the AnsiballZ zip, where each
# module_util is compiled from source on import: the utilities of optional steps (signatures,
# the platform check, migrations, slots, opcache) are imported by the step that uses them.
from ansible_collections.stagehand.deploy.plugins.module_utils import (
    _delta,
    _history,
    _lock,
    _release,
    _switch,
)
from ansible_collections.stagehand.deploy.plugins.module_utils._crash import crash_point
from ansible_collections.stagehand.deploy.plugins.module_utils._atomic import fsync_dir, read_json, write_bytes_atomic
from ansible_collections.stagehand.deploy.plugins.module_utils._manifest import TYPE_FILE, load_manifest, with_shared
from ansible_collections.stagehand.deploy.plugins.module_utils._names import InvalidName, account_id, check_release_name
from ansible_collections.stagehand.deploy.plugins.module_utils._state import (
    MODE_RELEASES,
    MODE_SLOTS,
    SLOT_NAMES,
    STATUS_FAILED,
    DeployRoot,
    format_utc,
)

# failed_phase names; the history line times the same steps as the deploy role's phases do
# (lock, stage -- the checks included --, migrate, then the switch's own switch and health)
PHASE_LOCK = 'lock'
PHASE_CHECK = 'verify'
PHASE_STAGE = 'stage'
PHASE_MIGRATIONS = 'migrate'
PHASE_PREVIEW = 'preview'
PHASE_SWITCH = 'switch'
HISTORY_PHASE = {PHASE_LOCK: PHASE_LOCK, PHASE_CHECK: PHASE_STAGE, PHASE_STAGE: PHASE_STAGE, PHASE_MIGRATIONS: PHASE_MIGRATIONS,
                 PHASE_PREVIEW: PHASE_PREVIEW, PHASE_SWITCH: PHASE_SWITCH}


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
    mode = params.get('mode') or MODE_RELEASES
    if mode not in (MODE_RELEASES, MODE_SLOTS):
        raise ShipError('mode %r is invalid: use releases or slots' % (mode,))
    opcache = params.get('opcache')
    if opcache is not None and not (isinstance(opcache.get('socket'), str) and os.path.isabs(opcache['socket'])):
        raise ShipError('opcache needs socket, the absolute path of the php-fpm pool\'s socket; got %r' % (opcache.get('socket'),))
    for name in params.get('shared_dirs') or []:
        if not isinstance(name, str) or not name or name.startswith('/') or '..' in name.split('/'):
            raise ShipError('shared_dirs entry %r is not a relative path inside shared/ (no "..", not absolute)' % (name,))
    env = params.get('env_file')
    if env is not None and not isinstance(env.get('content'), str):
        raise ShipError('env_file needs content, the text of shared/.env')
    try:
        migrations = params.get('migrations')
        if migrations is not None:
            _switch.check_migrations_dir(migrations.get('dir'))
        preview = params.get('preview_check')
        if preview is not None:
            from ansible_collections.stagehand.deploy.plugins.module_utils import _preview_health  # pylint: disable=import-outside-toplevel
            _preview_health.check_port(preview.get('port'))
            if preview.get('timeout') is not None:
                _switch.check_seconds('preview_check.timeout', preview['timeout'])
        switch = params.get('switch')
        if switch is not None:
            _switch.check_post_commands(switch.get('post_commands') or [])
            _switch.check_health_args(switch.get('health_url'), switch.get('health_release_header') or _switch.DEFAULT_RELEASE_HEADER,
                                      switch.get('health_timeout') if switch.get('health_timeout') is not None else _switch.DEFAULT_HEALTH_TIMEOUT)
    except _switch.SwitchError as exc:
        raise ShipError(getattr(exc, 'msg', None) or str(exc)) from None


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


def pending_migrations(droot: DeployRoot, tree: str, label: str, migrations_dir: str,
                       database: str | None, live: str | None = None, slot: str | None = None) -> tuple[list[str], str | None]:
    """The migrations of the release at ``tree`` (named ``label``) the record says the database lacks.

    ``live``: the live release (mode releases) or slot (mode slots, with ``slot`` the slot of ``tree``).

    ``([], reason)`` when the record cannot say, or when the database holds migrations the release
    does not have and the schema guard (:func:`_schema.assess`, from the record and the releases on
    this host) does not let it go live, or cannot decide: the caller then goes through the migrate
    phase, which checks the database itself. Never a switch without the guard.
    """
    # pylint: disable-next=import-outside-toplevel
    from ansible_collections.stagehand.deploy.plugins.module_utils import _migrate, _schema

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
        ids = [m.id for m in _migrate.scan_migrations(os.path.join(tree, migrations_dir))]
    except (_migrate.MigrateError, OSError) as exc:
        return [], 'the migrations of %s cannot be read: %s' % (label, getattr(exc, 'msg', exc))
    applied = set(record['applied'])
    pending = [mid for mid in ids if mid not in applied]
    lacking = sorted(applied - set(ids), key=_schema.migration_order)
    if lacking and not pending:
        # the schema guard (issue 11): a release that lacks migrations the database holds goes live only when
        # it knows every irreversible one; decided from the record here, else by the migrate phase on the database
        if slot is None and label == live and label is not None:
            return [], None
        if slot is not None:  # the two slots are the releases of the host
            trees = dict((name, droot.slot_path(name)) for name in SLOT_NAMES)
            checked = _switch.check_migrations_on_disk(droot, slot, live, migrations_dir, database, trees=trees, label=label)
        else:
            checked = _switch.check_migrations_on_disk(droot, label, live, migrations_dir, database)
        if checked['needs_db_check'] or not checked['guard']['allowed']:
            why = checked['guard']['msg'] if checked['guard'] else checked['needs_db_check']
            return [], ('the database has migrations that %s does not have (%s): %s. The migrate phase decides on the '
                        'database itself' % (label, ', '.join(lacking), why))
    return pending, None


def live_label(droot: DeployRoot, mode: str) -> str | None:
    """What is live in ``mode``, as the history names it (:meth:`DeployRoot.label`); None when nothing of that mode is."""
    kind, name = droot.live()
    return droot.label(kind, name) if kind == mode else None


def stage_release(droot: DeployRoot, name: str, live: str | None, manifest: str, params: t.Mapping[str, t.Any]) -> dict[str, t.Any]:
    """``releases/<name>`` from the upload and hardlinks (an earlier failed attempt removed first); the release module's result."""
    meta = droot.read_meta(name) if os.path.isdir(droot.release_path(name)) else None
    removed = False
    if meta is not None and meta.get('status') == STATUS_FAILED and live != name:
        _release.remove_release(droot.root, name)
        removed = True
    staged = _release.ensure_release(droot.root, name, (params.get('upload') or {}).get('archive'), shared=params.get('shared') or [],
                                     manifest_path=manifest, owner=params.get('owner'), group=params.get('group'), partial=True,
                                     space_needed=(params.get('upload') or {}).get('bytes'))
    staged.pop('diff', None)
    staged['changed'] = staged['changed'] or removed
    if staged['status'] != 'complete':
        raise ShipError('release %s is %s on this host, not complete: deploy it under a new release name, or remove it first'
                        % (name, staged['status']))
    return staged


def _slot_is_empty(droot: DeployRoot, slot: str) -> bool:
    """Whether ``slot`` holds nothing to patch: no directory (or an empty one) and no patch journal of it."""
    from ansible_collections.stagehand.deploy.plugins.module_utils._slot_patch import workdir_path  # pylint: disable=import-outside-toplevel

    path = droot.slot_path(slot)
    if os.path.lexists(workdir_path(droot, slot)):
        return False  # an interrupted patch: patch_slot recovers it first
    if not os.path.lexists(path):
        return True
    return os.path.isdir(path) and not os.path.islink(path) and not os.listdir(path)


def stage_slot(droot: DeployRoot, name: str, manifest: str, params: t.Mapping[str, t.Any]) -> dict[str, t.Any]:
    """The inactive slot brought to the release; the result of the patch (or release) module for it.

    A slot that holds content is patched in place as one transaction (:func:`_slot_patch.patch_slot`:
    new content from the upload, else by sha256 from either slot). An empty slot has nothing to
    patch: it is built aside from the upload and hardlinks to the content already on the host, then
    renamed into place (:func:`_release.populate_slot`), as a release is. The live slot is never touched.
    """
    from ansible_collections.stagehand.deploy.plugins.module_utils import _slot_patch  # pylint: disable=import-outside-toplevel
    from ansible_collections.stagehand.deploy.plugins.module_utils._patch import PatchError  # pylint: disable=import-outside-toplevel

    archive = (params.get('upload') or {}).get('archive')
    slot = _release.resolve_slot(droot, 'inactive')
    if _slot_is_empty(droot, slot):
        filled = _release.populate_slot(droot.root, slot, archive, label=name, shared=params.get('shared') or [],
                                        manifest_path=manifest, owner=params.get('owner'), group=params.get('group'), partial=True,
                                        space_needed=(params.get('upload') or {}).get('bytes'))
        filled.pop('diff', None)
        # every file is new to the slot: all are invalidated (a pool restricting opcache's status API
        # cannot list what it caches below the slot)
        tree = with_shared(load_manifest(manifest), params.get('shared') or [], _release.RELEASE_DEPTH)
        files = [entry['path'] for entry in tree if entry['type'] == TYPE_FILE]
        filled.update(filled_empty=True, changed_files=files)
        return filled
    sources = ([archive] if archive else []) + [droot.slot_path(other) for other in SLOT_NAMES]
    try:
        patched = _slot_patch.patch_slot(droot.root, slot, manifest, sources=sources, shared=params.get('shared') or [],
                                         label=name, owner=params.get('owner'), group=params.get('group'))
    except PatchError as exc:
        raise ShipError(exc.msg, {'staged': exc.result or None}) from None
    patched.pop('diff', None)
    patched['filled_empty'] = False
    return patched


def check_compose(rebuilt: t.Mapping[str, t.Any], params: t.Mapping[str, t.Any], result: dict[str, t.Any]) -> None:
    """The signature (with ``allowed_signers``) and the platform (with ``platform``) of the rebuilt manifest; ShipError when refused."""
    # pylint: disable=import-outside-toplevel
    if params.get('allowed_signers'):
        from ansible_collections.stagehand.deploy.plugins.module_utils import _signing
        try:
            result['signature'] = _signing.verify(rebuilt['path'], rebuilt['signature'], params['allowed_signers'],
                                                  params.get('identity') or '')
        except _signing.SignatureError as exc:
            raise ShipError((getattr(exc, 'msg', None) or str(exc)).rstrip('.') + '. Nothing was staged.') from None
    platform = params.get('platform')
    if platform is not None and (platform.get('php') or platform.get('extensions')):
        from ansible_collections.stagehand.deploy.plugins.module_utils import _platform
        binary = platform.get('binary') or 'php-fpm'
        try:
            checked = _platform.check_host(binary, platform.get('php') or [], platform.get('extensions') or [])
        except _platform.PlatformError as exc:
            raise ShipError((getattr(exc, 'msg', None) or str(exc)).rstrip('.') + '. Nothing was staged.') from None
        result['platform'] = checked
        if checked['missing']:
            raise ShipError(_platform.message(binary, checked) + ' Nothing was staged.')


def invalidate_opcache(root: str, slot: str, tree: str, files: list[str], opcache: t.Mapping[str, t.Any]) -> dict[str, t.Any]:
    """php-fpm's opcache invalidated below the slot ``tree`` (and for ``files``) before the flip; ShipError when it cannot be."""
    from ansible_collections.stagehand.deploy.plugins.module_utils import _opcache  # pylint: disable=import-outside-toplevel

    try:
        return _opcache.invalidate(root, opcache['socket'], files=files, prefix=tree, timeout=opcache.get('timeout') or _opcache.DEFAULT_TIMEOUT)
    except _opcache.OpcacheError as exc:
        raise ShipError('could not invalidate php-fpm\'s opcache for slot %s before the flip, so nothing went live: %s'
                        % (slot, exc.msg)) from None


def check_preview(droot: DeployRoot, mode: str, name: str, target: str, live: str | None,
                  switch: t.Mapping[str, t.Any], preview: t.Mapping[str, t.Any], staged_now: bool = False) -> dict[str, t.Any]:
    """The staged ``target`` (release or slot) checked through nginx's preview server; ShipError when it fails.

    On a failure the release is removed when this run staged it (``staged_now``), as it never went
    live; one that was on the host before is marked failed, so that no rollback goes to it. A slot
    is marked failed by the caller.
    """
    from ansible_collections.stagehand.deploy.plugins.module_utils import _preview_health  # pylint: disable=import-outside-toplevel

    timeout = preview.get('timeout')
    if timeout is None:
        timeout = switch.get('health_timeout') if switch.get('health_timeout') is not None else _switch.DEFAULT_HEALTH_TIMEOUT
    try:
        return _preview_health.check_staged(droot, mode, target, name, switch['health_url'], preview['port'],
                                            header=switch.get('health_release_header') or _switch.DEFAULT_RELEASE_HEADER,
                                            timeout=timeout, live=live)
    except _preview_health.PreviewFailed as exc:
        removed = False
        if mode == MODE_RELEASES and staged_now:
            # never live: removed, as the deploy role's undo removes a release its run staged (a slot is marked
            # failed by the caller instead, as after any failure once it is patched)
            try:
                _release.remove_release(droot.root, name)
                removed = True
            except (_release.ReleaseError, OSError):
                pass
        if mode == MODE_RELEASES and not removed:
            # on the host before this run (or not removable): marked failed, so that no rollback goes to it
            _mark_failed(droot, mode, name, None, '%s: %s' % (PHASE_PREVIEW, exc.msg))
        raise ShipError(exc.msg, {'preview_check': exc.result, 'changed': True, 'discarded': removed}) from None
    except _switch.SwitchError as exc:  # e.g. a plain directory where the preview link goes: nothing pointed or checked
        raise ShipError(str(exc), {'changed': False}) from None


def _mark_failed(droot: DeployRoot, mode: str, name: str, slot: str | None, reason: str) -> None:
    """Mark the release (or in slots mode its slot) failed, so that nothing switches to it again by accident."""
    try:
        if mode == MODE_SLOTS and slot is not None:
            _release.mark_slot_failed(droot.root, slot, reason=reason[:900])
        elif mode == MODE_RELEASES:
            _release.mark_failed(droot.root, name, reason=reason[:900])
    except (_release.ReleaseError, OSError):
        pass


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
    root = params['root']
    mode = params.get('mode') or MODE_RELEASES
    droot = DeployRoot(root)
    try:
        check_args(params)
    except ShipError as exc:  # refused before anything is read or written: say what is live all the same
        live = live_label(droot, mode) if mode in (MODE_RELEASES, MODE_SLOTS) and os.path.isdir(root) else None
        raise ShipError(exc.msg, dict(exc.result, failed_phase=PHASE_CHECK, previous=live, current=live)) from None
    name = params['release']
    moment = datetime.datetime.now(datetime.timezone.utc)
    if not os.path.isdir(root):
        raise ShipError('the deploy root %r does not exist on this host: provision it first' % (root,),
                        {'failed_phase': PHASE_CHECK, 'previous': None, 'current': None})
    result: dict[str, t.Any] = {'changed': False, 'release': name, 'compose_id': params['compose_id'], 'mode': mode, 'slot': None,
                                'staged': None, 'switched': False, 'needs_migrate': False, 'needs_phases': False,
                                'pending_migrations': [], 'previous': None, 'current': None, 'health': None, 'opcache': None, 'preview_check': None,
                                'history': None, 'phases': {}, 'failed_phase': None, 'signature': None, 'platform': None,
                                'manifest': None, 'warnings': []}
    lock_args = params.get('lock')
    token = None
    if lock_args is not None:
        started = clock()
        try:
            # this process holds the lock for the whole run: recorded, so that when it is killed the next run
            # proves it dead and takes over (completing the history with an interrupted line)
            got = _lock.acquire(root, host_pid=os.getpid(), action='deploy', release=name,
                                **{k: v for k, v in lock_args.items() if v is not None})
        except _lock.LockHeld as exc:
            refused = dict(result, failed_phase=PHASE_LOCK, lock={'holder': exc.holder})
            _timed(refused['phases'], PHASE_LOCK, clock() - started)
            refused['history'] = _history_line(root, params, moment, 'refused', exc.msg, live_label(droot, mode), refused['phases'])
            raise ShipError(exc.msg, refused) from None
        except _lock.LockError as exc:
            raise ShipError(exc.msg, dict(result, failed_phase=PHASE_LOCK)) from None
        token = got['token']
        crash_point('ship:locked')
        _timed(result['phases'], PHASE_LOCK, clock() - started)
        result['warnings'].extend(got['warnings'])
    phase, started = PHASE_CHECK, clock()
    live = live_label(droot, mode)
    result['previous'] = result['current'] = live
    outcome = 'refused'
    slot: str | None = None  # in slots mode, the slot this run patched: marked failed when the run fails after that
    try:
        upload = params.get('upload') or {}
        rebuilt = _delta.rebuild(root, params['compose_id'], upload['manifest'], upload.get('manifest_delta'))
        result['manifest'] = rebuilt['path']
        result['changed'] |= bool(rebuilt['pruned'])
        check_compose(rebuilt, params, result)
        _timed(result['phases'], phase, clock() - started)

        phase, started, outcome = PHASE_STAGE, clock(), 'failed'
        result['changed'] |= prepare_shared(droot, params)
        if mode == MODE_SLOTS:
            staged = stage_slot(droot, name, rebuilt['path'], params)
            slot = result['slot'] = staged['slot']
            tree = staged['path']
        else:
            staged = stage_release(droot, name, live, rebuilt['path'], params)
            tree = droot.release_path(name)
        result['staged'] = staged
        result['changed'] |= staged['changed']
        crash_point('ship:staged')
        _timed(result['phases'], phase, clock() - started)

        migrations = params.get('migrations')
        if migrations is not None:
            phase, started = PHASE_MIGRATIONS, clock()
            if mode == MODE_SLOTS:
                live_kind, live_slot = droot.live()
                pending, reason = pending_migrations(droot, tree, name, migrations['dir'], migrations.get('database'),
                                                     live_slot if live_kind == MODE_SLOTS else None, slot=slot)
            else:
                pending, reason = pending_migrations(droot, tree, name, migrations['dir'], migrations.get('database'), live)
            _timed(result['phases'], phase, clock() - started)
            if pending or reason:
                slot = None  # staged and kept: the caller migrates, then switches to it
                result.update(needs_migrate=True, pending_migrations=pending, needs_migrate_reason=reason or
                              'migrations to apply: %s' % ', '.join(pending))
                return result

        switch = params.get('switch')
        if switch is None:
            slot = None
            return result
        phase = PHASE_SWITCH
        opcache = params.get('opcache')
        if mode == MODE_SLOTS and opcache is not None:
            started = clock()
            result['opcache'] = invalidate_opcache(root, t.cast(str, slot), tree, staged.get('changed_files') or [], opcache)
            _timed(result['phases'], PHASE_SWITCH, clock() - started)
        preview = params.get('preview_check')
        if preview is not None and preview.get('port') and switch.get('health_url'):
            phase, started = PHASE_PREVIEW, clock()
            result['preview_check'] = check_preview(droot, mode, name, t.cast(str, slot) if mode == MODE_SLOTS else name, live, switch, preview,
                                                    staged_now=bool(staged.get('changed')))
            result['changed'] |= result['preview_check']['changed']
            _timed(result['phases'], phase, clock() - started)
            phase = PHASE_SWITCH
        history = params.get('history')
        if history is not None:
            history = dict(history, phases=dict(history.get('phases') or {}, **result['phases']))
        target = {'release': name} if mode == MODE_RELEASES else {'target': slot}
        try:
            switched = _switch.switch_guarded(
                root, history=history, now=moment, mode=mode,
                post_commands=_switch.check_post_commands(switch.get('post_commands') or []),
                health_url=switch.get('health_url'),
                health_release_header=switch.get('health_release_header') or _switch.DEFAULT_RELEASE_HEADER,
                health_timeout=switch.get('health_timeout') if switch.get('health_timeout') is not None else _switch.DEFAULT_HEALTH_TIMEOUT,
                revert_on_failure=True, run_command=run_command, **target)
        except _switch.GuardedFailure as exc:
            failed = exc.result
            went_live = bool(failed.get('reverted')) or failed.get('current') == (name if mode == MODE_RELEASES else slot)
            result.update(switched=False, current=live_label(droot, mode), health=failed.get('health'), history=failed.get('history'),
                          failed_phase=PHASE_SWITCH, changed=True)
            if went_live or mode == MODE_SLOTS:  # it went live (or, a slot, was patched): never again by accident
                _mark_failed(droot, mode, name, slot, '%s: %s' % (PHASE_SWITCH, exc.msg))
            raise ShipError(exc.msg, result) from None
        slot = None
        result.update(switched=switched.get('previous') != switched.get('current'), current=live_label(droot, mode),
                      previous=live, health=switched.get('health'), history=switched.get('history'),
                      post_commands=switched.get('post_commands'))
        result['changed'] = True
        result['warnings'].extend(switched.get('warnings') or [])
        return result
    except ShipError as exc:
        if exc.result.get('failed_phase'):
            raise
        result.update({k: v for k, v in exc.result.items() if v is not None})
        return _failed(droot, params, moment, result, phase, clock() - started, outcome, exc.msg, live, mode, slot)
    except (_delta.DeltaError, _release.ReleaseError) as exc:
        msg = getattr(exc, 'msg', None) or str(exc)
        if phase == PHASE_CHECK:
            msg = msg.rstrip('.') + '. Nothing was staged.'
        return _failed(droot, params, moment, result, phase, clock() - started, outcome, msg, live, mode, slot)
    except OSError as exc:
        msg = 'could not %s release %r in %r: %s' % (phase, name, root, _release.explain_os_error(exc, root, (params.get('upload') or {}).get('bytes')))
        return _failed(droot, params, moment, result, phase, 0.0, 'failed', msg, live, mode, slot)
    except ValueError as exc:
        msg = 'could not %s release %r in %r: %s' % (phase, name, root, exc)
        return _failed(droot, params, moment, result, phase, 0.0, 'failed', msg, live, mode, slot)
    finally:
        if token is not None:
            try:
                released = _lock.release(root, token=token)
                result['warnings'].extend(released['warnings'])
            except (OSError, _lock.LockError) as exc:
                result['warnings'].append('the deploy lock %s could not be released: %s' % (droot.lock_path, getattr(exc, 'msg', exc)))


def _failed(droot: DeployRoot, params: t.Mapping[str, t.Any], moment: datetime.datetime, result: dict[str, t.Any], phase: str,
            seconds: float, outcome: str, msg: str, live: str | None, mode: str, slot: str | None) -> t.NoReturn:
    """Record a failure of ``phase`` (the slot patched, if any, marked failed; the history line) and raise it as a ShipError."""
    if seconds:
        _timed(result['phases'], phase, seconds)
    if slot is not None:
        _mark_failed(droot, mode, params['release'], slot, '%s: %s' % (phase, msg))
    result.update(failed_phase=phase, history=_history_line(droot.root, params, moment, outcome, msg, live, result['phases']))
    raise ShipError(msg, result)
