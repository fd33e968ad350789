# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The ssh scenario reaches its host through a jump host (ProxyJump), like a server behind a bastion."""

from __future__ import annotations


def test_this_session_came_through_the_jump_host(host):
    # sshd's view of this very session: "client-ip client-port server-ip server-port". Through the
    # jump host (the container on 127.0.0.1:2223, which forwards to its own 127.0.0.1:22) the
    # client is 127.0.0.1; a direct connection would come from the Docker bridge instead.
    fields = host.check_output('echo "$SSH_CONNECTION"').split()
    client, server, port = fields[0], fields[2], fields[3]
    assert (client, server, port) == ('127.0.0.1', '127.0.0.1', '22')


def test_the_playbooks_came_through_the_jump_host_too(host):
    # the logins of the converge and side_effect runs: the hop to the jump host (from the
    # bridge) and, inside it, the forwarded session (from 127.0.0.1). ControlPersist keeps one
    # master connection for all of them, so each kind may appear once only.
    log = host.check_output('journalctl --no-pager -u ssh -o cat')
    forwarded = [line for line in log.splitlines() if line.startswith('Accepted publickey for root from 127.0.0.1 ')]
    direct = [line for line in log.splitlines()
              if line.startswith('Accepted publickey for root from ') and ' from 127.0.0.1 ' not in line]
    assert len(forwarded) >= 1, log[-3000:]
    assert len(direct) >= 1, log[-3000:]
