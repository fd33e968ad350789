# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Controller side of ``stagehand.deploy.ship``: write what the host lacks, copy it over, run the module.

The delta (one file per sha256 the host lacks, and the manifest as a delta against one the host
keeps) is written with :func:`_delta.create` into a temporary directory on the controller, in
this process: no extra module run. The files go to the remote temporary directory with the
connection's own file transfer (SSH, docker, local alike), then the module runs once and the
remote temporary directory is removed.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import tempfile
import time
import typing as t

from ansible.errors import AnsibleActionFail
from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

from ansible_collections.stagehand.deploy.plugins.action.lock import controller_facts, stale_retry
from ansible_collections.stagehand.deploy.plugins.action.switch import fill_controller_args, health_and_phases
from ansible_collections.stagehand.deploy.plugins.module_utils import _preview
from ansible_collections.stagehand.deploy.plugins.module_utils._compose import ComposeError, release_for, resolve_ref
from ansible_collections.stagehand.deploy.plugins.module_utils._delta import DeltaError, create
from ansible_collections.stagehand.deploy.plugins.module_utils._manifest import load_manifest
from ansible_collections.stagehand.deploy.plugins.module_utils._state import inactive_slot

MODULE_NAME = 'stagehand.deploy.ship'
MARK = '--stagehand-ship--'


def held_query(root: str) -> str:
    """A POSIX shell command printing what the deploy root holds: the live link, release and slot metadata, kept composes."""
    return ('cd %(root)s 2>/dev/null || exit 0; readlink current; echo %(mark)s; '
            'for f in .stagehand/releases/*.json; do n=${f##*/}; n=${n%%.json}; '
            'if [ -f "$f" ] && [ -d "releases/$n" ] && [ ! -L "releases/$n" ]; then cat "$f"; echo; echo %(mark)s; fi; done; '
            'echo %(mark)sslots; '
            'for n in a b; do f=.stagehand/slots/$n.json; '
            'if [ -f "$f" ] && [ -d "slots/$n" ] && [ ! -L "slots/$n" ]; then cat "$f"; echo; echo %(mark)s; fi; done; '
            'echo %(mark)send; ls .stagehand/composes 2>/dev/null; '
            'if [ -e .stagehand/lock ]; then echo; echo %(mark)slock; cat .stagehand/lock; fi; '
            'if [ -f .stagehand/migrations.json ]; then echo; echo %(mark)smigrations; cat .stagehand/migrations.json; fi; '
            'exit 0') % {'root': shlex.quote(root), 'mark': MARK}


def _metas(text: str) -> list[dict[str, t.Any]]:
    found = []
    for chunk in text.split(MARK + '\n'):
        try:
            meta = json.loads(chunk)
        except ValueError:
            continue
        if isinstance(meta, dict) and isinstance(meta.get('name'), str):
            found.append(meta)
    return found


def _last_section(output: str, name: str) -> tuple[str, str | None]:
    """``output`` without the section ``name`` :func:`held_query` prints at its end, and that section's text (None: not printed)."""
    rest, found, text = output.partition('\n' + MARK + name + '\n')
    return rest, (text if found else None)


def _json_or_none(text: str) -> t.Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def parse_held(output: str) -> dict[str, t.Any]:
    """What :func:`held_query` printed -> ``{live, live_kind, releases, slots, composes, lock, migrations}``, as release_info says them.

    ``lock``: the content of the deploy root's lock file (``{'raw': ...}`` when it is not JSON), None without one.
    ``migrations``: the migrations record (``.stagehand/migrations.json``), None without a readable one.

    ``live`` is the release (or slot) ``current`` designates, ``live_kind`` ``releases`` or ``slots``.
    """
    held: dict[str, t.Any] = {'live': None, 'live_kind': None, 'releases': [], 'slots': [], 'composes': [], 'lock': None,
                              'migrations': None}
    output = output.replace('\r\n', '\n')  # a connection with a terminal ends lines with CR LF
    # the sections held_query prints last, each the content of one JSON file (the last one first)
    output, record_text = _last_section(output, 'migrations')
    if record_text is not None:
        held['migrations'] = _json_or_none(record_text)
    output, lock_text = _last_section(output, 'lock')
    if lock_text is not None:
        lock = _json_or_none(lock_text)
        held['lock'] = lock if isinstance(lock, dict) else {'raw': lock_text[:200]}
    head, sep, rest = output.partition(MARK + '\n')
    if not sep:
        return held
    kind, _slash, name = head.strip().partition('/')
    if kind in ('releases', 'slots') and name and '/' not in name:
        held.update(live=name, live_kind=kind)
    releases, _sep, rest = rest.partition(MARK + 'slots\n')
    slots, _sep, listing = rest.partition(MARK + 'end\n')
    for key, text in (('releases', releases), ('slots', slots)):
        for meta in _metas(text):
            entry = {'name': meta['name'], 'status': meta.get('status'), 'manifest_digest': meta.get('manifest_digest'),
                     'shared': meta.get('shared') or [], 'live': key == held['live_kind'] and meta['name'] == held['live']}
            if key == 'slots':
                entry['release'] = meta.get('release')
            held[key].append(entry)
    # <hex>.json (kept whole) or <hex>.delta.json (kept as a delta against another kept compose)
    held['composes'] = sorted({'sha256:' + name[:64] for name in listing.split()
                               if name[64:] in ('.json', '.delta.json') and all(c in '0123456789abcdef' for c in name[:64])})
    return held


def live_compose(held: t.Mapping[str, t.Any]) -> dict[str, str] | None:
    """``{release, compose_id}`` of what is live (a slot by its release label), as release_info's ``live_compose``."""
    for entry in list(held.get('releases') or []) + list(held.get('slots') or []):
        if entry.get('live') and entry.get('status') == 'complete' and entry.get('manifest_digest'):
            return {'release': entry.get('release') or entry['name'], 'compose_id': entry['manifest_digest']}
    return None


def live_label(held: t.Mapping[str, t.Any], mode: str) -> str | None:
    """What is live in ``mode`` as a deploy names it (a slot by its release label), read from what the host holds; None when nothing is."""
    if held.get('live_kind') != mode or not held.get('live'):
        return None
    if mode == 'slots':
        for entry in held.get('slots') or []:
            if entry.get('name') == held['live']:
                return entry.get('release') or entry['name']
    return held['live']


def what_host_lacks(compose: t.Mapping[str, t.Any], held: t.Mapping[str, t.Any], mode: str, manifests: list[str],
                    shared: list[str], work: str, check_mode: bool = False) -> dict[str, t.Any]:
    """:func:`_delta.create` of the compose against what the host holds (in check mode: worked out, nothing written)."""
    return create(compose.get('manifest'), compose['artifact'], work, have=held.get(mode) or [], manifests=manifests,
                  host_composes=list(held.get('composes') or []), shared=shared, check_mode=check_mode,
                  compose_id=compose['compose_id'])


display = Display()


def sent_summary(shipment: t.Mapping[str, t.Any], kept: bool, seconds: float) -> dict[str, t.Any]:
    """What went to the host, for RV(sent), the report line and the history line (``seconds``: the ship phase)."""
    how = 'kept' if kept else ('delta' if shipment.get('manifest_delta') else 'whole')
    return {'files': shipment.get('files', 0), 'total_files': shipment.get('total_files', 0), 'bytes': shipment.get('bytes', 0),
            'archive_bytes': shipment.get('archive_bytes', 0), 'manifest': how,
            'manifest_bytes': 0 if kept else shipment.get('manifest_bytes', 0),
            'manifest_delta_entries': shipment.get('manifest_delta_entries'), 'base': shipment.get('base'), 'seconds': round(seconds, 3)}


# a shipment at least this large gets a progress line before it is sent, so that a job log (AWX) says what
# the long step is doing instead of sitting silent
PROGRESS_FILES = 1000
PROGRESS_BYTES = 20 * 1000 * 1000


def progress_line(host: str, release: t.Any, shipment: t.Mapping[str, t.Any]) -> str | None:
    """``web1: sending 4512 file(s) of 4512 (26.3 MB) of v3, then staging it ...`` for a large shipment, else None."""
    files = int(shipment.get('files') or 0)
    size = int(shipment.get('bytes') or 0)
    if files < PROGRESS_FILES and size < PROGRESS_BYTES:
        return None
    return '%s: sending %d file(s) of %d (%s, %s compressed) of %s, then staging it ...' % (
        host, files, int(shipment.get('total_files') or 0), _preview.size_text(size),
        _preview.size_text(int(shipment.get('archive_bytes') or 0)), release)


def report_line(result: t.Mapping[str, t.Any], host: str, prepared: bool = False) -> str:
    """One line, the ship phase's report followed by what went live, the health check and the phases.

    ``prepared``: the call only staged the release (no ``switch``, the deploy role's prepare phase).
    """
    sent = result.get('sent') or {}
    how = {'kept': 'kept on the host', 'whole': 'in full'}.get(
        sent.get('manifest'), 'as a delta of %s entries against %s' % (sent.get('manifest_delta_entries'), sent.get('base')))
    line = '%s file(s) of %s sent (%s bytes, %s compressed); manifest %s (%s bytes); ' % (
        sent.get('files', 0), sent.get('total_files', 0), sent.get('bytes', 0), sent.get('archive_bytes', 0), how,
        sent.get('manifest_bytes', 0))
    if prepared:
        if result.get('previous') == result.get('release') and not (result.get('staged') or {}).get('changed'):
            return line + '%s on %s: already live: nothing to do.' % (result.get('release'), host)
        return line + '%s staged on %s (%s), not switched yet (live: %s).' % (
            result.get('release'), host, 'staged now' if (result.get('staged') or {}).get('changed') else 'already staged',
            result.get('previous') or 'nothing')
    if result.get('needs_migrate'):
        return line + '%s staged on %s, not switched: %s.' % (result.get('release'), host, result.get('needs_migrate_reason'))
    if result.get('switched'):
        line += '%s is live on %s (before: %s).' % (result.get('current'), host, result.get('previous') or 'nothing')
    else:
        line += '%s was already live on %s, nothing switched.' % (result.get('current'), host)
    return line + health_and_phases(result, result.get('phases'))


class ActionModule(ActionBase):
    """Write the delta on the controller, copy it to the host, run the module once."""

    TRANSFERS_FILES = True
    _supports_check_mode = True  # check mode: the preview of the deploy (see preview), the module is not run
    _supports_async = False

    def _upload(self, local: str, tmpdir: str, name: str) -> str:
        remote = self._connection._shell.join_path(tmpdir, name)
        self._transfer_file(local, remote)
        return remote

    def _preview(self, result: dict[str, t.Any], args: t.Mapping[str, t.Any], compose: dict[str, t.Any] | None,
                 held: t.Mapping[str, t.Any], mode: str, manifests: list[str], host: str, report: bool) -> dict[str, t.Any]:
        """Check mode: what the deploy would do on this host (:func:`_preview.plan`), from what it holds; nothing is written."""
        release = args.get('release') or (compose or {}).get('release')
        if not release:
            naming = args.get('naming') or {}
            try:
                release = release_for({'repo': naming.get('repo'), 'ref': naming.get('version') or None,
                                       'artifact': naming.get('artifact') or None, 'release': naming.get('release') or None},
                                      resolve_ref(naming['repo'], naming['version'])[0] if naming.get('version') else None)
            except (ComposeError, OSError, KeyError) as exc:
                raise AnsibleActionFail('cannot name the release to preview: %s' % (getattr(exc, 'msg', None) or exc,)) from None
        shipment = None
        pending: list[str] | None = None
        pending_reason = None
        irreversible: list[str] = []
        allow_irreversible = False
        if compose is not None:
            work = tempfile.mkdtemp(prefix='stagehand-preview-')
            try:
                shipment = what_host_lacks(compose, held, mode, manifests, args.get('shared') or [], work, check_mode=True)
            except DeltaError as exc:
                raise AnsibleActionFail('cannot work out what %s lacks of %s: %s' % (host, compose['compose_id'], exc.msg)) from None
            finally:
                shutil.rmtree(work, ignore_errors=True)
            migrations = args.get('migrations')
            if isinstance(migrations, dict) and compose.get('manifest'):
                paths = [entry['path'] for entry in load_manifest(compose['manifest']).entries]
                migrations_dir = str(migrations.get('dir') or 'migrations')
                ids = _preview.manifest_migrations(paths, migrations_dir)
                pending, pending_reason = _preview.pending_migrations(ids, held.get('migrations'), migrations.get('database'))
                if pending:
                    irreversible = _preview.irreversible_migrations(pending, paths, migrations_dir,
                                                                    _preview.read_from_artifact(compose.get('artifact') or ''))
                allow_irreversible = bool(migrations.get('allow_irreversible'))
        live_slot = held.get('live') if held.get('live_kind') == 'slots' else None
        failed = any(entry.get('name') == release and entry.get('status') == 'failed' and not entry.get('live')
                     for entry in held.get('releases') or []) if mode == 'releases' else False
        preview = _preview.plan(host, str(release), (compose or {}).get('compose_id'), mode, result.get('live'), live_compose(held),
                                held.get('lock'), shipment, pending, pending_reason, failed,
                                inactive_slot(live_slot) if mode == 'slots' else None, irreversible, allow_irreversible)
        # the keys every ship result has, as a run that changed nothing yet would give them
        result.update(changed=preview['changes'], release=release, compose_id=(compose or {}).get('compose_id'), preview=preview,
                      switched=False, needs_migrate=False, needs_phases=False, previous=result.get('live'), current=result.get('live'),
                      staged=None, pending_migrations=pending or [], health=None, history=None, phases={}, failed_phase=None,
                      manifest=None, signature=None, platform=None)
        if self._task.diff and preview['switch'] is not None:
            result['diff'] = {'before': 'current -> %s\n' % (preview['live'] or 'nothing'), 'after': 'current -> %s\n' % release,
                              'before_header': '%s (live)' % host, 'after_header': '%s (after the deploy)' % host}
        if report:
            display.display(preview['line'] + '.')
        return result

    def run(self, tmp: str | None = None, task_vars: dict[str, t.Any] | None = None) -> dict[str, t.Any]:
        result = super().run(tmp, task_vars)
        del tmp  # unused, see ActionBase.run
        args = dict(self._task.args)
        report = boolean(args.get('report', False), strict=False)
        compose = args.get('compose')
        check_mode = bool(self._task.check_mode)
        if check_mode and isinstance(compose, dict) and not compose.get('compose_id'):
            compose = None  # not composed yet: the preview says so
        elif not isinstance(compose, dict) or not compose.get('compose_id') or not compose.get('artifact'):
            raise AnsibleActionFail('compose must be the result of stagehand.deploy.compose (compose_id, manifest, artifact); got %r' % (compose,))
        mode = args.get('mode') or 'releases'
        if mode not in ('releases', 'slots'):
            raise AnsibleActionFail('mode must be releases or slots, not %r' % (mode,))
        end_if_live = boolean(args.get('end_if_live', True), strict=False)
        held = args.get('held')
        if held is None:
            # one shell command over the open connection instead of a release_info module run
            query = self._low_level_execute_command(held_query(str(args.get('root'))), sudoable=True)
            if query.get('rc') != 0:
                raise AnsibleActionFail('cannot read what %s holds: %s' % (args.get('root'), query.get('stderr') or query.get('stdout')))
            held = parse_held(query.get('stdout') or '')
        if not isinstance(held, dict):
            raise AnsibleActionFail('held must be the result of stagehand.deploy.release_info, got %r' % (held,))
        host = (task_vars or {}).get('inventory_hostname')
        # what was live when the call began, read from the host: the failure message of the deploy says it is still live
        result['live'] = live_label(held, mode)
        manifests = [os.path.expanduser(str(d)) for d in args.get('manifests') or []]
        for key in ('artifact', 'manifest', 'signature'):
            if compose is not None and compose.get(key):
                compose[key] = os.path.expanduser(str(compose[key]))
        if check_mode:
            return self._preview(result, args, compose, held, mode, manifests, str(host or self._play_context.remote_addr), report)
        # never "already live, nothing changed" while a lock is left: the module takes it over (a dead holder, whose
        # history it completes) or is refused by it (a live one)
        locked = bool(held.get('lock'))
        if end_if_live and not locked and live_compose(held) == {'release': args.get('release'), 'compose_id': compose['compose_id']}:
            result.update(changed=False, release=args.get('release'), compose_id=compose['compose_id'], already_live=True,
                          switched=False, needs_migrate=False, needs_phases=False, previous=args.get('release'),
                          current=args.get('release'), sent=sent_summary({}, True, 0.0))
            if report:
                display.display('%s (%s) is already live on %s: nothing was built, sent or changed.' % (
                    args.get('release'), compose['compose_id'], host))
            return result
        composes = list(held.get('composes') or [])
        started = time.monotonic()
        work = tempfile.mkdtemp(prefix='stagehand-ship-')
        try:
            try:
                shipment = what_host_lacks(compose, held, mode, manifests, args.get('shared') or [], work)
            except DeltaError as exc:  # e.g. a manifest without the compose id as digest (create checks it), a corrupt artifact
                result.update(failed=True, failed_phase='ship', changed=False, msg='cannot write what %s lacks of %s: %s. Nothing was sent'
                              % (host, compose['compose_id'], exc.msg.rstrip('.')))
                return result
            kept = compose['compose_id'] in composes
            progress = progress_line(str(host), compose.get('release') or args.get('release'), shipment)
            if progress:
                display.display(progress)
            remote_tmp = self._make_tmp_path()
            # bytes: the size of the files the host lacks, checked against its free space before staging
            upload: dict[str, t.Any] = {'manifest': self._connection._shell.join_path(remote_tmp, 'manifest.json'),
                                        'bytes': int(shipment.get('bytes') or 0)}
            files = []
            if shipment['archive']:
                upload['archive'] = self._upload(shipment['archive'], remote_tmp, 'delta.tar.gz')
                files.append(upload['archive'])
            if not kept and shipment['manifest_delta']:
                upload['manifest_delta'] = self._upload(shipment['manifest_delta'], remote_tmp, 'manifest-delta.json')
                files.append(upload['manifest_delta'])
            elif not kept:
                files.append(self._upload(shipment['manifest'], remote_tmp, 'manifest.json'))
            if compose.get('signature'):
                # always (a few hundred bytes): the compose may have been signed again since the host kept it
                files.append(self._upload(compose['signature'], remote_tmp, 'manifest.json.sig'))
            if args.get('allowed_signers'):
                args['allowed_signers'] = self._upload(os.path.expanduser(str(args['allowed_signers'])), remote_tmp, 'allowed_signers')
                files.append(args['allowed_signers'])
            if files:
                self._fixup_perms2([remote_tmp] + files)
        finally:
            shutil.rmtree(work, ignore_errors=True)

        sent = sent_summary(shipment, kept, time.monotonic() - started)
        module_args = {k: v for k, v in args.items() if k not in ('held', 'manifests', 'end_if_live', 'naming')}
        module_args['compose'] = {k: compose.get(k) for k in ('compose_id', 'manifest', 'artifact', 'signature')}
        module_args['upload'] = upload
        if isinstance(module_args.get('history'), dict):
            history = dict(module_args['history'])
            history['phases'] = dict(history.get('phases') or {}, ship=sent['seconds'])
            module_args['history'] = history
        if isinstance(module_args.get('lock'), dict) or isinstance(module_args.get('history'), dict):
            module_args = fill_controller_args(module_args, controller_facts())
        if isinstance(module_args.get('lock'), dict) and not module_args['lock'].get('stale_token'):
            # a holder that ran on this controller and whose ansible-playbook is gone is taken over in the first call
            # (a refused call would write a history line of its own)
            first = stale_retry({'failed': True, 'holder': held.get('lock')})
            if first is not None:
                module_args['lock'] = dict(module_args['lock'], **first)
        answer = self._execute_module(module_name=MODULE_NAME, module_args=module_args, task_vars=task_vars)
        retry = stale_retry(dict(answer, holder=(answer.get('lock') or {}).get('holder'))) if isinstance(module_args.get('lock'), dict) else None
        if retry is not None and not module_args['lock'].get('stale_token'):
            # the holder ran on this controller and its ansible-playbook is gone: take its lock over
            module_args['lock'] = dict(module_args['lock'], **retry)
            answer = self._execute_module(module_name=MODULE_NAME, module_args=module_args, task_vars=task_vars)
        result.update(answer)
        if result.get('failed') and not result.get('failed_phase'):
            result['failed_phase'] = 'ship'  # the module failed before naming a phase of its own
        self._remove_tmp_path(remote_tmp)
        result['sent'] = sent
        if report and not result.get('failed'):
            display.display(report_line(result, str(host or self._play_context.remote_addr), prepared=args.get('switch') is None))
        return result
