# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Benchmark: deploying a 10,000-file app, stagehand.deploy against a baseline and the floor.

Five cases, each timed (wall time of ansible-playbook) and counted (bytes that reached the host):

    (a) first deploy of v1 into an empty deploy root
    (b) redeploy of v1 (the same version again)
    (c) deploy of v2 after v1 (v2 = v1 + one changed file)
    (d) rollback to v1
    (e) deploy of v3 after the rollback (v3 = v1 + 100 changed files, 1 %): in slots mode the first case
        that patches a slot holding content IN PLACE (slot b, which holds v2); no target, shown for that

for each way of deploying:

    releases   playbooks/deploy.yml and playbooks/rollback.yml (rollback to the previous release)
    slots      the same with deploy_mode=slots
    artifact   releases mode deploying prebuilt artifacts instead of git versions: -e artifact=DIR/artifacts/<v>.tar.gz
               (git archive of the version, made once, untimed, as a CI pipeline would hand it over)
    baseline   benchmarks/baseline/deploy.yml (community.general.deploy_helper + ansible.posix.synchronize
               of the whole tree, then finalize) and benchmarks/baseline/rollback.yml -e release=<the release
               live before (c)>
    rsynccopy  benchmarks/baseline/rsync-copy.yml -e version=<v>: the rsync-copy strategy of the most used
               rsync-based deploy roles (synchronize into shared/cached-copy, cp -a of it into the release,
               the symlink), and the same rollback
    rsyncart   the same fed the artifacts of the artifact mode (-e artifact=...): the baseline of that mode

plus the floor (benchmarks/floor.yml: one trivial module on the same host over the same SSH settings).
The runs are interleaved: in every repetition each case runs the floor and every way of deploying in
turn (the order rotates from one repetition to the next), so machine noise hits all alike. Every
deploy root is emptied (untimed) at the start of a repetition. Then, once per way of deploying, the
disk used by an extra release: du of the deploy root before and after deploying v3 (v1 with 1 % of
the files changed) next to v1, hardlinked files counted once, against du of the v1 tree alone.

Bytes: the receive counter of the container's network interface (eth0, read with docker exec before
and after each run, outside the timing). It counts every byte that reaches the host from the
controller: SSH (and rsync over SSH) with its encryption and framing, TCP/IP headers, module payloads
and files. The transmit counter (host to controller) is printed too.

Controller CPU: user + system seconds of ansible-playbook and everything it ran on the controller
(getrusage of the children), beside the wall time.

Prints every run, the medians, the ratios against the targets and the disk figures. Not a test: it
asserts nothing and only reports. A way of deploying whose run fails is reported (with the end of its
log) and left out of the remaining runs.

    benchmarks/delta.py -i INVENTORY --container NAME --work DIR [--reps 5] [--modes releases slots baseline rsynccopy ...]

DIR holds vars-<mode>.yml (extra variables of each way of deploying, with stagehand_app = the mode
name, so its deploy root is /srv/www/<mode>) and app-repo (benchmarks/gen-app), and gets logs/.
benchmarks/run-delta sets all of that up and runs this.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
MODES = ('releases', 'slots', 'artifact', 'baseline', 'rsynccopy', 'rsyncart')
BASELINES = ('baseline', 'rsynccopy', 'rsyncart')
# the rsync-copy baseline each way of deploying of stagehand.deploy is held to
RSYNC_BASELINE = {'releases': 'rsynccopy', 'slots': 'rsynccopy', 'artifact': 'rsyncart'}
CASES = (
    ('a', 'first deploy of v1'),
    ('b', 'redeploy of v1'),
    ('c', 'deploy v2 (1 file changed)'),
    ('d', 'rollback to v1'),
    ('e', 'deploy v3 (100 files changed)'),
)
CASE_IDS = tuple(case for case, label in CASES)
TARGET_REDEPLOY = 1.5     # (b) <= 1.5 x floor
TARGET_SPEEDUP = 3.0      # (c) >= 3 x faster than the baseline
TARGET_ROLLBACK = 1.3     # (d) <= 1.3 x floor
TARGET_DISK = 0.05        # extra release with 1 % of the files changed <= 5 % of a full copy


@dataclasses.dataclass
class Run:
    """One timed run of ansible-playbook: wall time, bytes received and sent by the host, success, log file,
    controller CPU seconds (user + system)."""

    seconds: float
    received: int
    sent: int
    ok: bool
    log: str
    cpu: float = 0.0


class Bench:
    """The test bed: inventory, container, work directory."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.inventory = args.inventory
        self.container = args.container
        self.work = args.work
        self.extra: list[str] = []
        for item in args.extra_vars:
            self.extra += ['-e', item]
        self.logs = os.path.join(self.work, 'logs')
        os.makedirs(self.logs, exist_ok=True)
        self.count = 0

    def docker(self, script: str) -> str:
        """Run a shell script in the container (untimed) and return its output."""
        proc = subprocess.run(['docker', 'exec', self.container, 'sh', '-c', script],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
        if proc.returncode != 0:
            raise SystemExit('docker exec %s failed: %s\n%s' % (self.container, script, proc.stderr.decode('utf-8', 'replace')))
        return proc.stdout.decode('utf-8', 'replace').strip()

    def counters(self) -> tuple[int, int]:
        """(bytes received, bytes sent) by the container's eth0 so far."""
        rx_bytes, tx_bytes = self.docker('cat /sys/class/net/eth0/statistics/rx_bytes /sys/class/net/eth0/statistics/tx_bytes').split()
        return int(rx_bytes), int(tx_bytes)

    def playbook(self, mode: str | None, playbook: str, *args: str) -> list[str]:
        """The ansible-playbook command line of playbook, with the variables of mode (none for the floor)."""
        cmd = ['ansible-playbook', '-i', self.inventory]
        if mode:
            cmd += ['-e', '@' + os.path.join(self.work, 'vars-%s.yml' % mode)]
        return cmd + ['-e', 'deploy_repo=' + os.path.join(self.work, 'app-repo')] + self.extra + [playbook] + list(args)

    def run(self, label: str, cmd: list[str]) -> Run:
        """Run cmd once: wall time, and the bytes counted on the host's eth0 before and after (outside the timing)."""
        self.count += 1
        log = os.path.join(self.logs, '%03d-%s.log' % (self.count, label))
        before = self.counters()
        with open(log, 'wb') as handle:
            handle.write(('$ ' + ' '.join(cmd) + '\n').encode())
            handle.flush()
            usage = resource.getrusage(resource.RUSAGE_CHILDREN)
            started = time.monotonic()
            proc = subprocess.run(cmd, cwd=REPO, stdout=handle, stderr=subprocess.STDOUT, check=False)
            elapsed = time.monotonic() - started
            used = resource.getrusage(resource.RUSAGE_CHILDREN)
        after = self.counters()
        cpu = (used.ru_utime - usage.ru_utime) + (used.ru_stime - usage.ru_stime)
        return Run(elapsed, after[0] - before[0], after[1] - before[1], proc.returncode == 0, log, cpu)

    @staticmethod
    def root(mode: str) -> str:
        """The deploy root of mode (stagehand_app is the mode name)."""
        return '/srv/www/' + mode

    def reset(self, mode: str) -> None:
        """Empty the deploy root of mode, as provisioning leaves it (untimed)."""
        root = self.root(mode)
        self.docker('rm -rf {0} && mkdir -p {0}/shared/storage && chown www-data:www-data {0}/shared/storage '
                    '&& chmod 0775 {0}/shared/storage'.format(root))

    def live(self, mode: str) -> str:
        """Name of what current points at (a release, or a slot)."""
        return os.path.basename(self.docker('readlink %s/current' % self.root(mode)))

    def disk_kib(self, path: str) -> int:
        """Disk used under path in KiB (du: every hardlinked file counted once)."""
        return int(self.docker('du -sk %s' % path).split()[0])


def command(bench: Bench, mode: str, case: str, previous: dict[str, str], version: str | None = None) -> list[str]:
    """The command line of one run: mode floor, releases, slots or baseline; case a to d (or version given)."""
    if mode == 'floor':
        return bench.playbook(None, os.path.join(HERE, 'floor.yml'))
    version = version or {'a': 'v1', 'b': 'v1', 'c': 'v2', 'e': 'v3'}.get(case)
    if mode in ('rsynccopy', 'rsyncart'):
        if version and mode == 'rsyncart':
            return bench.playbook(mode, os.path.join(HERE, 'baseline', 'rsync-copy.yml'),
                                  '-e', 'artifact=' + os.path.join(bench.work, 'artifacts', version + '.tar.gz'))
        if version:
            return bench.playbook(mode, os.path.join(HERE, 'baseline', 'rsync-copy.yml'), '-e', 'version=' + version)
        return bench.playbook(mode, os.path.join(HERE, 'baseline', 'rollback.yml'), '-e', 'release=' + previous[mode])
    if mode == 'baseline':
        if version:
            return bench.playbook(mode, os.path.join(HERE, 'baseline', 'deploy.yml'), '-e', 'version=' + version)
        return bench.playbook(mode, os.path.join(HERE, 'baseline', 'rollback.yml'), '-e', 'release=' + previous[mode])
    if version and mode == 'artifact':
        return bench.playbook(mode, 'playbooks/deploy.yml', '-e', 'artifact=' + os.path.join(bench.work, 'artifacts', version + '.tar.gz'))
    if version:
        return bench.playbook(mode, 'playbooks/deploy.yml', '-e', 'version=' + version)
    return bench.playbook(mode, 'playbooks/rollback.yml')


def tail(path: str, lines: int = 25) -> str:
    """The last lines of a log file."""
    with open(path, 'rb') as handle:
        return b''.join(handle.readlines()[-lines:]).decode('utf-8', 'replace')


def kib(count: float) -> str:
    """Bytes as KiB, for the tables."""
    return '%.0f KiB' % (count / 1024.0)


def verdict(ok: bool) -> str:
    """Whether a target is met, in words."""
    return 'met' if ok else 'NOT met'


def measure(bench: Bench, modes: list[str], reps: int) -> tuple[dict[tuple[str, str], list[Run]], dict[str, str]]:
    """Run the interleaved loop; returns the runs per (case, mode) and the failures per mode."""
    runs: dict[tuple[str, str], list[Run]] = {}
    failed: dict[str, str] = {}
    print('%3s  %-4s %-9s %9s  %12s  %12s' % ('rep', 'case', 'who', 'seconds', 'to host', 'from host'))
    for rep in range(reps):
        active = [mode for mode in modes if mode not in failed]
        for mode in active:
            bench.reset(mode)
        order = ['floor'] + active
        shift = rep % len(order)
        order = order[shift:] + order[:shift]
        previous: dict[str, str] = {}
        for case in CASE_IDS:
            for who in order:
                if who in failed:
                    continue
                if case == 'c' and who != 'floor':
                    previous[who] = bench.live(who)
                result = bench.run('%d%s-%s' % (rep + 1, case, who), command(bench, who, case, previous))
                if not result.ok:
                    failed[who] = 'rep %d case (%s) failed, log %s:\n%s' % (rep + 1, case, result.log, tail(result.log))
                    print('%3d  (%s)  %-9s    FAILED (log %s): left out from now on' % (rep + 1, case, who, result.log))
                    if who == 'floor':
                        raise SystemExit('the floor failed:\n' + tail(result.log))
                    continue
                runs.setdefault((case, who), []).append(result)
                print('%3d  (%s)  %-9s %9.2f  %12s  %12s' % (rep + 1, case, who, result.seconds, kib(result.received), kib(result.sent)))
            sys.stdout.flush()
    return runs, failed


def disk(bench: Bench, modes: list[str]) -> dict[str, tuple[int, int, int, Run]]:
    """Per mode: (full copy KiB, extra KiB for v3 next to v1, KiB received for v3, run)."""
    figures: dict[str, tuple[int, int, int, Run]] = {}
    for mode in modes:
        bench.reset(mode)
        first = bench.run('disk-v1-' + mode, command(bench, mode, 'a', {}))
        if not first.ok:
            print('disk %-9s FAILED deploying v1 (log %s)' % (mode, first.log))
            continue
        root = bench.root(mode)
        full = bench.disk_kib(bench.docker('readlink -f %s/current' % root))
        before = bench.disk_kib(root)
        second = bench.run('disk-v3-' + mode, command(bench, mode, 'a', {}, version='v3'))
        if not second.ok:
            print('disk %-9s FAILED deploying v3 (log %s)' % (mode, second.log))
            continue
        after = bench.disk_kib(root)
        figures[mode] = (full, after - before, second.received, second)
        print('disk %-9s v1 tree %7d KiB, deploy root %7d KiB -> %7d KiB with v3: +%d KiB (%.1f %% of a full copy), '
              '%s to the host for v3 in %.2f s'
              % (mode, full, before, after, after - before, 100.0 * (after - before) / full, kib(second.received), second.seconds))
    return figures


def median_of(runs: dict[tuple[str, str], list[Run]], case: str, mode: str, attr: str = 'seconds') -> float | None:
    """Median of one figure (seconds, received, sent) of the runs of case by mode, None without runs."""
    found = runs.get((case, mode))
    return statistics.median(getattr(run, attr) for run in found) if found else None


def tables(runs: dict[tuple[str, str], list[Run]], modes: list[str], floor: float) -> None:
    """Print the medians: wall time with the ratio to the floor, and bytes that reached the host."""
    floor_runs = [run for case in CASE_IDS for run in runs.get((case, 'floor'), [])]
    print()
    print('median wall time in seconds (ratio to the floor, %.2f s, median of %d runs)' % (floor, len(floor_runs)))
    print('%-30s' % 'case' + ''.join('%18s' % mode for mode in modes))
    for case, title in CASES:
        cells = [median_of(runs, case, mode) for mode in modes]
        print('%-30s' % ('(%s) %s' % (case, title))
              + ''.join('%18s' % ('-' if value is None else '%.2f (%.1fx)' % (value, value / floor)) for value in cells))
    print()
    print('median bytes that reached the host (eth0 of the container; the floor: %s)'
          % kib(statistics.median(run.received for run in floor_runs)))
    print('%-30s' % 'case' + ''.join('%18s' % mode for mode in modes))
    for case, title in CASES:
        cells = [median_of(runs, case, mode, 'received') for mode in modes]
        print('%-30s' % ('(%s) %s' % (case, title)) + ''.join('%18s' % ('-' if value is None else kib(value)) for value in cells))
    print()
    print('median controller CPU seconds (user + system of ansible-playbook and what it ran on the controller)')
    print('%-30s' % 'case' + ''.join('%18s' % mode for mode in modes))
    for case, title in CASES:
        cells = [median_of(runs, case, mode, 'cpu') for mode in modes]
        print('%-30s' % ('(%s) %s' % (case, title)) + ''.join('%18s' % ('-' if value is None else '%.2f' % value) for value in cells))


def targets(runs: dict[tuple[str, str], list[Run]], modes: list[str], floor: float,
            figures: dict[str, tuple[int, int, int, Run]]) -> None:
    """Print the ratios against the targets of the issue."""
    print()
    print('targets')
    baseline_c = median_of(runs, 'c', 'baseline')
    for mode in [mode for mode in modes if mode not in BASELINES]:
        redeploy, changed, rollback = (median_of(runs, case, mode) for case in 'bcd')
        if redeploy is not None:
            ratio = redeploy / floor
            print('  %-9s (b) redeploy / floor:         %6.3f  (target <= %.1f)  %s'
                  % (mode, ratio, TARGET_REDEPLOY, verdict(ratio <= TARGET_REDEPLOY)))
        if changed is not None and baseline_c is not None:
            ratio = baseline_c / changed
            print('  %-9s (c) baseline / 1-file deploy: %6.3f  (target >= %.1f)  %s'
                  % (mode, ratio, TARGET_SPEEDUP, verdict(ratio >= TARGET_SPEEDUP)))
        if rollback is not None:
            ratio = rollback / floor
            print('  %-9s (d) rollback / floor:         %6.3f  (target <= %.1f)  %s'
                  % (mode, ratio, TARGET_ROLLBACK, verdict(ratio <= TARGET_ROLLBACK)))
    for mode in [mode for mode in modes if RSYNC_BASELINE.get(mode) in modes]:
        against = RSYNC_BASELINE[mode]
        for case, title in CASES:
            mine, theirs = median_of(runs, case, mode), median_of(runs, case, against)
            if mine is None or theirs is None:
                continue
            want = TARGET_SPEEDUP if case == 'c' else 1.0
            print('  %-9s (%s) %s / %s: %6.3f  (target %s %.1f)  %s'
                  % (mode, case, against, mode, theirs / mine, '>=' if case == 'c' else '>', want,
                     verdict(theirs / mine >= want if case == 'c' else theirs / mine > want)))
    for mode, figure in figures.items():
        full, extra = figure[0], figure[1]
        ratio = extra / full
        target = '  (target <= %.0f %%)  %s' % (100 * TARGET_DISK, verdict(ratio <= TARGET_DISK)) if mode not in BASELINES else ''
        print('  %-9s disk per extra release (1 %% of the files changed): %d KiB of %d KiB = %.1f %%%s'
              % (mode, extra, full, 100.0 * ratio, target))


def main() -> int:
    """Warm up, run the interleaved loop, measure the disk, print the medians and the ratios."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('-i', '--inventory', required=True)
    parser.add_argument('--container', required=True, help='name of the docker container behind the inventory host')
    parser.add_argument('--work', required=True, help='directory with vars-<mode>.yml and app-repo; gets logs/')
    parser.add_argument('--reps', type=int, default=5)
    parser.add_argument('--modes', nargs='+', choices=MODES, default=[mode for mode in MODES if mode not in ('artifact', 'rsyncart')],
                        help='ways of deploying (default: all but artifact and rsyncart, which need DIR/artifacts/v1..v3.tar.gz)')
    parser.add_argument('--no-disk', action='store_true', help='skip the disk measurement')
    parser.add_argument('-e', '--extra-vars', action='append', default=[])
    args = parser.parse_args()
    bench = Bench(args)

    # warm-up: the SSH control socket, caches on both ends
    warm = bench.run('warm-up-floor', command(bench, 'floor', 'a', {}))
    if not warm.ok:
        raise SystemExit('the floor failed:\n' + tail(warm.log))
    print('modes: %s; %d repetitions; logs in %s' % (', '.join(args.modes), args.reps, bench.logs))
    runs, failed = measure(bench, list(args.modes), args.reps)
    modes = [mode for mode in args.modes if any(key[1] == mode for key in runs)]
    print()
    figures = {} if args.no_disk else disk(bench, [mode for mode in args.modes if mode not in failed])
    floor = statistics.median(run.seconds for case in CASE_IDS for run in runs.get((case, 'floor'), []))
    tables(runs, modes, floor)
    targets(runs, modes, floor, figures)
    for mode, why in failed.items():
        print()
        print('%s FAILED at %s' % (mode, why))
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
