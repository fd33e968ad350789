# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Benchmark: wall time of playbooks/rollback.yml against the floor (one trivial module).

Both run side by side in one run, interleaved, against the same host over SSH, so machine
noise hits both alike. Each rollback really switches: the target alternates between two
releases that must already be deployed (default v1 and v2). Prints every run, the medians
and the ratio rollback / floor. Not a test: it asserts nothing and only reports.
With --with-db-check, rollback.yml -e deploy_rollback_fast=false (the rollback that asks the
database, which is what every rollback did before the fast path) is timed in the same loop too.

    benchmarks/rollback.py -i INVENTORY [--reps 9] [--releases v1 v2] [--with-db-check] [-e key=value ...]

benchmarks/run-rollback sets up its own container and runs this.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def timed(cmd: list[str]) -> float:
    started = time.monotonic()
    proc = subprocess.run(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)
    elapsed = time.monotonic() - started
    if proc.returncode != 0:
        sys.stdout.write(proc.stdout.decode('utf-8', 'replace')[-4000:])
        raise SystemExit('command failed (%d): %s' % (proc.returncode, ' '.join(cmd)))
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('-i', '--inventory', required=True)
    parser.add_argument('--reps', type=int, default=9)
    parser.add_argument('--releases', nargs=2, default=['v1', 'v2'])
    parser.add_argument('-e', '--extra-vars', action='append', default=[])
    parser.add_argument('--with-db-check', action='store_true',
                        help='also time rollback.yml -e deploy_rollback_fast=false (the database-checked rollback)')
    args = parser.parse_args()

    extra: list[str] = []
    for item in args.extra_vars:
        extra += ['-e', item]
    base = ['ansible-playbook', '-i', args.inventory] + extra
    floor_cmd = base + [os.path.join(HERE, 'floor.yml')]
    # warm-up: SSH control socket, fact-free caches, first switch to a known state
    timed(floor_cmd)
    timed(base + ['playbooks/rollback.yml', '-e', 'release=%s' % args.releases[0]])

    floors: list[float] = []
    rollbacks: list[float] = []
    checked: list[float] = []
    header = '%4s  %10s  %12s' % ('run', 'floor (s)', 'rollback (s)')
    print(header + ('  %14s' % 'db-checked (s)' if args.with_db_check else '') + '  rolled back to')
    for rep in range(args.reps):
        target = args.releases[(rep + 1) % 2]
        floors.append(timed(floor_cmd))
        rollbacks.append(timed(base + ['playbooks/rollback.yml', '-e', 'release=%s' % target]))
        line = '%4d  %10.2f  %12.2f' % (rep + 1, floors[-1], rollbacks[-1])
        if args.with_db_check:
            # there and back again, so that the fast runs keep alternating
            checked.append(timed(base + ['playbooks/rollback.yml', '-e', 'release=%s' % args.releases[rep % 2],
                                         '-e', 'deploy_rollback_fast=false']))
            timed(base + ['playbooks/rollback.yml', '-e', 'release=%s' % target])
            line += '  %14.2f' % checked[-1]
        print(line + '  ' + target)
    floor = statistics.median(floors)
    rollback = statistics.median(rollbacks)
    print()
    print('median floor (one trivial module):  %.2f s' % floor)
    print('median rollback.yml:                %.2f s' % rollback)
    if args.with_db_check:
        median_checked = statistics.median(checked)
        print('median rollback.yml, db-checked:    %.2f s  (ratio %.2f)' % (median_checked, median_checked / floor))
    print('ratio rollback / floor:             %.2f  (target <= 1.3)' % (rollback / floor))
    return 0


if __name__ == '__main__':
    sys.exit(main())
