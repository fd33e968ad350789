# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Print the figures of the crash and bad-input suites as the tables of docs/reliability.md.

    python3 tests/chaos/report.py .build/chaos
"""

from __future__ import annotations

import collections
import json
import os
import sys


def _lines(path: str) -> list[dict]:
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def _pct(part: int, whole: int) -> str:
    return '%d %%' % round(100.0 * part / whole) if whole else '-'


def _yes(value: bool) -> str:
    return 'yes' if value else 'NO'


def main(work: str) -> int:
    crashes = _lines(os.path.join(work, 'crash.jsonl'))
    if crashes:
        print('Crash suite: %d kills' % len(crashes))
        print('| layout and command | kill | tried | whole release served after the kill | converged on the next run |')
        print('|---|---|---|---|---|')
        groups: dict[tuple[str, str], list[dict]] = collections.defaultdict(list)
        for case in crashes:
            groups[('%s %s' % (case.get('layout', 'releases'), case['command']), case['mode'])].append(case)
        for (command, mode), cases in sorted(groups.items()):
            whole = sum(1 for c in cases if c['whole'])
            converged = sum(1 for c in cases if c['converged'])
            row = (command, mode, len(cases), whole, _pct(whole, len(cases)), converged, _pct(converged, len(cases)))
            print('| %s | %s | %d | %d (%s) | %d (%s) |' % row)
        whole = sum(1 for c in crashes if c['whole'])
        converged = sum(1 for c in crashes if c['converged'])
        row = (len(crashes), whole, _pct(whole, len(crashes)), converged, _pct(converged, len(crashes)))
        print('| all | | %d | %d (%s) | %d (%s) |' % row)
        missed = [c for c in crashes if not (c['whole'] and c['converged'])]
        if missed:
            print()
            print('| layout | command | crash point | kill | whole after the kill | converged |')
            print('|---|---|---|---|---|---|')
            for c in missed:
                row = (c.get('layout', 'releases'), c['command'], c['point'], c['mode'], _yes(c['whole']), _yes(c['converged']))
                print('| %s | %s | %s | %s | %s | %s |' % row)
    bad = _lines(os.path.join(work, 'badinput.jsonl'))
    if bad:
        print()
        print('Bad-input suite: %d inputs' % len(bad))
        print('| kind | tried | refused with a clear message | nothing changed | strictly unchanged (no history line either) |')
        print('|---|---|---|---|---|')
        kinds: dict[str, list[dict]] = collections.defaultdict(list)
        for case in bad:
            kinds[case['kind']].append(case)
        for kind, cases in sorted(kinds.items()) + [('all', bad)]:
            refused = sum(1 for c in cases if c['refused'])
            unchanged = sum(1 for c in cases if c['unchanged'])
            strict = sum(1 for c in cases if c.get('strict', c['unchanged']))
            n = len(cases)
            row = (kind, n, refused, _pct(refused, n), unchanged, _pct(unchanged, n), strict, _pct(strict, n))
            print('| %s | %d | %d (%s) | %d (%s) | %d (%s) |' % row)
        failing = [c for c in bad if not (c['refused'] and c['unchanged'])]
        if failing:
            print()
            print('| kind | case | refused clearly | unchanged | first message | what changed |')
            print('|---|---|---|---|---|---|')
            for c in failing:
                row = (c['kind'], c['case'], _yes(c['refused']), _yes(c['unchanged']), c['message'][:160].replace('|', '/'),
                       '; '.join(c.get('diff') or [])[:300].replace('|', '/'))
                print('| %s | %s | %s | %s | %s | %s |' % row)
    faults = _lines(os.path.join(work, 'faults.jsonl'))
    if faults:
        print()
        print('Faults: %d steps' % len(faults))
        print('| fault | step | rc | as expected (rc, live whole and served, lock free, nothing left) | live before -> after |')
        print('|---|---|---|---|---|')
        for f in faults:
            row = (f['fault'], f['step'], f['rc'], _yes(f['ok']), f['live_before'], f['live_after'])
            print('| %s | %s | %d | %s | %s -> %s |' % row)
    if not crashes and not bad and not faults:
        print('no figures in %s' % work)
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else '.build/chaos'))
