# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Stand-in for get-pip.py, used by ansible-test to bootstrap pip in its venvs.

ansible-test downloads get-pip.py from a host that is not always reachable and
uses a cached copy when one exists. This stand-in installs pip from the pip
wheel stored beside it (taken from PyPI by scripts/lib.sh), then any other
requested packages from the configured index.
"""

import glob
import os
import runpy
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
WHEEL = sorted(glob.glob(os.path.join(HERE, 'pip-24.2-*.whl')))[-1]

args = []
for arg in sys.argv[1:]:
    if arg in ('--no-setuptools', '--no-wheel'):
        continue
    if arg.startswith('pip=='):
        arg = WHEEL
    args.append(arg)

sys.path.insert(0, WHEEL)
sys.argv = ['pip', 'install'] + args
runpy.run_module('pip', run_name='__main__', alter_sys=True)
