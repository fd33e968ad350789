# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Issue 11, defect 8: a missing hook file is named before the lock is taken, not found after the release went live."""

from __future__ import annotations

from ansible_collections.stagehand.deploy.plugins.lookup import hook_files
from ansible_collections.stagehand.deploy.plugins.module_utils._hooks import hook_file_problems, hook_files_message


def test_every_missing_hook_file_is_named_with_its_hook_point(tmp_path):
    (tmp_path / 'warm.yml').write_text('---\n')
    (tmp_path / 'adir.yml').mkdir()
    hooks = {'before_switch': ['warm.yml', 'gone.yml'], 'stop': str(tmp_path / 'abs-missing.yml'), 'refresh': '',
             'after_stage': [], 'prepare': 'adir.yml', 'start': None}
    assert hook_file_problems(hooks, str(tmp_path)) == [
        'before_switch: %r does not exist' % str(tmp_path / 'gone.yml'),
        'stop: %r does not exist' % str(tmp_path / 'abs-missing.yml'),
        'prepare: %r is not a file' % str(tmp_path / 'adir.yml'),
    ]
    msg = hook_files_message(hooks, str(tmp_path))
    assert msg.startswith('3 hook file(s) cannot be run: before_switch: ')
    assert 'deploy_hooks_dir %r' % str(tmp_path) in msg and 'nothing was locked or changed' in msg


def test_a_trailing_newline_in_a_hook_path_is_visible(tmp_path):
    (tmp_path / 'warm.yml').write_text('---\n')
    msg = hook_files_message({'after_switch': 'warm.yml\n'}, str(tmp_path))
    assert "'%s/warm.yml\\n' does not exist" % tmp_path in msg


def test_no_problem_no_message(tmp_path):
    (tmp_path / 'warm.yml').write_text('---\n')
    assert hook_files_message({'before_switch': 'warm.yml', 'after_switch': [['warm.yml']]}, str(tmp_path)) == ''
    assert hook_files_message({}, str(tmp_path)) == ''


def test_the_lookup_returns_the_message(tmp_path):
    plugin = hook_files.LookupModule()
    options = {'hooks': {'before_stage': 'nope.yml'}, 'hooks_dir': str(tmp_path)}
    plugin.set_options = lambda var_options=None, direct=None: None
    plugin.get_option = options.__getitem__
    [msg] = plugin.run([], {})
    assert "before_stage: '%s/nope.yml' does not exist" % tmp_path in msg
