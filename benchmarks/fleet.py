# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Benchmark: a fleet deploy and rollback against the same on one host, and the switch spread.

For each round, interleaved so that machine noise hits every size alike, and for each fleet size
(the first N hosts of the inventory, ``--limit``): a one-file-change deploy (the next tag of
``--tags``, one file changed from ``--base``) and a rollback to ``--base``, each timed from the
controller. Then, in runs of
their own (the polling loads the hosts, so it is never part of a timed cost run), the switch
spread: every host's ``/health`` is polled from the controller every 10 ms during a deploy and a
rollback; for each host the first poll that saw the new release (``X-Release``) and the moment of the
switch its history line records (``switched``) are taken, and the spread is the largest minus the
smallest. The hosts' clock offsets against the controller are measured too and printed with the
figure. Prints every run, the medians and the ratios. Not a test: it asserts nothing.

    benchmarks/fleet.py -i INVENTORY --hosts NAME:PORT:CONTAINER ... --tags T1 T2 ... [--sizes 1 3 5] [--rounds 3]

benchmarks/run-fleet sets up the containers and runs this.
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import typing as t

# benchmarks/rollback.py, beside this one
from rollback import timed  # pylint: disable=import-error

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
ROOT = '/srv/www/app'


class Host(t.NamedTuple):
    name: str
    port: int
    container: str


def playbook(inventory: str, name: str, hosts: list[Host], *args: str) -> float:
    """Wall time of one playbook run on ``hosts`` (rollback.timed: the end of its output and an exit when it fails)."""
    return timed(['ansible-playbook', '-i', inventory, '--limit', ':'.join(h.name for h in hosts), '-f', str(max(5, len(hosts))),
                  os.path.join(REPO, 'playbooks', name)] + list(args))


def served_release(port: int, conn: list[http.client.HTTPConnection | None]) -> str | None:
    """The X-Release of one GET /health on 127.0.0.1:port (one kept-alive connection), None on an error."""
    try:
        if conn[0] is None:
            conn[0] = http.client.HTTPConnection('127.0.0.1', port, timeout=2)
        conn[0].request('GET', '/health')
        response = conn[0].getresponse()
        response.read()
        return response.getheader('X-Release')
    except (OSError, http.client.HTTPException):
        if conn[0] is not None:
            conn[0].close()
        conn[0] = None
        return None


class Poller(threading.Thread):
    """Polls one host every 10 ms; ``seen`` is the controller's time.time() of the first answer naming ``release``."""

    def __init__(self, host: Host, release: str, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.host, self.release, self.stop_event = host, release, stop
        self.seen: float | None = None
        self.polls = 0

    def run(self) -> None:
        conn: list[http.client.HTTPConnection | None] = [None]
        while not self.stop_event.is_set() and self.seen is None:
            asked = time.time()
            got = served_release(self.host.port, conn)
            self.polls += 1
            if got == self.release:
                self.seen = asked
                break
            time.sleep(max(0.0, 0.01 - (time.time() - asked)))


def history_switched(host: Host) -> float | None:
    """The ``switched`` moment of the host's last history line, as seconds since the epoch."""
    out = subprocess.run(['docker', 'exec', host.container, 'tail', '-n', '1', ROOT + '/.stagehand/history.jsonl'],
                         stdout=subprocess.PIPE, check=False).stdout
    try:
        stamp = json.loads(out)['switched']
    except (ValueError, KeyError, TypeError):
        return None
    return datetime.datetime.strptime(stamp, '%Y-%m-%dT%H:%M:%S.%fZ').replace(tzinfo=datetime.timezone.utc).timestamp()


def clock_offset(host: Host) -> tuple[float, float]:
    """(offset, uncertainty) in seconds of the host's clock against the controller's, by ``date`` bracketed in time."""
    best: tuple[float, float] | None = None
    for _attempt in range(5):
        before = time.time()
        out = subprocess.run(['docker', 'exec', host.container, 'date', '+%s.%N'], stdout=subprocess.PIPE, check=True).stdout
        after = time.time()
        offset, half = float(out) - (before + after) / 2, (after - before) / 2
        if best is None or half < best[1]:
            best = (offset, half)
    assert best is not None
    return best


def spread_run(inventory: str, name: str, hosts: list[Host], release: str, *args: str) -> dict[str, t.Any]:
    stop = threading.Event()
    pollers = [Poller(host, release, stop) for host in hosts]
    for poller in pollers:
        poller.start()
    seconds = playbook(inventory, name, hosts, *args)
    deadline = time.time() + 15
    while time.time() < deadline and any(p.seen is None for p in pollers):
        time.sleep(0.05)
    stop.set()
    seen = [p.seen for p in pollers]
    switched = [history_switched(h) for h in hosts]
    return {'seconds': seconds,
            'seen_spread_ms': None if None in seen else round((max(seen) - min(seen)) * 1000, 1),  # type: ignore[type-var]
            'switched_spread_ms': None if None in switched else round((max(switched) - min(switched)) * 1000, 1),  # type: ignore[type-var]
            'polls': sum(p.polls for p in pollers)}


def median(values: list[float]) -> float:
    return round(statistics.median(values), 2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('-i', '--inventory', required=True)
    parser.add_argument('--hosts', nargs='+', required=True, help='NAME:HTTP_PORT:CONTAINER, in inventory order')
    parser.add_argument('--tags', nargs='+', required=True, help='one-file-change tags of the app repository, in order')
    parser.add_argument('--sizes', nargs='+', type=int, default=[1, 3, 5])
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--spread-only', action='store_true', help='measure the switch spread only (no cost rounds)')
    parser.add_argument('--base', default='v2', help='the release every host holds; each rollback goes back to it')
    args = parser.parse_args()
    hosts = [Host(n, int(p), c) for n, p, c in (spec.split(':') for spec in args.hosts)]
    sizes = [n for n in args.sizes if n <= len(hosts)]
    tags = list(args.tags)
    if args.spread_only:
        args.rounds = 0
    need = args.rounds * len(sizes) + len(sizes)
    if len(tags) < need:
        raise SystemExit('--tags needs at least %d tags for %d rounds of %s hosts' % (need, args.rounds, sizes))

    for host in hosts:
        offset, half = clock_offset(host)
        print('clock of %s: %+.2f ms against the controller (+/- %.2f ms, half the docker exec round trip)'
              % (host.name, offset * 1000, half * 1000))

    cost: dict[str, dict[int, list[float]]] = {'deploy': {n: [] for n in sizes}, 'rollback': {n: [] for n in sizes}}
    print('\n%-6s %-5s %-10s %8s' % ('round', 'hosts', 'what', 'seconds'))
    for rnd in range(1, args.rounds + 1):
        for n in sizes:
            tag = tags.pop(0)
            seconds = playbook(args.inventory, 'deploy.yml', hosts[:n], '-e', 'version=%s' % tag)
            cost['deploy'][n].append(seconds)
            print('%-6d %-5d %-10s %8.2f' % (rnd, n, 'deploy', seconds))
            # back to the base every host holds, so that every host of the group rolls back to the same release and
            # the next deploy is again a one-file change from what is live
            seconds = playbook(args.inventory, 'rollback.yml', hosts[:n], '-e', 'release=%s' % args.base)
            cost['rollback'][n].append(seconds)
            print('%-6d %-5d %-10s %8.2f' % (rnd, n, 'rollback', seconds))

    print('\nmedians (seconds) and ratios to one host:')
    for what in ('deploy', 'rollback') if args.rounds else ():
        base = median(cost[what][sizes[0]])
        for n in sizes:
            print('  %-9s %d host(s): %7.2f s  %5.2fx' % (what, n, median(cost[what][n]), median(cost[what][n]) / base))

    print('\nswitch spread (each host\'s /health polled every 10 ms from the controller; history "switched"):')
    for n in sizes:
        if n < 2:
            continue
        tag = tags.pop(0)
        deploy = spread_run(args.inventory, 'deploy.yml', hosts[:n], tag, '-e', 'version=%s' % tag)
        rollback = spread_run(args.inventory, 'rollback.yml', hosts[:n], args.base, '-e', 'release=%s' % args.base)
        for what, run in (('deploy', deploy), ('rollback', rollback)):
            print('  %-9s %d hosts: first answer of the new release within %s ms; renames (history) within %s ms; %d polls'
                  % (what, n, run['seen_spread_ms'], run['switched_spread_ms'], run['polls']))
    return 0


if __name__ == '__main__':
    sys.exit(main())
