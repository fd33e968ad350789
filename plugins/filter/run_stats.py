# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
---
name: run_stats
short_description: The outcome of a run of the collection's playbooks, as data for set_stats
version_added: 0.2.0
description:
  - Reads, for every host given, what the P(stagehand.deploy.deploy#role) role left in the host's variables (the
    message it failed with, the outcome it decided, the history line the run wrote, whether the host reached the end
    of the play) and returns one result per host and one for the run.
  - The playbooks of the collection end with a play on C(localhost) that hands this to M(ansible.builtin.set_stats)
    under the key C(stagehand), so that ansible-runner and AWX workflows get the outcome as data. The schema is in
    docs/runner.md.
  - A host that left nothing (unreachable, or failed before the role could report) is C(failed) with a message that
    says so.
author:
  - Stagehand Deploy contributors (@stagehand-deploy)
options:
  _input:
    description: The C(hostvars) of the run.
    type: dict
    required: true
  action:
    description: What the playbook did.
    type: str
    required: true
    choices: [deploy, rollback, cleanup, status, provision, build]
  hosts:
    description: The hosts the playbook targeted (for example C(query('ansible.builtin.inventory_hostnames', PATTERN))).
    type: list
    elements: str
    required: true
'''

EXAMPLES = r'''
- name: Hand the outcome of the deploy to the caller
  ansible.builtin.set_stats:
    data:
      stagehand: "{{ hostvars | stagehand.deploy.run_stats('deploy', query('ansible.builtin.inventory_hostnames', 'all')) }}"
    per_host: false
    aggregate: false
'''

RETURN = r'''
_value:
  description: The result of the run (C(action), C(outcome), C(release), C(previous), C(message)) and, under C(hosts),
    one per host (C(action), C(outcome), C(release), C(previous), C(compose_id), C(failed_phase), C(phases) in
    seconds, C(message)). C(outcome) is one of C(success), C(refused), C(rolled_back), C(failed); the run's is the
    worst of its hosts'.
  type: dict
  sample:
    action: deploy
    outcome: success
    release: v2
    previous: v1
    message: "deploy of v2: success on 1 host"
    hosts:
      web1:
        action: deploy
        outcome: success
        release: v2
        previous: v1
        compose_id: 3f1c0d9a2b7e
        failed_phase: null
        phases: {ship: 0.52, stage: 0.41, switch: 0.02}
        message: "v2 is live on web1 (before: v1)"
'''

import typing as t

from ansible.errors import AnsibleFilterError

from ansible_collections.stagehand.deploy.plugins.module_utils._result import HOST_VARS, ResultError, host_result, run_stats as _run_stats


def _host_vars(hostvars: t.Any, host: str) -> dict[str, t.Any]:
    try:
        variables = hostvars[host]
    except KeyError:
        return {}
    picked: dict[str, t.Any] = {}
    for name in HOST_VARS:
        try:
            if name in variables:
                picked[name] = variables[name]
        except Exception:  # pylint: disable=broad-exception-caught
            # a variable that cannot be templated any more (it names a task var of the role) tells nothing
            continue
    return picked


def run_stats(hostvars: t.Any, action: str, hosts: t.Sequence[str]) -> dict[str, t.Any]:
    """The ``stagehand`` stats of a run of ``action`` on ``hosts``."""
    try:
        return _run_stats(action, {host: host_result(action, host, _host_vars(hostvars, host)) for host in hosts})
    except ResultError as exc:
        raise AnsibleFilterError(str(exc)) from exc


class FilterModule:
    """The outcome of a run, for set_stats."""

    def filters(self) -> dict[str, t.Callable[..., dict[str, t.Any]]]:
        return {'run_stats': run_stats}
