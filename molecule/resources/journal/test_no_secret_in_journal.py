# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""No secret in the host's systemd journal after the scenario's deploys, rollbacks and migrations.

Shared by the scenarios that deploy with a database password (additional_files_or_dirs in their
molecule.yml). The passwords are read from every deploy root's shared/.env on the host, the
journal is read with every field (-o verbose), and the lock tokens are looked for by their form.
"""

from __future__ import annotations

import re

# A lock token as _lock.new_token makes it, next to the word token (message or journal field).
TOKEN_IN_TEXT = re.compile(r"token\W{1,4}[0-9a-f]{32}", re.I)


def _passwords(host):
    found = set()
    for path in host.check_output('ls -1 /srv/www/*/shared/.env 2>/dev/null || true').split():
        for line in host.file(path).content_string.splitlines():
            name, sep, value = line.partition('=')
            if sep and name.strip() == 'DB_PASSWORD' and value.strip():
                found.add(value.strip().strip('"\''))
    return found


def _journal(host):
    # -a: a field with a newline or a long one in full, not as '[N blob data]'; the short form has
    # one line per message with its sender, the verbose one every journal field of it
    return host.check_output('journalctl --no-pager -a -o short; journalctl --no-pager -a -o verbose')


def test_journal_holds_no_database_password_nor_lock_token(host):
    passwords = _passwords(host)
    assert passwords, 'no DB_PASSWORD found in /srv/www/*/shared/.env: the check would prove nothing'
    journal = _journal(host)
    # the modules did log their invocations: the journal is where a leak would show
    invoked = re.findall(r'ansible-stagehand\.deploy\.(\w+)(?:\[\d+\]:)? Invoked with', journal)
    assert invoked, 'no invocation of a stagehand.deploy module in the journal'
    for password in passwords:
        assert password not in journal, 'the database password reached the journal'
    leaked = TOKEN_IN_TEXT.findall(journal)
    assert not leaked, 'a lock token reached the journal: %r' % leaked[:3]
