# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What every module of the collection shares: the module class and what it does with a result.

``StagehandModule`` is ``AnsibleModule`` with one difference: the line it writes to the target's
systemd journal (or syslog) when it starts, ``Invoked with ...``, never carries a secret.
``AnsibleModule`` stringifies a dict or list option *before* it masks the values declared
``no_log``, so a secret nested in a suboption (the ``.env`` content of ``ship``, whose newlines
the repr escapes) reached the journal untouched. Here every option is masked as a structure
first, the options named in ``REDACTED_OPTIONS`` or ``*_token`` (lock tokens, file contents) are never logged
at any depth, and the journal fields get the same masked text as the message.
"""

from __future__ import annotations

import typing as t

from ansible.module_utils.basic import PASSWORD_MATCH, AnsibleModule, heuristic_log_sanitize
from ansible.module_utils.common.parameters import remove_values

from ansible_collections.stagehand.deploy.plugins.module_utils._root import InvalidRoot, check_root_path

# Options whose value is never written to the target's log, at any depth: a lock token lets its
# holder release the lock (so does any option named ``*_token``, such as ``stale_token``), and a
# file content may hold anything (the .env with the DB password).
REDACTED_OPTIONS = frozenset(('token', 'content'))
NOT_LOGGED = 'NOT_LOGGING_PARAMETER'


def _is_redacted(name: object, redacted: t.AbstractSet[str]) -> bool:
    return isinstance(name, str) and (name in redacted or name.endswith('_token'))


def _redact(value: t.Any, redacted: t.AbstractSet[str]) -> t.Any:
    """``value`` with every dict entry named in ``redacted`` (or ``*_token``) replaced by :data:`NOT_LOGGED`, at any depth."""
    if isinstance(value, dict):
        return {key: (NOT_LOGGED if _is_redacted(key, redacted) and item is not None else _redact(item, redacted))
                for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redact(item, redacted) for item in value]
    return value


def invocation_log_args(params: dict[str, t.Any], argument_spec: dict[str, t.Any], no_log_values: t.Iterable[str],
                        redacted: t.AbstractSet[str] = REDACTED_OPTIONS) -> dict[str, str]:
    """The text logged for each option when a module starts, with no secret in it.

    An option declared ``no_log``, named in ``redacted``, or named like a password (and not
    declared ``no_log=False``) is :data:`NOT_LOGGED`; any other value
    has its nested redacted entries replaced and every ``no_log`` value masked *as a structure*
    before it is turned into text, then the usual URL-password heuristic is applied.
    """
    values = set(no_log_values)
    logged: dict[str, str] = {}
    for name, value in params.items():
        no_log = argument_spec.get(name, {}).get('no_log')
        if no_log or (_is_redacted(name, redacted) and value is not None) or (no_log is None and PASSWORD_MATCH.search(name)):
            logged[name] = NOT_LOGGED
            continue
        masked = remove_values(_redact(value, redacted), values)
        logged[name] = heuristic_log_sanitize(masked if isinstance(masked, str) else str(masked), values)
    return logged


class StagehandModule(AnsibleModule):
    """``AnsibleModule`` whose invocation line in the target's journal carries no secret (see the module docstring).

    An option named ``root`` is a deploy root: a value that may not be one (``_root.check_root_path``)
    fails the module with the reason before it does anything else.
    """

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        super().__init__(*args, **kwargs)
        if self.params.get('root') is not None:
            try:
                check_root_path(self.params['root'])
            except InvalidRoot as exc:
                self.fail_json(msg=str(exc))

    def _log_invocation(self) -> None:
        log_args = invocation_log_args(self.params, self.argument_spec, self.no_log_values)
        msg = ' '.join('%s=%s' % item for item in log_args.items())
        self.log('Invoked with %s' % msg if msg else 'Invoked', log_args=log_args)


def exit_with_result(module: AnsibleModule, result: dict[str, t.Any]) -> None:
    """Exit with ``result``: its ``warnings`` become module warnings, its ``diff`` is kept only in diff mode."""
    for warning in result.pop('warnings', ()):
        module.warn(warning)
    diff = result.pop('diff', None)
    if module._diff and diff is not None:
        result['diff'] = diff
    module.exit_json(**result)
