# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The test bed of the crash and bad-input suites: one real target container, driven as a user does.

The container is started by scripts/testbed-up under its own name and ports (SSH on
127.0.0.1:2224, HTTP on 127.0.0.1:8082), provisioned once, and every deploy, rollback and cleanup
is a real ``ansible-playbook`` process over SSH. What the host holds is read with ``docker exec``.
Traffic goes only to 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import signal
import subprocess
import time
import typing as t
import urllib.error
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NAME = os.environ.get('STAGEHAND_CHAOS_NAME', 'stagehand-chaos')
SSH_PORT = int(os.environ.get('STAGEHAND_CHAOS_SSH_PORT', '2224'))
HTTP_PORT = int(os.environ.get('STAGEHAND_CHAOS_HTTP_PORT', '8082'))
APP = 'chaos'
ROOT = '/srv/www/chaos'
DB = 'chaos'
# Where a crash point finds what the suite asks of it (_crash.py); /run is a tmpfs of the container.
CRASH_FILE = '/run/stagehand/crash-at'
CHECKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'check_live.py')


class Run(t.NamedTuple):
    rc: int
    output: str
    seconds: float


class Bed:
    """The target container and the controller-side files of the suites."""

    def __init__(self, work: str, name: str = NAME, ssh_port: int = SSH_PORT, http_port: int = HTTP_PORT,
                 extra_vars: dict[str, t.Any] | None = None) -> None:
        self.work = work
        self.name = name
        self.ssh_port = ssh_port
        self.http_port = http_port
        self.extra_vars = dict(extra_vars or {})
        self.cache = os.path.join(REPO, '.cache')
        self.inventory = os.path.join(work, 'inventory.yml')
        self.secrets = os.path.join(work, 'secrets.yml')
        self.repo = os.path.join(work, 'app-repo')
        self.store = os.path.join(work, 'store')
        self.password = 'chaos-' + hashlib.sha256(work.encode()).hexdigest()[:12]
        self.checker_ready = False

    # -- setting up ----------------------------------------------------------
    def start(self) -> None:
        env = dict(os.environ, STAGEHAND_TESTBED_NAME=self.name, STAGEHAND_TESTBED_SSH_PORT=str(self.ssh_port),
                   STAGEHAND_TESTBED_HTTP_PORT=str(self.http_port))
        subprocess.run([os.path.join(REPO, 'scripts', 'testbed-up')], check=True, env=env)
        key = os.path.join(self.cache, 'ssh', 'id_ed25519')
        with open(self.inventory, 'w') as f:
            json.dump({'all': {'hosts': {self.name: {
                'ansible_host': '127.0.0.1', 'ansible_port': self.ssh_port, 'ansible_user': 'root',
                'ansible_ssh_private_key_file': key,
                'ansible_ssh_common_args': '-o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no',
            }}, 'vars': dict({'stagehand_app': APP, 'deploy_repo': self.repo, 'deploy_artifact_store': self.store},
                             **self.extra_vars)}}, f)
        with open(self.secrets, 'w') as f:
            json.dump({'stagehand_db_password': self.password}, f)
        if not os.path.isdir(os.path.join(self.repo, '.git')):
            subprocess.run([os.path.join(REPO, 'tests', 'fixtures', 'make-app-repo'), self.repo], check=True,
                           stdout=subprocess.DEVNULL)
        self.sh('mkdir -p /run/stagehand && chmod 700 /run/stagehand')

    def stop(self) -> None:
        subprocess.run(['docker', 'rm', '-f', self.name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)

    # -- running as a user does ---------------------------------------------
    def command(self, playbook: str, *args: str) -> list[str]:
        return ['ansible-playbook', '-i', self.inventory, '-e', '@' + self.secrets,
                os.path.join(REPO, 'playbooks', playbook)] + list(args)

    def run(self, playbook: str, *args: str, timeout: float = 600) -> Run:
        started = time.monotonic()
        proc = subprocess.run(self.command(playbook, *args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, timeout=timeout, env=self.env(), check=False)
        return Run(proc.returncode, proc.stdout, time.monotonic() - started)

    def start_run(self, playbook: str, *args: str) -> subprocess.Popen[str]:
        """Start a playbook in its own process group (so that the whole controller side can be killed)."""
        return subprocess.Popen(self.command(playbook, *args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, env=self.env(), start_new_session=True)

    @staticmethod
    def kill_run(proc: subprocess.Popen[str]) -> str:
        """SIGKILL the controller: ansible-playbook, its workers and its ssh clients. Returns what it printed."""
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, _err = proc.communicate(timeout=60)
        return out or ''

    @staticmethod
    def env() -> dict[str, str]:
        return dict(os.environ, ANSIBLE_NOCOLOR='1', ANSIBLE_FORCE_COLOR='0', ANSIBLE_HOST_KEY_CHECKING='False',
                    ANSIBLE_STDOUT_CALLBACK='ansible.builtin.default', ANSIBLE_CALLBACK_RESULT_FORMAT='json')

    # -- reading the host ------------------------------------------------------
    def sh(self, command: str, check: bool = True) -> str:
        proc = subprocess.run(['docker', 'exec', self.name, 'sh', '-c', command], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, check=False)
        if check and proc.returncode != 0:
            raise AssertionError('on the host: %s: rc %d: %s' % (command, proc.returncode, proc.stdout))
        return proc.stdout

    def put(self, path: str, data: bytes, mode: int = 0o644) -> None:
        """Write ``data`` to ``path`` on the host (through docker exec: docker cp does not see the tmpfs /run)."""
        subprocess.run(['docker', 'exec', '-i', self.name, 'sh', '-c', 'cat > %s && chmod %o %s' % (shlex.quote(path), mode, shlex.quote(path))],
                       input=data, check=True)

    def put_tree(self, local: str, remote: str) -> None:
        """Copy the directory ``local`` to ``remote`` on the host (replacing it)."""
        packed = subprocess.run(['tar', '-C', local, '-c', '.'], stdout=subprocess.PIPE, check=True).stdout
        subprocess.run(['docker', 'exec', '-i', self.name, 'sh', '-c', 'rm -rf %s && mkdir -p %s && tar -C %s -x'
                        % ((shlex.quote(remote),) * 3)], input=packed, check=True)

    def http(self, path: str = '/') -> tuple[int, str | None]:
        """(status, X-Release) of a GET of the site on its published port, on loopback."""
        try:
            with urllib.request.urlopen('http://127.0.0.1:%d%s' % (self.http_port, path), timeout=10) as resp:
                return resp.status, resp.headers.get('X-Release')
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers.get('X-Release')
        except OSError:
            return 0, None

    def live(self) -> dict[str, t.Any]:
        """What is live: the release ``current`` names and whether every file of it matches its manifest."""
        if not self.checker_ready:
            self.put_tree(os.path.join(REPO, 'plugins', 'module_utils'), '/run/stagehand/lib/module_utils')
            with open(CHECKER, 'rb') as f:
                self.put('/run/stagehand/check_live.py', f.read())
            self.checker_ready = True
        out = self.sh('python3 /run/stagehand/check_live.py %s' % shlex.quote(ROOT))
        return json.loads(out)

    def snapshot(self) -> dict[str, t.Any]:
        """Everything a refused command must leave as it was: the deploy root, the site's answer, the database."""
        tree = self.sh("find %s -printf '%%P %%y %%m %%s %%T@ %%l\\n' | sort" % ROOT)
        digests = self.sh("find %s -type f ! -path '*/.stagehand/lock.guard' -exec md5sum {} + | sort" % ROOT)
        history = self.sh('cat %s/.stagehand/history.jsonl 2>/dev/null || true' % ROOT)
        tables = self.sh("mysql -N -e 'checksum table %s.stagehand_migrations, %s.visits' 2>&1 || true" % (DB, DB))
        top = self.sh('ls -A / /etc /srv/www /tmp')
        # /health: the page / records every visit in the database, which the checksums above would see.
        return {'tree': tree, 'digests': digests, 'history': history, 'database': tables, 'top': top, 'http': self.http('/health')}

    def lock_holder(self) -> str | None:
        out = self.sh('cat %s/.stagehand/lock 2>/dev/null || true' % ROOT).strip()
        return out or None

    # -- crash points ----------------------------------------------------------
    def arm(self, point: str, how: str) -> None:
        """Ask the crash point ``point`` to ``kill`` its process or to ``pause`` until disarmed."""
        self.sh('printf %%s %s > %s; rm -f %s.reached' % (shlex.quote('%s:%s' % (point, how)), CRASH_FILE, CRASH_FILE))

    def disarm(self) -> None:
        self.sh('rm -f %s %s.reached' % (CRASH_FILE, CRASH_FILE))

    def wait_reached(self, timeout: float = 240) -> int | None:
        """The pid of the process paused at the armed point, once it is there; None if it never got there."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = self.sh('cat %s.reached 2>/dev/null || true' % CRASH_FILE).strip()
            if out:
                return int(out)
            time.sleep(0.2)
        return None

    def wait_quiet(self, timeout: float = 60) -> None:
        """Wait until no Ansible module runs on the host any more."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.sh("pgrep -f '[A]nsiballZ_' || true").strip():
                return
            time.sleep(0.3)
        raise AssertionError('an Ansible module still runs on the host after %d s' % timeout)
