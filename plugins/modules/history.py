#!/usr/bin/python
# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: history
short_description: Append a deploy, rollback or cleanup record to the history of a deploy root
version_added: 0.1.0
author:
  - Stagehand Deploy contributors (@stagehand-deploy)
description:
  - Appends one line of JSON to C(<root>/.stagehand/history.jsonl), the log of every deploy, rollback and cleanup of
    the deploy root. M(stagehand.deploy.release_info) returns the last entries with its O(stagehand.deploy.release_info#module:history) option.
  - The record is validated first (see O(record)); a refused record changes nothing.
  - The line is written with a single C(write(2)) on a descriptor opened with C(O_APPEND), while holding C(flock) on
    the file, then fsynced, so records written at the same time never mix inside a line. If the file does not end with a newline (a write torn by a
    crash), the new record starts on a new line and readers skip the torn one.
  - C(.stagehand/) is created (mode 0755) when missing, the file with mode 0644. O(root) must exist.
options:
  root:
    description:
      - The deploy root.
    type: path
    required: true
  record:
    description:
      - The record to append. Keys other than those below are refused.
      - Times are written in UTC with millisecond precision (V(2026-11-22T10:00:00.250Z)).
    type: dict
    required: true
    suboptions:
      action:
        description: What was done.
        type: str
        required: true
        choices: [deploy, rollback, cleanup]
      release:
        description:
          - The release deployed or rolled back to, or null (a cleanup). It must be a valid release name.
          - An empty string counts as null.
        type: str
      previous:
        description:
          - The release that was live before, or null. It must be a valid release name.
          - An empty string counts as null.
        type: str
      user:
        description: Who ran it (the user on the controller).
        type: str
        required: true
      controller:
        description: Host name of the controller it was run from.
        type: str
        required: true
      start:
        description:
          - When it started, an ISO 8601 time. A time with an offset is converted to UTC; a time without one is taken
            as UTC.
        type: str
        required: true
      end:
        description: When it ended, an ISO 8601 time like O(record.start). Defaults to now (the clock of the managed host).
        type: str
      outcome:
        description:
          - V(success), V(failed) (stopped before going live, nothing changed for users), V(refused) (not started, for
            example the lock was held or a rollback was unsafe), V(rolled_back) (went live, failed its checks and was
            switched back) or V(interrupted) (died holding the deploy lock; written by the run that took the lock over,
            see M(stagehand.deploy.lock)).
        type: str
        required: true
        choices: [success, failed, refused, rolled_back, interrupted]
      live:
        description:
          - What is live now, for a record of outcome V(interrupted); written only when set. It must be a valid release
            name; an empty string counts as null.
        type: str
      switched:
        description:
          - When the live link was renamed, an ISO 8601 time like O(record.start) (written with milliseconds); written
            only when set. M(stagehand.deploy.switch) returns it as RV(stagehand.deploy.switch#module:switched_at), so
            that the switch spread of a fleet can be read from the hosts' histories.
        type: str
      phases:
        description:
          - "Seconds spent in each phase, for example C({\"lock\": 0.12, \"build\": 31.5}). Values are numbers >= 0 (or
            strings holding one), written rounded to milliseconds."
        type: dict
        default: {}
      error:
        description: What went wrong, or null (an empty string counts as null). Longer texts are cut at 4096 characters.
        type: str
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details:
      - Validates the record and reports C(changed=true) with the record that would be written; the file is not touched.
  diff_mode:
    support: full
    details:
      - Before is empty, after is the line appended.
  idempotent:
    description: When run twice in a row with the same arguments, the second run reports no change.
    support: none
    details:
      - Every run appends a line; history records events, so the same record twice means two events.
  platform:
    support: full
    platforms: posix
seealso:
  - module: stagehand.deploy.release_info
"""

EXAMPLES = r"""
- name: Record a successful deploy
  stagehand.deploy.history:
    root: /srv/www/app
    record:
      action: deploy
      release: v2
      previous: v1
      user: alice
      controller: laptop.example.org
      start: "2026-11-22T10:00:00Z"
      outcome: success
      phases:
        lock: 0.12
        build: 31.5
        switch: 0.04

- name: Record a rollback that was refused
  stagehand.deploy.history:
    root: /srv/www/app
    record:
      action: rollback
      release: v1
      previous: v3
      user: "{{ lookup('ansible.builtin.env', 'USER') }}"
      controller: "{{ lookup('ansible.builtin.pipe', 'hostname') }}"
      start: "{{ rollback_start }}"
      outcome: refused
      error: migration 0003_drop_column is irreversible
"""

RETURN = r"""
path:
  description: The history file.
  returned: success
  type: str
  sample: /srv/www/app/.stagehand/history.jsonl
record:
  description: The record as written (in check mode, as it would be written), with every key.
  returned: success
  type: dict
  sample:
    action: deploy
    release: v2
    previous: v1
    user: alice
    controller: laptop.example.org
    start: "2026-11-22T10:00:00.000Z"
    end: "2026-11-22T10:01:02.416Z"
    outcome: success
    phases:
      lock: 0.12
      build: 31.5
    error: null
"""

from ansible_collections.stagehand.deploy.plugins.module_utils._crash import crash_point
from ansible_collections.stagehand.deploy.plugins.module_utils._module import StagehandModule
from ansible_collections.stagehand.deploy.plugins.module_utils._atomic import disk_full_hint, is_disk_full
from ansible_collections.stagehand.deploy.plugins.module_utils._history import (
    ACTIONS,
    OUTCOMES,
    HistoryError,
    append_record,
)


def main() -> None:
    module = StagehandModule(
        argument_spec=dict(
            root=dict(type='path', required=True),
            record=dict(type='dict', required=True, options=dict(
                action=dict(type='str', required=True, choices=list(ACTIONS)),
                release=dict(type='str'),
                previous=dict(type='str'),
                user=dict(type='str', required=True),
                controller=dict(type='str', required=True),
                start=dict(type='str', required=True),
                end=dict(type='str'),
                outcome=dict(type='str', required=True, choices=list(OUTCOMES)),
                phases=dict(type='dict', default={}),
                error=dict(type='str'),
                live=dict(type='str'),
                switched=dict(type='str'),
            )),
        ),
        supports_check_mode=True,
    )
    params = module.params
    try:
        result = append_record(params['root'], params['record'], check_mode=module.check_mode)
        if not module.check_mode:
            crash_point('history:written')
    except HistoryError as exc:
        module.fail_json(msg=str(exc))
    except OSError as exc:
        msg = 'Could not append to the history of %s: %s' % (params['root'], exc)
        if is_disk_full(exc):
            msg += '; %s' % disk_full_hint(params['root'])
        module.fail_json(msg=msg)
    diff = result.pop('diff')
    if module._diff:
        result['diff'] = diff
    module.exit_json(**result)


if __name__ == '__main__':
    main()
