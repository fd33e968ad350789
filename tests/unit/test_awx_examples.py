# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The AWX examples (examples/awx): survey specs, the credential type, the job templates and the workflow.

AWX cannot run here (it needs Kubernetes), so the files are held to the rules AWX applies when they are imported
(the survey checks of its API, the credential type's injector rendering, the workflow graph) and to what the deploy
role accepts (meta/argument_specs.yml, defaults/main.yml, the release name rule of module_utils/_names.py). The two
playbooks of the workflow's own nodes (recover.yml, verdict.yml) are run for real on local hosts, through
ansible-runner, which collects their set_stats data the way AWX does.
Each validator is also given a broken example, to prove that it reports it.
"""

from __future__ import annotations

import ast
import copy
import glob
import json
import os
import re
import subprocess
import sys
import typing as t

from types import SimpleNamespace

import pytest
import yaml

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from jinja2 import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

import ansible_collections.stagehand.deploy as collection

from ansible_collections.stagehand.deploy.plugins.module_utils._cleanup import DEFAULT_KEEP, CleanupError, check_keep
from ansible_collections.stagehand.deploy.plugins.module_utils._names import (
    ALLOWED_DESCRIPTION, MAX_NAME_LENGTH, is_release_name,
)
from ansible_collections.stagehand.deploy.tests.unit.conftest import snapshot_tree
from ansible_collections.stagehand.deploy.tests.unit.releases import write_release

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = os.path.join(REPO, 'examples', 'awx')
# this collection, then the collections of the caller (scripts/minimum-core runs an older core that lacks
# the "ansible" package and names where ansible.posix is)
COLLECTIONS = os.pathsep.join([os.path.dirname(os.path.dirname(os.path.dirname(list(collection.__path__)[0])))]
                              + [path for path in os.environ.get('ANSIBLE_COLLECTIONS_PATH', '').split(os.pathsep) if path])
PLAYBOOK = os.path.join(os.path.dirname(sys.executable), 'ansible-playbook')

# what AWX's survey API accepts (JobTemplateSurveySpec.ALLOWED_TYPES): question type -> type of its default
SURVEY_TYPES: dict[str, type | tuple[type, ...]] = {
    'text': str, 'textarea': str, 'password': str, 'multiplechoice': str, 'multiselect': str, 'integer': int, 'float': float,
}
# the argument_specs types a survey answer of each question type can become
ANSWER_TYPES = {
    'text': ('str', 'raw'), 'textarea': ('str', 'raw'), 'password': ('str', 'raw'), 'integer': ('int', 'float', 'raw'),
    'float': ('float', 'raw'), 'multiselect': ('list', 'raw'), 'multiplechoice': ('str', 'bool', 'int', 'float', 'raw'),
}
# the release name rule, tried on names that pass and names that do not
NAME_SAMPLES = ['v1.4.0', 'release_2026-01-02', '-dash', '0', 'a' * MAX_NAME_LENGTH, 'a' * (MAX_NAME_LENGTH + 1),
                '', '.hidden', 'a/b', 'v1 2', 'v1\n', '\u00e9', '..', 'x;y']


def load_yaml(path: str) -> t.Any:
    with open(path, encoding='utf-8') as f:
        return yaml.safe_load(f)


def load_json(path: str) -> t.Any:
    with open(path, encoding='utf-8') as f:
        return json.load(f)


ARGUMENT_SPECS = load_yaml(os.path.join(REPO, 'roles', 'deploy', 'meta', 'argument_specs.yml'))['argument_specs']
DEFAULTS = load_yaml(os.path.join(REPO, 'roles', 'deploy', 'defaults', 'main.yml'))


def short_names() -> dict[str, str]:
    """The variables the role's defaults read into its own (``deploy_keep: "{{ keep | default(5) }}"``: keep -> deploy_keep)."""
    names = {}
    for option, value in DEFAULTS.items():
        match = re.match(r'\{\{\s*([a-z_][a-z0-9_]*)\s*\|\s*default\(', value) if isinstance(value, str) else None
        if match and match.group(1) not in DEFAULTS:
            names[match.group(1)] = option
    return names


SHORT_NAMES = short_names()


def role_option(variable: str, entry_point: str) -> str | None:
    """The option of ``entry_point`` that ``variable`` sets (itself or through the defaults), or None."""
    options = ARGUMENT_SPECS[entry_point]['options']
    if variable in options:
        return variable
    option = SHORT_NAMES.get(variable)
    return option if option in options else None


def option_problem(option: str, entry_point: str, value: t.Any) -> str:
    """Why ``value`` does not pass the option's type and choices, as the role's argument validation checks them, or ''."""
    spec = ARGUMENT_SPECS[entry_point]['options'][option]
    result = ArgumentSpecValidator({option: spec}).validate({option: copy.deepcopy(value)})
    return '; '.join(result.error_messages)


def quoted_regex(text: str) -> str | None:
    match = re.search(r'regular expression (\S+?)\)?[;.,]?(?:\s|$)', text)
    return match.group(1) if match else None


def release_name_problems(where: str, question: dict[str, t.Any]) -> list[str]:
    """A question naming a release: its limits, its text and its regular expression follow _names.py's rule."""
    problems = []
    text = question.get('question_description', '')
    if question.get('max') != MAX_NAME_LENGTH:
        problems.append('%s: max %r is not the longest release name, %d' % (where, question.get('max'), MAX_NAME_LENGTH))
    want_min = 1 if question['required'] else 0   # an optional answer may be empty
    if question.get('min') != want_min:
        problems.append('%s: min %r should be %d (%s)' % (where, question.get('min'), want_min,
                                                          'required' if question['required'] else 'empty means none'))
    if ALLOWED_DESCRIPTION not in text:
        problems.append('%s: the description does not state the rule %r' % (where, ALLOWED_DESCRIPTION))
    regex = quoted_regex(text)
    if regex is None:
        problems.append('%s: the description gives no regular expression' % where)
    else:
        for name in NAME_SAMPLES:
            if bool(re.fullmatch(regex, name)) != is_release_name(name):
                problems.append('%s: the regular expression %s and the rule disagree on %r' % (where, regex, name))
    default = question.get('default', '')
    if default != '' and not is_release_name(default):
        problems.append('%s: the default %r is not a release name' % (where, default))
    return problems


def question_problems(where: str, question: dict[str, t.Any]) -> tuple[list[str], list[t.Any]]:
    """What AWX's survey API refuses in one question (its keys, type, limits, choices and default), and the answers the
    playbook may then get: the default, or every choice."""
    problems = []
    for key, want in (('question_name', str), ('variable', str), ('required', bool), ('type', str)):
        if not isinstance(question[key], want):
            problems.append('%s: %s is not a %s' % (where, key, want.__name__))
    if not isinstance(question.get('question_description', ''), str):
        problems.append('%s: question_description is not a string' % where)
    qtype = question['type']
    if qtype not in SURVEY_TYPES:
        return problems + ['%s: type %r is not one of %s' % (where, qtype, ', '.join(SURVEY_TYPES))], []
    for key in ('min', 'max'):
        if question.get(key) is not None and (not isinstance(question[key], int) or isinstance(question[key], bool)):
            problems.append('%s: %s is not an integer' % (where, key))
    default = question.get('default')
    if default not in (None, '') and (not isinstance(default, SURVEY_TYPES[qtype]) or isinstance(default, bool)):
        problems.append('%s: default %r is not of the type of a %s question' % (where, default, qtype))
    if qtype not in ('multiplechoice', 'multiselect'):
        low, high = question.get('min'), question.get('max')
        size = len(default) if isinstance(default, str) else default
        if default is not None and ((low is not None and size < low) or (high is not None and size > high)):
            problems.append('%s: default %r is outside min %r and max %r (AWX would drop it)' % (where, default, low, high))
        return problems, [] if default is None else [default]
    choices = question.get('choices')
    if isinstance(choices, str):
        choices = [choice for choice in choices.splitlines() if choice.strip()]
    if not isinstance(choices, list) or not choices or not all(isinstance(choice, str) for choice in choices):
        return problems + ['%s: no choices (a list of strings)' % where], []
    defaults = [] if default in (None, '') else (default.splitlines() if isinstance(default, str) else default)
    if qtype == 'multiplechoice' and len(defaults) > 1:
        problems.append('%s: more than one default' % where)
    if any(item not in choices for item in defaults):
        problems.append('%s: default %r is not one of the choices %s' % (where, default, choices))
    return problems, [[choice] for choice in choices] if qtype == 'multiselect' else list(choices)


def answer_problems(where: str, question: dict[str, t.Any], answers: list[t.Any], entry_point: str) -> list[str]:
    """What the deploy role's ``entry_point`` refuses: an unknown variable, a type or an answer its option does not take,
    and, for the options with a rule of their own, what the rule says."""
    option = role_option(question['variable'], entry_point)
    if option is None:
        return ['%s: variable %r is not accepted by the entry point %r of the deploy role' % (where, question['variable'], entry_point)]
    problems = []
    option_type = ARGUMENT_SPECS[entry_point]['options'][option].get('type', 'str')
    if option_type not in ANSWER_TYPES.get(question['type'], ()):
        problems.append('%s: a %s answer cannot be the %s option %s' % (where, question['type'], option_type, option))
    for answer in answers:
        problem = option_problem(option, entry_point, answer)
        if problem:
            problems.append('%s: %r is refused by %s: %s' % (where, answer, option, problem))
    if option == 'deploy_release':
        problems.extend(release_name_problems(where, question))
    if option == 'deploy_version' and ALLOWED_DESCRIPTION not in question.get('question_description', ''):
        problems.append('%s: the description does not say when the version names the release (%s)' % (where, ALLOWED_DESCRIPTION))
    if option == 'deploy_keep':
        problems.extend(keep_problems(where, question))
    return problems


def survey_problems(survey: t.Any, entry_point: str) -> list[str]:
    """Everything AWX's survey API would refuse in ``survey``, and every answer the role's ``entry_point`` would refuse."""
    if not isinstance(survey, dict):
        return ['the survey spec is not a JSON object']
    problems = ['%r is missing or not a %s' % (key, want.__name__)
                for key, want in (('name', str), ('description', str), ('spec', list)) if not isinstance(survey.get(key), want)]
    if problems:
        return problems
    if not survey['spec']:
        problems.append("'spec' has no question")
    seen: set[str] = set()
    for index, question in enumerate(survey['spec']):
        missing = [key for key in ('type', 'question_name', 'variable', 'required') if key not in question] \
            if isinstance(question, dict) else ['everything: it is not a JSON object']
        if missing:
            problems.append('question %d lacks %s' % (index, ', '.join(missing)))
            continue
        where = 'question %d (%s)' % (index, question['variable'])
        if question['variable'] in seen:
            problems.append('%s: variable used twice' % where)
        seen.add(question['variable'])
        found, answers = question_problems(where, question)
        problems.extend(found)
        if question['type'] in SURVEY_TYPES:
            problems.extend(answer_problems(where, question, answers, entry_point))
    return problems


def keep_problems(where: str, question: dict[str, t.Any]) -> list[str]:
    """The number of releases to keep: the default and the lowest answer are what the cleanup module accepts."""
    problems = []
    for what in ('default', 'min'):
        try:
            check_keep(question.get(what))
        except CleanupError as exc:
            problems.append('%s: %s: %s' % (where, what, exc.msg))
    if isinstance(question.get('min'), int):
        try:
            check_keep(question['min'] - 1)
            problems.append('%s: min %d lets through a number the cleanup refuses' % (where, question['min']))
        except CleanupError:
            pass
    return problems


def configure_play() -> dict[str, t.Any]:
    plays = load_yaml(os.path.join(EXAMPLES, 'configure.yml'))
    assert isinstance(plays, list) and len(plays) == 1, 'configure.yml: one play expected'
    return plays[0]


def module_task(play: dict[str, t.Any], module: str) -> dict[str, t.Any]:
    tasks = [task for task in play['tasks'] if module in task]
    assert len(tasks) == 1, 'configure.yml: one %s task expected, found %d' % (module, len(tasks))
    return tasks[0]


def role_imports(tasks: list[dict[str, t.Any]]) -> t.Iterator[dict[str, t.Any]]:
    """The arguments of every import_role/include_role of ``tasks``, blocks included."""
    for task in tasks or []:
        args = task.get('ansible.builtin.import_role') or task.get('ansible.builtin.include_role')
        if args:
            yield args
        for section in ('block', 'rescue', 'always'):
            yield from role_imports(task.get(section, []))


def entry_point_of(playbook: str) -> str | None:
    """The deploy role's entry point a playbook of the project runs (import_role of stagehand.deploy.deploy), or None."""
    found = [os.path.splitext(args.get('tasks_from', 'main'))[0]
             for play in load_yaml(os.path.join(REPO, playbook))
             for section in ('pre_tasks', 'tasks', 'post_tasks')
             for args in role_imports(play.get(section, [])) if args.get('name') == 'stagehand.deploy.deploy']
    assert len(set(found)) <= 1, '%s runs several entry points: %s' % (playbook, found)
    return found[0] if found else None


def lookup_file(expression: str) -> str:
    match = re.search(r"lookup\('ansible\.builtin\.file', '([^']+)'\)", expression)
    assert match, 'no file lookup in %r' % expression
    return match.group(1)


def job_templates() -> dict[str, dict[str, t.Any]]:
    templates = {}
    for template in configure_play()['vars']['stagehand_awx_job_templates']:
        assert template['name'] not in templates, 'job template %r defined twice' % template['name']
        templates[template['name']] = template
    return templates


def job_template_problems(templates: dict[str, dict[str, t.Any]]) -> list[str]:
    problems = []
    for name, template in templates.items():
        if not os.path.isfile(os.path.join(REPO, template['playbook'])):
            problems.append('%s: playbook %s is not in the project' % (name, template['playbook']))
            continue
        if 'survey' in template:
            path = os.path.join(EXAMPLES, template['survey'])
            if not os.path.isfile(path):
                problems.append('%s: survey %s does not exist' % (name, template['survey']))
                continue
            entry_point = entry_point_of(template['playbook'])
            if entry_point is None:
                problems.append('%s: %s does not run the deploy role, its survey answers go nowhere' % (name, template['playbook']))
                continue
            problems.extend('%s: %s' % (template['survey'], problem) for problem in survey_problems(load_json(path), entry_point))
    return problems


def workflow_problems(nodes: list[dict[str, t.Any]], templates: dict[str, dict[str, t.Any]]) -> list[str]:
    """The graph: every link and template exists, no cycle, and deploy -> (failure) recover -> status -> verdict."""
    problems = []
    by_id = {}
    for node in nodes:
        if node['identifier'] in by_id:
            problems.append('node %s defined twice' % node['identifier'])
        by_id[node['identifier']] = node
    links = {}
    for ident, node in by_id.items():
        name = node.get('unified_job_template', {}).get('name')
        if name not in templates or node['unified_job_template'].get('type') != 'job_template':
            problems.append('node %s: %r is not one of the job templates' % (ident, name))
        related = node.get('related', {})
        for kind in related:
            if kind not in ('success_nodes', 'failure_nodes', 'always_nodes'):
                problems.append('node %s: unknown link %s' % (ident, kind))
        links[ident] = {kind: [child['identifier'] for child in related.get(kind) or []]
                        for kind in ('success_nodes', 'failure_nodes', 'always_nodes')}
        for child in sum(links[ident].values(), []):
            if child not in by_id:
                problems.append('node %s: links to %s, which is not a node' % (ident, child))
    if problems:
        return problems

    def playbook(ident: str) -> str:
        return templates[by_id[ident]['unified_job_template']['name']]['playbook']

    def children(ident: str, *kinds: str) -> list[str]:
        return [child for kind in kinds for child in links[ident][kind]]

    def reaches(start: str, seen: tuple[str, ...] = ()) -> set[str]:
        if start in seen:
            raise ValueError('a cycle through %s' % ' -> '.join(seen + (start,)))
        found = {start}
        for child in children(start, 'success_nodes', 'failure_nodes', 'always_nodes'):
            found |= reaches(child, seen + (start,))
        return found

    try:
        for ident in by_id:
            reaches(ident)
    except ValueError as exc:
        return [str(exc)]
    roots = set(by_id) - {child for ident in by_id for child in children(ident, 'success_nodes', 'failure_nodes', 'always_nodes')}
    deploys = [ident for ident in roots if playbook(ident) == 'playbooks/deploy.yml']
    if len(deploys) != 1 or len(roots) != 1:
        return problems + ['the workflow must start with one node, the deploy; roots: %s' % sorted(roots)]
    deploy = deploys[0]
    recovers = [child for child in children(deploy, 'failure_nodes', 'always_nodes') if entry_point_of(playbook(child)) == 'rollback']
    if not recovers:
        problems.append('the deploy node has no failure path to a rollback')
    if any(entry_point_of(playbook(child)) == 'rollback' for child in children(deploy, 'success_nodes')):
        problems.append('the deploy node rolls back on success')
    status_after = {child for child in children(deploy, 'success_nodes') if playbook(child) == 'playbooks/status.yml'}
    if not status_after:
        problems.append('no status after a deploy that succeeded')
    for recover in recovers:
        if not {child for child in children(recover, 'always_nodes') if playbook(child) == 'playbooks/status.yml'}:
            problems.append('no status, always, after the rollback node %s' % recover)
    for status in status_after:
        leaves = sorted(ident for ident in reaches(status) if not children(ident, 'success_nodes', 'failure_nodes', 'always_nodes'))
        if [playbook(leaf) for leaf in leaves] != ['examples/awx/verdict.yml'] or not all(
                ident == status or playbook(ident) != 'playbooks/deploy.yml' for ident in reaches(status)):
            problems.append('after the status the workflow must end with the verdict (verdict.yml), found %s' % leaves)
        elif status not in {parent for parent in by_id if leaves[0] in children(parent, 'always_nodes')}:
            problems.append('the verdict must follow the status on an always link')
    return problems


def credential_type_problems(ctype: dict[str, t.Any]) -> list[str]:
    """The inputs and injectors of the credential type, rendered as AWX renders them, give the role's variables."""
    problems = []
    if ctype.get('kind') not in ('cloud', 'net'):
        problems.append('kind %r: a custom credential type is cloud or net' % ctype.get('kind'))
    fields = ctype.get('inputs', {}).get('fields', [])
    ids = [field.get('id') for field in fields]
    if sorted(ids) != ['db_password', 'signing_key'] or len(set(ids)) != len(ids):
        problems.append('inputs: db_password and signing_key expected, got %s' % ids)
    for field in fields:
        if field.get('type') != 'string' or not field.get('label') or field.get('secret') is not True:
            problems.append('input %s: a secret string with a label expected' % field.get('id'))
    if not set(ctype.get('inputs', {}).get('required', [])) <= set(ids):
        problems.append('inputs: required names an unknown field')
    injectors = ctype.get('injectors', {})
    if not set(injectors) <= {'env', 'extra_vars', 'file'}:
        problems.append('injectors: unknown kind in %s' % sorted(injectors))
    for variable in injectors.get('extra_vars', {}):
        if role_option(variable, 'main') is None:
            problems.append('injectors: extra var %s is not a variable of the deploy role' % variable)
    env = ImmutableSandboxedEnvironment()
    for given in ({'db_password': 's3cret "x"', 'signing_key': 'KEY\n'}, {'db_password': 's3cret'}):
        # AWX: only the inputs that are set, and tower.filename.<label> for each file template.<label>
        files = {label.split('.', 1)[1]: '/runner/env/tmp_%s' % label.split('.', 1)[1] for label in injectors.get('file', {})}
        namespace = dict(given, tower=SimpleNamespace(filename=SimpleNamespace(**files)))
        try:
            rendered = {role_option(var, 'main') or var: env.from_string(template).render(**namespace)
                        for var, template in injectors.get('extra_vars', {}).items()}
            written = {label: env.from_string(template).render(**namespace) for label, template in injectors.get('file', {}).items()}
        except TemplateError as exc:
            problems.append('injectors do not render with %s: %s' % (sorted(given), exc))
            continue
        if rendered.get('deploy_db_password') != given['db_password']:
            problems.append('with %s the role gets deploy_db_password %r' % (sorted(given), rendered.get('deploy_db_password')))
        want_key = files.get('signing_key') if 'signing_key' in given else ''
        if rendered.get('deploy_signing_key') != want_key:
            problems.append('with %s the role gets deploy_signing_key %r, not %r' % (sorted(given), rendered.get('deploy_signing_key'), want_key))
        if 'signing_key' in given and written.get('template.signing_key') != given['signing_key']:
            problems.append('the signing key file does not hold the key')
    return problems


# ---------------------------------------------------------------- the files


def test_every_json_and_yaml_file_parses():
    paths = sorted(glob.glob(os.path.join(EXAMPLES, '**', '*'), recursive=True))
    parsed = [path for path in paths if path.endswith('.json')] + [path for path in paths if path.endswith(('.yml', '.yaml'))]
    assert len(parsed) >= 7, paths
    for path in parsed:
        data = load_json(path) if path.endswith('.json') else load_yaml(path)
        assert isinstance(data, (dict, list)) and data, path


def test_every_survey_is_used_and_valid():
    templates = job_templates()
    assert job_template_problems(templates) == []
    workflow = module_task(configure_play(), 'awx.awx.workflow_job_template')['awx.awx.workflow_job_template']
    used = {template['survey'] for template in templates.values() if 'survey' in template} | {lookup_file(workflow['survey_spec'])}
    on_disk = {os.path.relpath(path, EXAMPLES) for path in glob.glob(os.path.join(EXAMPLES, 'surveys', '*.json'))}
    assert used == on_disk == {'surveys/deploy.json', 'surveys/rollback.json', 'surveys/cleanup.json'}
    # the workflow's answers reach every node, as extra vars; the deploy node is the one that reads them
    assert survey_problems(load_json(os.path.join(EXAMPLES, lookup_file(workflow['survey_spec']))), 'main') == []


@pytest.mark.parametrize('survey, entry_point, variables', [
    ('deploy.json', 'main', {'version': 'deploy_version', 'release': 'deploy_release',
                             'allow_irreversible': 'deploy_allow_irreversible', 'restore_db': 'deploy_restore_db'}),
    ('rollback.json', 'rollback', {'release': 'deploy_release', 'restore_db': 'deploy_restore_db'}),
    ('cleanup.json', 'cleanup', {'keep': 'deploy_keep'}),
])
def test_a_survey_asks_what_its_playbook_takes_on_the_command_line(survey, entry_point, variables):
    spec = load_json(os.path.join(EXAMPLES, 'surveys', survey))
    assert survey_problems(spec, entry_point) == []
    assert {question['variable']: role_option(question['variable'], entry_point) for question in spec['spec']} == variables


def test_the_release_name_questions_follow_the_rule_of_the_code():
    questions = [question for survey in ('deploy.json', 'rollback.json')
                 for question in load_json(os.path.join(EXAMPLES, 'surveys', survey))['spec'] if question['variable'] == 'release']
    assert len(questions) == 2
    for question in questions:
        assert release_name_problems('release', question) == []
        regex = quoted_regex(question['question_description'])
        assert [name for name in NAME_SAMPLES if re.fullmatch(regex, name)] == [name for name in NAME_SAMPLES if is_release_name(name)]
        assert (question['min'], question['max'], question['required'], question['default']) == (0, MAX_NAME_LENGTH, False, '')
    keep = load_json(os.path.join(EXAMPLES, 'surveys', 'cleanup.json'))['spec'][0]
    assert keep['default'] == DEFAULT_KEEP and keep['min'] == 1


def test_the_credential_type_gives_the_role_its_password_and_signing_key():
    ctype = load_json(os.path.join(EXAMPLES, 'credential_type.json'))
    assert ctype['name'] == 'Stagehand deploy secrets'
    assert credential_type_problems(ctype) == []
    # stagehand_db_password feeds the deploy role and the provision playbook alike
    assert SHORT_NAMES['stagehand_db_password'] == 'deploy_db_password'
    with open(os.path.join(REPO, 'playbooks', 'provision.yml'), encoding='utf-8') as f:
        assert 'stagehand_db_password is defined' in f.read()


def test_the_job_templates_and_the_workflow():
    play = configure_play()
    templates = job_templates()
    assert {template['playbook'] for template in templates.values()} >= {
        'playbooks/deploy.yml', 'playbooks/rollback.yml', 'playbooks/cleanup.yml', 'playbooks/status.yml'}
    assert play['vars']['stagehand_awx_ee'] == 'stagehand-ee'
    for variable in play['vars']['stagehand_awx_extra_vars']:
        assert role_option(variable, 'main') == variable and role_option(variable, 'rollback') == variable
    workflow = module_task(play, 'awx.awx.workflow_job_template')['awx.awx.workflow_job_template']
    assert workflow_problems(workflow['workflow_nodes'], templates) == []
    job_template = module_task(play, 'awx.awx.job_template')['awx.awx.job_template']
    assert job_template['execution_environment'] == '{{ stagehand_awx_ee }}'
    assert 'item.survey' in job_template['survey_spec'] and job_template['survey_enabled'] == '{{ item.survey is defined }}'
    ctype = module_task(play, 'awx.awx.credential_type')
    assert lookup_file(ctype['vars']['stagehand_awx_credential_type']) == 'credential_type.json'
    project = module_task(play, 'awx.awx.project')['awx.awx.project']
    assert project['scm_type'] == 'git' and project['default_environment'] == '{{ stagehand_awx_ee }}'


def awx_module_options(module: str) -> dict[str, t.Any] | None:
    """The options of an awx.awx module, from its DOCUMENTATION, or None when the collection is not installed."""
    for top in sys.path:
        path = os.path.join(top, 'ansible_collections', 'awx', 'awx', 'plugins', 'modules', module + '.py')
        if os.path.isfile(path):
            with open(path, encoding='utf-8') as f:
                tree = ast.parse(f.read())
            for node in tree.body:
                if isinstance(node, ast.Assign) and getattr(node.targets[0], 'id', '') == 'DOCUMENTATION':
                    return yaml.safe_load(ast.literal_eval(node.value))['options']
    return None


def option_name_problems(args: dict[str, t.Any], options: dict[str, t.Any], where: str) -> list[str]:
    problems = []
    for key, value in args.items():
        names = dict(options)
        names.update({alias: spec for spec in options.values() for alias in spec.get('aliases') or []})
        if key not in names:
            problems.append('%s: %s is not an option' % (where, key))
        elif isinstance(value, dict) and names[key].get('suboptions'):
            problems.extend(option_name_problems(value, names[key]['suboptions'], '%s.%s' % (where, key)))
        elif isinstance(value, list) and names[key].get('suboptions'):
            for index, item in enumerate(value):
                if isinstance(item, dict):
                    problems.extend(option_name_problems(item, names[key]['suboptions'], '%s.%s[%d]' % (where, key, index)))
    return problems


def test_configure_uses_the_awx_modules_with_their_options():
    options = awx_module_options('job_template')
    if options is None:
        pytest.skip('the awx.awx collection is not installed (PyPI\'s ansible package carries it)')
    problems = []
    for task in configure_play()['tasks']:
        modules = [key for key in task if '.' in key]
        assert len(modules) == 1 and modules[0].startswith(('awx.awx.', 'ansible.builtin.')), task
        if modules[0].startswith('awx.awx.'):
            options = awx_module_options(modules[0].split('.')[2])
            assert options is not None, modules[0]
            problems.extend(option_name_problems(task[modules[0]], options, task['name']))
    assert problems == []
    # the checker itself: a misspelt option is caught
    assert option_name_problems({'survey_enable': True}, awx_module_options('job_template'), 'x') == ['x: survey_enable is not an option']


def test_configure_passes_a_syntax_check():
    done = subprocess.run([PLAYBOOK, '--syntax-check', os.path.join(EXAMPLES, 'configure.yml'), os.path.join(EXAMPLES, 'recover.yml'),
                           os.path.join(EXAMPLES, 'verdict.yml')],
                          env=dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS, ANSIBLE_NOCOLOR='1'), cwd=REPO,
                          capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0 and "couldn't resolve module/action 'awx.awx." in done.stdout + done.stderr:
        pytest.skip('the awx.awx collection is not installed (PyPI\'s ansible package carries it)')
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize('with_key', [True, False])
def test_configure_renders_what_it_sends_to_awx(tmp_path, with_key):
    """configure.yml run with each awx.awx task turned into a debug of its arguments: every template renders, the
    surveys and the credential type reach AWX as in their files (the injectors' templates untouched), and the
    credential gets the secrets."""
    for name in ('surveys', 'credential_type.json'):   # what its file lookups read, beside it
        os.symlink(os.path.join(EXAMPLES, name), str(tmp_path / name))
    play = copy.deepcopy(configure_play())
    for task in play['tasks']:
        module = next(key for key in task if key.startswith('awx.awx.'))
        task['ansible.builtin.debug'] = {'msg': dict(task.pop(module), module=module)}
        task.pop('no_log', None)
    (tmp_path / 'configure.yml').write_text(yaml.safe_dump([play]))
    (tmp_path / 'key').write_text('-----BEGIN OPENSSH PRIVATE KEY-----\nxyz\n-----END OPENSSH PRIVATE KEY-----\n')
    done = subprocess.run([PLAYBOOK, '-i', 'localhost,', str(tmp_path / 'configure.yml'),
                           '-e', 'stagehand_awx_db_password=s3cret'] + (['-e', 'stagehand_awx_signing_key_file=%s' % (tmp_path / 'key')] if with_key else []),
                          env=dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS, ANSIBLE_STDOUT_CALLBACK='ansible.posix.json',
                                   ANSIBLE_HOME=str(tmp_path / 'home')),
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    sent: dict[str, list[dict[str, t.Any]]] = {}
    for task in json.loads(done.stdout)['plays'][0]['tasks']:
        result = task['hosts']['localhost']
        for item in result.get('results', [result]):
            if not item.get('skipped'):
                sent.setdefault(item['msg']['module'], []).append(item['msg'])
    assert 'awx.awx.execution_environment' not in sent   # no image given: it must exist
    templates = {args['name']: args for args in sent['awx.awx.job_template']}
    assert set(templates) == set(job_templates())
    for name, template in job_templates().items():
        args = templates[name]
        assert (args['playbook'], args['execution_environment'], args['limit']) == (template['playbook'], 'stagehand-ee', 'web')
        assert args['credentials'] == ['Stagehand deploy user', 'Stagehand shop secrets']
        assert args['extra_vars'] == {'deploy_hooks_dir': '/runner/project/examples/inventory'}
        assert args['survey_enabled'] is ('survey' in template)
        if 'survey' in template:
            assert args['survey_spec'] == load_json(os.path.join(EXAMPLES, template['survey']))
        else:   # omitted (ansible-core 2.19 drops the key, older ones leave the placeholder)
            assert str(args.get('survey_spec', '__omit_place_holder__')).startswith('__omit_place_holder__')
    [workflow] = sent['awx.awx.workflow_job_template']
    assert workflow['survey_spec'] == load_json(os.path.join(EXAMPLES, 'surveys', 'deploy.json'))
    assert {node['unified_job_template']['organization']['name'] for node in workflow['workflow_nodes']} == {'Default'}
    [ctype] = sent['awx.awx.credential_type']
    want = load_json(os.path.join(EXAMPLES, 'credential_type.json'))
    assert {key: ctype[key] for key in ('name', 'kind', 'inputs', 'injectors')} == {key: want[key] for key in ('name', 'kind', 'inputs', 'injectors')}
    assert ctype['injectors']['extra_vars']['stagehand_db_password'] == '{{ db_password }}'
    [credential] = sent['awx.awx.credential']
    assert credential['credential_type'] == 'Stagehand deploy secrets'
    assert credential['inputs'] == dict({'db_password': 's3cret'}, **({'signing_key': (tmp_path / 'key').read_text()} if with_key else {}))
    [source] = sent['awx.awx.inventory_source']
    assert (source['source'], source['source_path'], source['source_project']) == ('scm', 'examples/inventory/production.yml', 'Stagehand deploy')


# ---------------------------------------------------------------- the validators catch what they should

def test_the_survey_validator_reports_what_awx_or_the_role_would_refuse():
    good = load_json(os.path.join(EXAMPLES, 'surveys', 'deploy.json'))
    assert survey_problems(good, 'main') == []

    def broken(index: int, **change: t.Any) -> list[str]:
        spec = copy.deepcopy(good)
        spec['spec'][index].update(change)
        return survey_problems(spec, 'main')

    assert broken(0, variable='deploy_versoin') == [
        "question 0 (deploy_versoin): variable 'deploy_versoin' is not accepted by the entry point 'main' of the deploy role"]
    assert survey_problems(good, 'cleanup')[0].endswith("variable 'version' is not accepted by the entry point 'cleanup' of the deploy role")
    assert broken(0, type='string') == ["question 0 (version): type 'string' is not one of text, textarea, password, multiplechoice, "
                                        "multiselect, integer, float"]
    assert broken(2, default='maybe') == ["question 2 (allow_irreversible): default 'maybe' is not one of the choices ['false', 'true']"]
    assert 'is refused by deploy_allow_irreversible' in broken(2, choices=['false', 'true', 'maybe'])[0]
    assert broken(1, max=200) == ['question 1 (release): max 200 is not the longest release name, 128']
    assert broken(1, min=1) == ["question 1 (release): default '' is outside min 1 and max 128 (AWX would drop it)",
                                'question 1 (release): min 1 should be 0 (empty means none)']
    assert broken(1, question_description='Any name.') == [
        "question 1 (release): the description does not state the rule %r" % ALLOWED_DESCRIPTION,
        'question 1 (release): the description gives no regular expression']
    loose = good['spec'][1]['question_description'].replace('{0,127}', '*')
    assert broken(1, question_description=loose) == [
        "question 1 (release): the regular expression ^[A-Za-z0-9_-][A-Za-z0-9._-]*$ and the rule disagree on %r" % ('a' * 129)]
    assert broken(1, default='.hidden') == ["question 1 (release): the default '.hidden' is not a release name"]
    assert broken(1, default=7) == ['question 1 (release): default 7 is not of the type of a text question',
                                    'question 1 (release): the default 7 is not a release name']
    assert broken(3, type='integer', default=1) == ['question 3 (restore_db): a integer answer cannot be the bool option deploy_restore_db']
    assert broken(0, required='yes') == ['question 0 (version): required is not a bool']
    assert survey_problems({'name': 'x', 'spec': []}, 'main') == ["'description' is missing or not a str"]
    duplicate = copy.deepcopy(good)
    duplicate['spec'].append(copy.deepcopy(good['spec'][0]))
    assert survey_problems(duplicate, 'main') == ['question 4 (version): variable used twice']
    keep = load_json(os.path.join(EXAMPLES, 'surveys', 'cleanup.json'))
    keep['spec'][0].update(min=0, default=0)
    assert survey_problems(keep, 'cleanup') == [
        'question 0 (keep): default: keep 0 is invalid: use a whole number of releases >= 1 (default 5)',
        'question 0 (keep): min: keep 0 is invalid: use a whole number of releases >= 1 (default 5)']


def test_the_other_validators_report_a_broken_example():
    templates = job_templates()
    workflow = module_task(configure_play(), 'awx.awx.workflow_job_template')['awx.awx.workflow_job_template']
    nodes = [node for node in copy.deepcopy(workflow['workflow_nodes']) if node['identifier'] != 'recover']
    nodes[0]['related']['failure_nodes'] = [{'identifier': 'status'}]
    assert workflow_problems(nodes, templates) == ['the deploy node has no failure path to a rollback']
    nodes = copy.deepcopy(workflow['workflow_nodes'])
    nodes[1]['related']['always_nodes'] = [{'identifier': 'deploy'}]
    assert any(problem.startswith('a cycle through') for problem in workflow_problems(nodes, templates))
    nodes = copy.deepcopy(workflow['workflow_nodes'])
    nodes[2]['related'] = {'success_nodes': nodes[2]['related']['always_nodes']}
    assert workflow_problems(nodes, templates) == ['the verdict must follow the status on an always link']
    nodes = copy.deepcopy(workflow['workflow_nodes'])
    nodes[2]['related']['always_nodes'].append({'identifier': 'cleanup'})
    nodes.append({'identifier': 'cleanup', 'unified_job_template': {'name': 'Stagehand cleanup', 'type': 'job_template'}})
    assert workflow_problems(nodes, templates) == [
        "after the status the workflow must end with the verdict (verdict.yml), found ['cleanup', 'verdict']"]
    nodes = copy.deepcopy(workflow['workflow_nodes'])
    nodes[1]['unified_job_template']['name'] = 'Stagehand rollback'
    assert workflow_problems(nodes, templates) == []   # the plain rollback is a rollback too: recover.yml is checked below
    bad = dict(templates)
    bad['Stagehand cleanup'] = dict(bad['Stagehand cleanup'], playbook='playbooks/clean.yml')
    bad['Stagehand rollback'] = dict(bad['Stagehand rollback'], survey='surveys/rolback.json')
    assert job_template_problems(bad) == ['Stagehand rollback: survey surveys/rolback.json does not exist',
                                          'Stagehand cleanup: playbook playbooks/clean.yml is not in the project']
    ctype = load_json(os.path.join(EXAMPLES, 'credential_type.json'))
    ctype['injectors']['extra_vars']['deploy_db_passwd'] = ctype['injectors']['extra_vars'].pop('stagehand_db_password')
    assert credential_type_problems(ctype) == [
        'injectors: extra var deploy_db_passwd is not a variable of the deploy role',
        "with ['db_password', 'signing_key'] the role gets deploy_db_password None",
        "with ['db_password'] the role gets deploy_db_password None"]
    ctype = load_json(os.path.join(EXAMPLES, 'credential_type.json'))
    ctype['injectors']['extra_vars']['deploy_signing_key'] = '{{ tower.filename.signing_key }}'
    assert credential_type_problems(ctype) == ["with ['db_password'] the role gets deploy_signing_key '/runner/env/tmp_signing_key', not ''"]


# ---------------------------------------------------------------- the workflow's playbooks, run


def run_playbook(tmp_path, playbook: str, extravars: dict[str, t.Any], hosts: t.Sequence[str] = ('web1',)):
    """Run an examples/awx playbook through ansible-runner on local hosts (deploy root <tmp>/<host>, no database and
    no health check): (status, rc, output, the set_stats data, as AWX keeps it for the job's artifacts)."""
    runner = pytest.importorskip('ansible_runner')
    inventory = tmp_path / 'inventory.ini'
    inventory.write_text(''.join('%s ansible_connection=local ansible_python_interpreter=%s deploy_root=%s deploy_migrations=false '
                                 'deploy_health_url=""\n' % (host, sys.executable, tmp_path / host) for host in hosts))
    data = tmp_path / 'runner'
    data.mkdir(exist_ok=True)
    # with a limit, as the job templates have one (a play on localhost would match no host)
    result = runner.run(private_data_dir=str(data), playbook=os.path.join(EXAMPLES, playbook), inventory=str(inventory),
                        extravars=extravars, limit=','.join(hosts), quiet=True,
                        envvars={'ANSIBLE_COLLECTIONS_PATH': COLLECTIONS, 'ANSIBLE_NOCOLOR': '1', 'ANSIBLE_HOME': str(tmp_path / 'home'),
                                 'PATH': os.path.dirname(sys.executable) + os.pathsep + os.environ.get('PATH', '')})
    stats = [event['event_data'].get('artifact_data', {}) for event in result.events if event['event'] == 'playbook_on_stats']
    with open(result.stdout.name, encoding='utf-8') as f:
        out = f.read()
    return result.status, result.rc, out, stats[0] if stats else None


def flat(text: str) -> str:
    """``text`` with each run of white space one space: the callback folds a long message over lines, at a width
    that depends on where it runs."""
    return ' '.join(text.split())


def deploy_root(tmp_path, host: str, live: str | None) -> str:
    """A deploy root where v1 followed v0 and v2 came after; ``current`` -> ``live`` (None: nothing live)."""
    root = tmp_path / host
    root.mkdir()
    write_release(root, 'v0', activated='2026-01-01T00:00:00Z', next='v1')
    write_release(root, 'v1', previous='v0', activated='2026-01-02T00:00:00Z')
    write_release(root, 'v2', previous='v1', status='complete' if live == 'v2' else 'failed')
    if live:
        os.symlink('releases/' + live, str(root / 'current'))
    return str(root)


def results(outcome: str, **previous: str | None) -> dict[str, t.Any]:
    """The deploy's stagehand stats (docs/runner.md) for a deploy of v2 on the hosts of ``previous`` (host -> live before)."""
    same = set(previous.values())
    return {'action': 'deploy', 'outcome': outcome, 'release': 'v2', 'previous': same.pop() if len(same) == 1 else None,
            'message': 'v2: deploy of v2 %s.' % outcome,
            'hosts': {host: {'action': 'deploy', 'outcome': outcome, 'release': 'v2', 'previous': before, 'compose_id': None,
                             'failed_phase': 'switch', 'phases': {}, 'message': 'deploy of v2 %s.' % outcome}
                      for host, before in previous.items()}}


def test_recover_switches_a_host_left_on_the_failed_release_back_and_leaves_out_one_with_nothing_before(tmp_path):
    web1 = deploy_root(tmp_path, 'web1', live='v2')
    web2 = deploy_root(tmp_path, 'web2', live=None)
    untouched = snapshot_tree(web2)
    deploy = results('rolled_back', web1='v1', web2=None)
    # the workflow's survey answer release=v0 reaches this node too: it must not choose the target
    status, rc, out, stats = run_playbook(tmp_path, 'recover.yml', {'stagehand': deploy, 'release': 'v0'}, hosts=('web1', 'web2'))
    assert (status, rc) == ('successful', 0), out
    assert flat('Rolling back to v1, the release live before the deploy of v2: web1.') in flat(out), out
    assert flat('rolled back from v2 to v1 on web1') in flat(out), out
    assert os.readlink(os.path.join(web1, 'current')) == 'releases/v1'
    assert snapshot_tree(web2) == untouched
    assert stats['stagehand_deploy'] == deploy
    assert (stats['stagehand']['action'], stats['stagehand']['outcome'], stats['stagehand']['release']) == ('rollback', 'success', 'v1')
    assert list(stats['stagehand']['hosts']) == ['web1']


def test_recover_only_checks_a_host_the_deploy_switched_back_where_a_plain_rollback_goes_one_further(tmp_path):
    root = deploy_root(tmp_path, 'web1', live='v1')
    deploy = results('rolled_back', web1='v1')
    status, rc, out, stats = run_playbook(tmp_path, 'recover.yml', {'stagehand': deploy})
    assert (status, rc) == ('successful', 0), out
    assert flat('v1 was already live on web1, nothing switched') in flat(out), out
    assert os.readlink(os.path.join(root, 'current')) == 'releases/v1'
    assert stats['stagehand_deploy'] == deploy and stats['stagehand']['outcome'] == 'success'
    # what the rollback job template would do here with its survey's default (no release): v0
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS, ANSIBLE_NOCOLOR='1', ANSIBLE_HOME=str(tmp_path / 'home'))
    done = subprocess.run([PLAYBOOK, '-i', str(tmp_path / 'inventory.ini'), os.path.join(REPO, 'playbooks', 'rollback.yml'), '-e', 'release='],
                          env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0 and 'rolled back from v1 to v0 on web1' in flat(done.stdout), done.stdout + done.stderr


@pytest.mark.parametrize('deploy, said', [
    (results('refused', web1='v1', web2='v1'), 'Nothing to roll back: the deploy of v2 ended refused. v2: deploy of v2 refused.'),
    (results('failed', web1=None, web2=None), 'Nothing to roll back: the deploy of v2 ended failed with nothing live before it.'),
])
def test_recover_changes_nothing_when_nothing_went_live_or_nothing_was_live(tmp_path, deploy, said):
    roots = [deploy_root(tmp_path, 'web1', live='v2'), deploy_root(tmp_path, 'web2', live='v2')]
    before = [snapshot_tree(root) for root in roots]
    status, rc, out, stats = run_playbook(tmp_path, 'recover.yml', {'stagehand': deploy}, hosts=('web1', 'web2'))
    assert (status, rc) == ('successful', 0), out
    assert flat(said) in flat(out), out
    assert [snapshot_tree(root) for root in roots] == before
    assert stats == {'stagehand_deploy': deploy}


@pytest.mark.parametrize('extravars, said', [
    ({}, 'This node needs the results of the deploy job before it'),
    ({'stagehand': {'action': 'status', 'outcome': 'success', 'hosts': {}}}, 'This node needs the results of the deploy job before it'),
    ({'stagehand': results('failed', web1='v1', web2='v0')},
     'The hosts had different releases live before the deploy ({"web1": "v1", "web2": "v0"})'),
])
def test_recover_refuses_what_it_cannot_decide_and_changes_nothing(tmp_path, extravars, said):
    roots = [deploy_root(tmp_path, 'web1', live='v2'), deploy_root(tmp_path, 'web2', live='v2')]
    before = [snapshot_tree(root) for root in roots]
    status, rc, out, stats = run_playbook(tmp_path, 'recover.yml', extravars, hosts=('web1', 'web2'))
    assert (status, rc) == ('failed', 2), out
    assert flat(said) in flat(out), out
    assert [snapshot_tree(root) for root in roots] == before
    assert stats == {'stagehand_deploy': extravars.get('stagehand', {})}


@pytest.mark.parametrize('extravars, ok, said', [
    ({'stagehand': {'action': 'status', 'outcome': 'success'}}, True, 'The deploy succeeded'),
    ({'stagehand_deploy': results('rolled_back', web1='v1'), 'stagehand': {'action': 'status', 'outcome': 'success'}}, False,
     'The deploy job of v2 failed (outcome: rolled_back). v2: deploy of v2 rolled_back.'),
    ({'stagehand_deploy': {}}, False, 'The deploy job of ? failed (outcome: none, it ended before it could report one).'),
])
def test_the_verdict_fails_the_workflow_when_its_deploy_failed(tmp_path, extravars, ok, said):
    status, rc, out, _stats = run_playbook(tmp_path, 'verdict.yml', extravars)
    assert (status == 'successful', rc == 0) == (ok, ok), out
    assert flat(said) in flat(out), out
