# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What a run of a playbook hands to its caller: one result per host and one for the run.

Every playbook of the collection ends with ``set_stats`` of :func:`run_stats` under the key
``stagehand``, so that ansible-runner (``artifacts/<ident>/`` and ``Runner.stats``) and AWX
(workflow artifacts, passed to the next node as extra variables) get the outcome as data
instead of text. The schema is documented in docs/runner.md.

A host's result is read from what the deploy role left in its variables: the message it failed
with (``deploy__message``), the outcome it decided (``deploy__outcome``), the history line the
run wrote (from the history, ship or switch module) and whether the host reached the end of
the play (``stagehand__ended``, set by the playbooks' last task). A host with none of these
failed or was unreachable before the role could say anything; that is said, not guessed.
"""

from __future__ import annotations

import typing as t

# ``success``: the action did what was asked (a redeploy of what is live, a preview in check mode
# included); ``refused``: nothing was changed (bad input, lock held, a guard); ``rolled_back``: the
# release went live and was switched back; ``failed``: anything else.
OUTCOMES = ('success', 'refused', 'rolled_back', 'failed')
ACTIONS = ('deploy', 'rollback', 'cleanup', 'status', 'provision', 'build')

# the variables of a host that a result is read from (see host_result)
HOST_VARS = (
    'stagehand__ended', 'deploy__message', 'deploy__outcome', 'deploy__failed_phase', 'deploy__recorded',
    'deploy__shipped', 'deploy__fast', 'deploy__cleaned', 'deploy__status', 'deploy__compose', 'deploy__store_compose',
    'deploy_release_name', 'deploy_previous_release', 'deploy__phases',
)

_SEVERITY = {'success': 0, 'refused': 1, 'rolled_back': 2, 'failed': 3}


class ResultError(ValueError):
    """An action the results do not know."""


def _mapping(value: t.Any) -> dict[str, t.Any]:
    return dict(value) if isinstance(value, t.Mapping) else {}


def _text(value: t.Any) -> str | None:
    if value is None:
        return None
    text = ' '.join(str(value).split())
    return text or None


def run_line(host_vars: t.Mapping[str, t.Any]) -> dict[str, t.Any]:
    """The history line this run wrote on the host, or ``{}``.

    The history module's (``record.yml``: the phases of a deploy, a checked rollback, a cleanup) is
    the last one written when present; otherwise the one call of the fast path: the ship module's
    (deploy) or the switch module's (rollback).
    """
    recorded = _mapping(host_vars.get('deploy__recorded'))
    for line in (recorded.get('record'), _mapping(host_vars.get('deploy__shipped')).get('history'),
                 _mapping(host_vars.get('deploy__fast')).get('history')):
        if isinstance(line, t.Mapping) and line.get('action'):
            return dict(line)
    return {}


def _compose_id(host_vars: t.Mapping[str, t.Any]) -> str | None:
    for name in ('deploy__shipped', 'deploy__compose', 'deploy__store_compose'):
        compose_id = _mapping(host_vars.get(name)).get('compose_id')
        if compose_id:
            return str(compose_id)
    return None


def _phases(line: t.Mapping[str, t.Any], host_vars: t.Mapping[str, t.Any]) -> dict[str, float]:
    phases = line.get('phases') or host_vars.get('deploy__phases') or {}
    result: dict[str, float] = {}
    if isinstance(phases, t.Mapping):
        for name, seconds in phases.items():
            try:
                result[str(name)] = round(float(seconds), 3)
            except (TypeError, ValueError):
                continue
    return result


def _success_message(action: str, host: str, release: str | None, previous: str | None,
                     host_vars: t.Mapping[str, t.Any], line: t.Mapping[str, t.Any]) -> str:
    if action == 'status':
        status = _mapping(host_vars.get('deploy__status'))
        if not status.get('exists', True):
            return f'{host}: nothing deployed yet'
        return f"{host}: {status.get('live') or 'nothing'} is live (previous: {status.get('previous') or 'none'})"
    if action == 'cleanup':
        cleaned = _mapping(host_vars.get('deploy__cleaned'))
        removed = ', '.join(cleaned.get('removed') or []) or 'nothing'
        return f'{host}: removed {removed}'
    if action == 'build':
        composed = _mapping(host_vars.get('deploy__compose'))
        return f"composed {release} ({composed.get('compose_id')})"
    if action == 'provision':
        return f'{host}: provisioned'
    if not line:
        # nothing written: a redeploy of what is live, or a preview in check mode
        return f"{host}: {release or 'the release'} was already live, nothing was changed" if action == 'deploy' \
            else f'{host}: nothing was changed'
    return f"{release} is live on {host} (before: {previous or 'nothing'})"


def host_result(action: str, host: str, host_vars: t.Mapping[str, t.Any]) -> dict[str, t.Any]:
    """The result of ``action`` on ``host``, read from the host's variables (see HOST_VARS)."""
    if action not in ACTIONS:
        raise ResultError(f'action {action!r} is not one of {", ".join(ACTIONS)}')
    line = run_line(host_vars)
    shipped = _mapping(host_vars.get('deploy__shipped'))
    composed = _mapping(host_vars.get('deploy__compose'))
    release = _text(line.get('release') or host_vars.get('deploy_release_name') or shipped.get('release')
                    or composed.get('release'))
    previous = _text(line.get('previous') or host_vars.get('deploy_previous_release') or shipped.get('previous'))
    ended = bool(host_vars.get('stagehand__ended'))
    # check mode (deploy.yml --check): what the ship call worked out the deploy would do
    preview = shipped.get('preview') if isinstance(shipped.get('preview'), t.Mapping) else None
    if ended and preview is not None:
        outcome = 'success'
        message = _text(preview.get('line')) or f'{host}: previewed'
    elif ended:
        outcome = 'success'
        message = _success_message(action, host, release, previous, host_vars, line)
    else:
        decided = host_vars.get('deploy__outcome')
        outcome = decided if decided in OUTCOMES and decided != 'success' else line.get('outcome')
        if outcome not in OUTCOMES or outcome == 'success':
            outcome = 'failed'
        message = _text(host_vars.get('deploy__message')) or _text(line.get('error')) or (
            f'{host} failed or was unreachable before the {action} could report a result: see the job log')
    result: dict[str, t.Any] = {
        'action': action,
        'outcome': outcome,
        'release': release,
        'previous': previous,
        'compose_id': _compose_id(host_vars),
        'failed_phase': None if ended else _text(host_vars.get('deploy__failed_phase') or shipped.get('failed_phase')),
        'phases': _phases(line, host_vars),
        'message': message,
    }
    if preview is not None:
        result['preview'] = dict(preview)
    return result


def _common(results: t.Iterable[t.Mapping[str, t.Any]], key: str) -> str | None:
    values = {result.get(key) for result in results}
    return values.pop() if len(values) == 1 else None


def run_stats(action: str, results: t.Mapping[str, t.Mapping[str, t.Any]]) -> dict[str, t.Any]:
    """The result of the run from the results of its hosts: the worst outcome, and one message."""
    if action not in ACTIONS:
        raise ResultError(f'action {action!r} is not one of {", ".join(ACTIONS)}')
    hosts = {host: dict(result) for host, result in sorted(results.items())}
    if not hosts:
        return {'action': action, 'outcome': 'refused', 'release': None, 'previous': None, 'hosts': {},
                'message': f'no host matched: the {action} ran nowhere'}
    outcome = max((result['outcome'] for result in hosts.values()), key=lambda outcome: _SEVERITY.get(outcome, 3))
    release = _common(hosts.values(), 'release')
    if outcome == 'success':
        count = len(hosts)
        what = f' of {release}' if release and action in ('deploy', 'rollback') else ''
        message = f"{action}{what}: success on {count} host{'s' if count != 1 else ''}"
    else:
        message = '; '.join(f"{host}: {result['message']}" for host, result in hosts.items()
                            if result['outcome'] != 'success')
    return {
        'action': action,
        'outcome': outcome,
        'release': release,
        'previous': _common(hosts.values(), 'previous'),
        'message': message,
        'hosts': hosts,
    }
