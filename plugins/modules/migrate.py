#!/usr/bin/python
# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: migrate
short_description: Apply, check or roll back the database migrations of a release (MySQL/MariaDB)
version_added: 0.1.0
author:
  - Stagehand Deploy contributors (@stagehand-deploy)
description:
  - Works on the SQL migrations shipped in a release, files C(NNNN_name.up.sql) and optionally C(NNNN_name.down.sql)
    in O(path). The migration id is C(NNNN_name); migrations apply in the order of the number C(NNNN), then the id.
    Other C(.sql) files in O(path) that do not follow that naming make the task fail, so that a misnamed migration
    is never skipped silently. Files not ending in C(.sql) are ignored.
  - "A migration is irreversible when it has no C(.down.sql) file or its up file contains the line
    C(-- stagehand: irreversible)."
  - Applied migrations are recorded in the table C(stagehand_migrations) of O(database) (C(id), C(checksum) (sha256 of
    the up file), C(release), C(irreversible), C(applied_at) in UTC). The table is created the first time a migration is
    applied.
  - V(applied) applies the pending migrations in order, each recorded right after it succeeds, and stops at the first
    one that fails, naming it and giving the SQL error. Pending irreversible migrations are refused (nothing applied,
    no dump taken) unless O(allow_irreversible=true). With O(dump), the database is dumped first (see O(dump)).
  - V(checked) only reads. It returns the pending migrations, those recorded in the database and the C(unknown) ones,
    recorded in the database but not present in O(path) (applied by a newer release). RV(irreversible_since) lists
    the unknown ones recorded as irreversible; switching back to the release of O(path) is then unsafe without a restore.
  - "The schema guard (O(guard=true), states V(applied) and V(checked)): when the database holds irreversible
    migrations (by its C(irreversible) column) that O(path) does not have, the task fails before anything changes,
    naming O(release), those migrations and, only when the file exists, the dump a restore would use: the one taken
    right before the oldest of them was applied, as recorded in C(index.json) of O(dumps_dir). Reversible migrations
    O(path) lacks are allowed (they stay applied). The deploy role uses it before every migrate phase and every
    rollback that reads the database, so that a release never goes live on a schema it does not know."
  - V(restored) restores the database from the dump in O(dump). Every table and view of O(database) is dropped, then
    the dump is loaded, in one client session. It needs O(force=true), because everything written since the dump was
    taken is lost. The whole gzip file is checked first; an unreadable or cut file is refused before anything changes.
  - The C(mysql) and C(mysqldump) clients of the managed host are used (C(mariadb) and C(mariadb-dump) when those are
    the only ones installed). Credentials never appear on a command line. They are written to a temporary option file
    of mode 0600, given to the clients with C(--defaults-extra-file), and removed at the end of the task. SQL is sent
    on standard input.
options:
  path:
    description:
      - The migrations directory, usually C(<root>/releases/<release>/migrations).
      - A directory that does not exist means the release has no migrations; with O(state=checked) every recorded
        migration is then unknown.
      - Required with O(state=applied) and O(state=checked). With O(state=restored), when given, the result tells
        which of its migrations are pending after the restore.
    type: path
  release:
    description:
      - The release name recorded with each migration applied (column C(release)).
    type: str
  database:
    description:
      - The database holding the application's tables and C(stagehand_migrations). It must exist.
    type: str
    required: true
  login_user:
    description:
      - The database user. Without it the client's defaults apply (the system user's name, or C(~/.my.cnf)).
    type: str
  login_password:
    description:
      - The password of O(login_user). Written only to the temporary option file, never on a command line.
    type: str
  login_host:
    description:
      - Host of the database server. Without it, and without O(login_unix_socket), the client connects to the local
        server through its default socket.
    type: str
  login_port:
    description:
      - TCP port of the database server, with O(login_host).
    type: int
  login_unix_socket:
    description:
      - Unix socket of a local server, for example V(/run/mysqld/mysqld.sock).
    type: path
  allow_irreversible:
    description:
      - Apply pending migrations that are irreversible. Without it they make the task fail before anything is done,
        listing them.
    type: bool
    default: false
  dump:
    description:
      - With O(state=applied), where to dump the database (C(mysqldump | gzip)) before the first pending migration is
        applied, usually C(<root>/.stagehand/dumps/<release>.sql.gz). The dump is written to a temporary file in the
        same directory, synced and renamed into place, with mode 0600; missing directories are created with mode 0700.
        An existing file is replaced. No dump is taken when nothing is pending.
      - Each dump is recorded in C(index.json) of its directory (written aside and renamed, mode 0600) with the
        migrations applied when it was taken and those this run then applies, which is how the guard finds the dump
        taken right before a migration. When that record cannot be written, no migration is applied.
      - With O(state=restored), the dump file to restore (required).
    type: path
  guard:
    description:
      - Apply the schema guard (see above) first, with O(state=applied) or O(state=checked).
    type: bool
    default: false
  restore_db:
    description:
      - With O(guard=true), when the guard refuses, restore the dump it names instead. With O(state=applied) the dump
        is restored (every table dropped, then the dump loaded) and the pending migrations of O(path) are then applied
        as usual, dumping first with O(dump). With O(state=checked) nothing is restored; RV(guard.restore) and
        RV(guard.dump) say what a O(state=restored) run should restore.
      - Still refused, with nothing changed, when no dump was recorded right before that migration, or its file is
        gone, or it is not a complete gzip file. Everything written to the database since that dump is lost.
    type: bool
    default: false
  dumps_dir:
    description:
      - The directory of the dumps and of their index C(index.json), usually C(<root>/.stagehand/dumps), where the
        guard looks for the dump a restore would use. Defaults to the directory of O(dump).
    type: path
  state:
    description:
      - V(applied) applies the pending migrations, V(checked) only reports, V(restored) restores O(dump).
    type: str
    choices: [applied, checked, restored]
    default: applied
  force:
    description:
      - Required with O(state=restored), to accept losing everything written to the database since the dump was taken.
    type: bool
    default: false
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details:
      - The database is only read. With O(state=applied) the pending migrations are reported and nothing is applied
        or dumped; with O(state=restored) the dump file is checked and nothing is restored.
  diff_mode:
    support: none
  idempotent:
    description: When run twice in a row with the same arguments, the second run reports no change.
    support: partial
    details:
      - V(applied) applies each migration once; a second run finds nothing pending and reports no change.
      - V(restored) restores every time it runs.
  platform:
    support: full
    platforms: posix
notes:
  - The client also reads the usual option files. The user's C(~/.my.cnf) is read after the temporary file and
    overrides its settings.
  - MySQL and MariaDB do not roll back schema changes, so a migration that fails part way can leave its first
    statements applied. It is not recorded; fix it (or restore the dump) before running again.
  - Run it once per database (C(run_once)) under the deploy lock, not on every web server.
  - Dumps use C(--single-transaction), which gives a consistent snapshot of InnoDB tables without locking them.
requirements:
  - The C(mysql) client (and C(mysqldump) for O(dump)) on the managed host.
seealso:
  - module: stagehand.deploy.switch
  - module: stagehand.deploy.history
"""

EXAMPLES = r"""
- name: Apply the migrations of the new release, dumping the database first
  stagehand.deploy.migrate:
    path: /srv/www/app/releases/v3/migrations
    release: v3
    database: app
    login_user: app
    login_password: "{{ stagehand_db_password }}"
    login_unix_socket: /run/mysqld/mysqld.sock
    allow_irreversible: true
    dump: /srv/www/app/.stagehand/dumps/v3.sql.gz
  run_once: true
  no_log: true

- name: Can the database go back to what v2 expects?
  stagehand.deploy.migrate:
    path: /srv/www/app/releases/v2/migrations
    database: app
    login_user: app
    login_password: "{{ stagehand_db_password }}"
    state: checked
  register: schema
  no_log: true

- name: Refuse the rollback over an irreversible migration
  ansible.builtin.assert:
    that: schema.irreversible_since | length == 0
    fail_msg: "Migrations {{ schema.irreversible_since | join(', ') }} cannot be undone: roll back with restore_db=true"

- name: Deploying v2 again after v3's irreversible migration - refused unless the dump before it is restored
  stagehand.deploy.migrate:
    path: /srv/www/app/releases/v2/migrations
    release: v2
    database: app
    login_user: app
    login_password: "{{ stagehand_db_password }}"
    guard: true
    restore_db: "{{ restore_db | default(false) | bool }}"
    dumps_dir: /srv/www/app/.stagehand/dumps
    dump: /srv/www/app/.stagehand/dumps/v2.sql.gz
  run_once: true
  no_log: true

- name: Restore the dump taken before v3 was deployed
  stagehand.deploy.migrate:
    database: app
    login_user: app
    login_password: "{{ stagehand_db_password }}"
    state: restored
    dump: /srv/www/app/.stagehand/dumps/v3.sql.gz
    force: true
  run_once: true
  no_log: true
"""

RETURN = r"""
applied:
  description:
    - With O(state=applied), the migrations applied by this run, in order (none in check mode).
    - With O(state=checked) and O(state=restored), every migration recorded in the database.
  returned: always
  type: list
  elements: str
  sample: [0002_add_email, 0003_drop_legacy]
pending:
  description:
    - The migrations of O(path) that were not recorded in the database when the task started, in the order they apply.
    - Empty with O(state=restored) in check mode.
  returned: always
  type: list
  elements: str
  sample: [0002_add_email, 0003_drop_legacy]
irreversible:
  description: The pending migrations that are irreversible.
  returned: always
  type: list
  elements: str
  sample: [0003_drop_legacy]
unknown:
  description: Migrations recorded in the database that are not in O(path), sorted.
  returned: always
  type: list
  elements: str
  sample: [0004_split_names]
irreversible_since:
  description: The migrations of RV(unknown) recorded as irreversible; going back to the release of O(path) needs a restore.
  returned: always
  type: list
  elements: str
  sample: []
recorded:
  description: Every migration recorded in the database after the task (before it in check mode), sorted.
  returned: always
  type: list
  elements: str
  sample: [0001_create_visits, 0002_add_email]
modified:
  description: Migrations recorded in the database whose up file has changed since (another checksum). They are not applied again.
  returned: always
  type: list
  elements: str
  sample: []
dump:
  description:
    - With O(state=applied), the dump written before applying (in check mode, the one that would be), null when none was.
    - With O(state=restored), the dump restored.
  returned: always
  type: str
  sample: /srv/www/app/.stagehand/dumps/v3.sql.gz
guard:
  description: What the schema guard decided (O(guard=true)); null without it.
  returned: always
  type: dict
  contains:
    release:
      description: The release checked (O(release), else O(path)).
      type: str
    live:
      description: Always false here (the module does not know what is live).
      type: bool
    lacking:
      description: Applied migrations that O(path) does not have, in the order they apply.
      type: list
      elements: str
    irreversible:
      description: Those of RV(guard.lacking) that are irreversible; the release may not go live while any.
      type: list
      elements: str
    undecided:
      description: Those of RV(guard.lacking) whose reversibility is not known (never from the database).
      type: list
      elements: str
    allowed:
      description: True when the release may go live on the database as it is.
      type: bool
    restore:
      description: True when O(restore_db=true) and RV(guard.dump) is to be restored.
      type: bool
    dump:
      description: The dump a restore would use (taken right before the oldest of RV(guard.irreversible)), only when that file exists.
      type: str
    dump_entry:
      description: Its record in C(index.json) (C(file), C(database), C(release), C(before), C(precedes), C(taken_at)).
      type: dict
    dump_problem:
      description: Why no dump can be restored, when none can.
      type: str
    pending_after_restore:
      description: Migrations of O(path) that the dump does not hold, applied after the restore.
      type: list
      elements: str
    msg:
      description: Why the release was refused, null when it was not.
      type: str
  sample:
    release: v2
    live: false
    lacking: [0003_purge_old_visits]
    irreversible: [0003_purge_old_visits]
    undecided: []
    allowed: false
    restore: false
    dump: /srv/www/app/.stagehand/dumps/v3.sql.gz
    dump_entry: {file: v3.sql.gz, database: app, release: v3, before: [0001_create_visits, 0002_add_visits_user_agent],
                 precedes: [0003_purge_old_visits], taken_at: "2026-12-04T18:00:00.000000Z"}
    dump_problem: null
    pending_after_restore: []
    msg: "v2 does not have the irreversible migrations 0003_purge_old_visits that the database holds, ..."
restored:
  description: The dump restored by this run (O(state=restored), or O(guard=true) with O(restore_db=true)), else null.
  returned: always
  type: str
  sample: /srv/www/app/.stagehand/dumps/v3.sql.gz
database:
  description: The database worked on.
  returned: success
  type: str
  sample: app
dropped:
  description: With O(state=restored), the tables and views dropped before the dump was loaded (none in check mode).
  returned: when O(state=restored)
  type: list
  elements: str
  sample: [stagehand_migrations, visits]
failed_migration:
  description: The migration that failed to apply (or to be recorded).
  returned: failure
  type: str
  sample: 0005_bad_syntax
error:
  description: The client's error message for RV(failed_migration).
  returned: failure
  type: str
  sample: "ERROR 1064 (42000) at line 1: You have an error in your SQL syntax"
"""

from ansible_collections.stagehand.deploy.plugins.module_utils._module import StagehandModule, exit_with_result
from ansible_collections.stagehand.deploy.plugins.module_utils._migrate import (
    STATES,
    Client,
    MigrateError,
    run,
)

LISTS = ('applied', 'pending', 'irreversible', 'unknown', 'irreversible_since', 'recorded', 'modified')


def main() -> None:
    module = StagehandModule(
        argument_spec=dict(
            path=dict(type='path'),
            release=dict(type='str'),
            database=dict(type='str', required=True),
            login_user=dict(type='str'),
            login_password=dict(type='str', no_log=True),
            login_host=dict(type='str'),
            login_port=dict(type='int'),
            login_unix_socket=dict(type='path'),
            allow_irreversible=dict(type='bool', default=False),
            dump=dict(type='path'),
            state=dict(type='str', choices=list(STATES), default='applied'),
            force=dict(type='bool', default=False),
            guard=dict(type='bool', default=False),
            restore_db=dict(type='bool', default=False),
            dumps_dir=dict(type='path'),
        ),
        required_if=[('state', 'applied', ('path',)), ('state', 'checked', ('path',)), ('state', 'restored', ('dump',))],
        supports_check_mode=True,
    )
    params = module.params
    failed = dict((key, []) for key in LISTS)
    failed['dump'] = None
    failed['guard'] = None
    failed['restored'] = None
    mysql = module.get_bin_path('mysql') or module.get_bin_path('mariadb')
    if not mysql:
        module.fail_json(msg='the mysql client (mysql or mariadb) was not found on the managed host: install the MariaDB or MySQL client',
                         **failed)
    mysqldump = module.get_bin_path('mysqldump') or module.get_bin_path('mariadb-dump')
    try:
        client = Client(params['database'], mysql, mysqldump, tmpdir=module.tmpdir, user=params['login_user'],
                        password=params['login_password'], host=params['login_host'], port=params['login_port'],
                        unix_socket=params['login_unix_socket'])
        with client:
            result = run(client, state=params['state'], path=params['path'], release=params['release'],
                         allow_irreversible=params['allow_irreversible'], dump=params['dump'], force=params['force'],
                         check_mode=module.check_mode, guard=params['guard'], restore_db=params['restore_db'],
                         dumps_dir=params['dumps_dir'])
    except MigrateError as exc:
        failed.update(exc.details)
        module.fail_json(msg=exc.msg, **failed)
    except OSError as exc:
        module.fail_json(msg='migrate failed on database %s: %s' % (params['database'], exc), **failed)

    exit_with_result(module, result)


if __name__ == '__main__':
    main()
