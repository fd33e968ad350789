# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The files that tell AWX and ansible-builder what the collection needs (docs/ee.md).

collections/requirements.yml must name the collection and its dependencies as galaxy.yml does;
the execution environment (execution-environment.yml, meta/ee-requirements.txt,
meta/ee-bindep.txt) must hold only what the collection needs at run time, on the ansible-core
that requirements.txt pins. These files are left out of a built collection (galaxy.yml
build_ignore), so the tests skip there.
"""

from __future__ import annotations

import os
import re

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GALAXY = os.path.join(REPO, 'galaxy.yml')
AWX_REQUIREMENTS = os.path.join(REPO, 'collections', 'requirements.yml')
EE = os.path.join(REPO, 'execution-environment.yml')
EE_REQUIREMENTS = os.path.join(REPO, 'meta', 'ee-requirements.txt')
EE_BINDEP = os.path.join(REPO, 'meta', 'ee-bindep.txt')
DEV_REQUIREMENTS = os.path.join(REPO, 'requirements.txt')

# What only development and testing use: never in the execution environment.
DEV_TOOLS = ('molecule', 'pytest', 'testinfra', 'antsibull', 'ansible-lint', 'ansible-builder', 'ansible-navigator',
             'yamllint', 'black')
# Debian Policy 5.6.1: lower case letters, digits, '+', '-' and '.', at least two characters,
# starting with a letter or a digit.
DEBIAN_PACKAGE = re.compile(r'^[a-z0-9][a-z0-9+.-]+$')
# a bindep line: NAME [PROFILES] [VERSION CONSTRAINTS], then an optional comment
BINDEP_LINE = re.compile(r'^(?P<name>\S+)(?:\s+\[(?P<profiles>[^\]]*)\])?(?:\s+(?P<version>[<>=!][^#]*?))?\s*(?:#.*)?$')

pytestmark = pytest.mark.skipif(
    not all(os.path.exists(p) for p in (GALAXY, AWX_REQUIREMENTS, EE, EE_REQUIREMENTS, EE_BINDEP, DEV_REQUIREMENTS)),
    reason='a built collection leaves out galaxy.yml, the EE files and the requirements files (build_ignore)',
)


def load(path):
    with open(path) as f:
        return yaml.safe_load(f)


def requirement_lines(path):
    """The requirement lines of a pip requirements file, without comments and blank lines."""
    with open(path) as f:
        lines = [line.split(' #', 1)[0].strip() for line in f]
    return [line for line in lines if line and not line.startswith('#')]


def project_name(requirement):
    """The normalised project name of a requirement line ('Foo_Bar[x]>=1' -> 'foo-bar')."""
    name = re.match(r'^[A-Za-z0-9][A-Za-z0-9._-]*', requirement).group(0)
    return re.sub(r'[-_.]+', '-', name).lower()


def pin(lines, name):
    """The exact version lines pin name to, or None."""
    for line in lines:
        if project_name(line) == name:
            match = re.match(r'^[^=<>!~ ]+\s*==\s*([^\s;]+)', line)
            assert match, 'requirement %r is not pinned with ==' % line
            return match.group(1)
    return None


def bindep_entries():
    entries = []
    with open(EE_BINDEP) as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith('#'):
                continue
            match = BINDEP_LINE.match(line)
            assert match, 'meta/ee-bindep.txt line %d is not a bindep entry: %r' % (number, line)
            entries.append((number, match.group('name'), (match.group('profiles') or '').split()))
    return entries


# --- collections/requirements.yml ---------------------------------------------------------
def test_awx_requirements_name_the_collection_and_its_dependencies():
    galaxy = load(GALAXY)
    wanted = {'%s.%s' % (galaxy['namespace'], galaxy['name'])} | set(galaxy.get('dependencies') or {})
    named = {entry['name'] for entry in load(AWX_REQUIREMENTS)['collections']}
    assert named == wanted


def test_awx_requirements_versions_agree_with_galaxy_yml():
    galaxy = load(GALAXY)
    wanted = dict(galaxy.get('dependencies') or {})
    wanted['%s.%s' % (galaxy['namespace'], galaxy['name'])] = '>=' + galaxy['version']
    for entry in load(AWX_REQUIREMENTS)['collections']:
        assert entry.get('version') == wanted[entry['name']], entry
        assert entry.get('type', 'galaxy') == 'galaxy', entry


# --- execution-environment.yml and meta/ee-requirements.txt ------------------------------
def test_ee_python_requirements_hold_no_development_tool():
    ee = load(EE)
    lines = requirement_lines(EE_REQUIREMENTS)
    assert ee['dependencies']['python'] == 'meta/ee-requirements.txt'
    for line in lines + [ee['dependencies']['ansible_core']['package_pip'], ee['dependencies']['ansible_runner']['package_pip']]:
        assert not any(tool in project_name(line) for tool in DEV_TOOLS), line


def test_ee_pins_the_ansible_core_and_runner_of_requirements_txt():
    dev = requirement_lines(DEV_REQUIREMENTS)
    core = pin(dev, 'ansible-core')
    assert core
    ee = load(EE)
    assert ee['dependencies']['ansible_core']['package_pip'] == 'ansible-core==' + core
    assert pin(requirement_lines(EE_REQUIREMENTS), 'ansible-core') == core
    assert ee['dependencies']['ansible_runner']['package_pip'] == 'ansible-runner==' + pin(dev, 'ansible-runner')
    # the ansible package that carries community.mysql is the one development uses
    assert pin(requirement_lines(EE_REQUIREMENTS), 'ansible') == pin(dev, 'ansible')


def test_ee_installs_the_locally_built_collection_without_galaxy():
    ee = load(EE)
    assert ee['version'] == 3
    assert ee['images']['base_image']['name'] == 'stagehand/debian:bookworm'
    collections = ee['dependencies']['galaxy']['collections']
    assert [entry['type'] for entry in collections] == ['file']
    assert os.path.basename(collections[0]['name']) == 'stagehand-deploy.tar.gz'
    files = {os.path.basename(entry['src']): entry['dest'] for entry in ee['additional_build_files']}
    assert files['stagehand-deploy.tar.gz'] == 'collections'
    # the dependencies come from PyPI (community.mysql in the ansible package), not from Galaxy
    assert '--no-deps' in ee['build_arg_defaults']['ANSIBLE_GALAXY_CLI_COLLECTION_OPTS']


def test_ee_files_are_left_out_of_the_built_collection():
    ignored = load(GALAXY)['build_ignore']
    for pattern in ('execution-environment.yml', 'meta/ee-*', 'collections', 'requirements*.txt', 'requirements.lock'):
        assert pattern in ignored


# --- meta/ee-bindep.txt --------------------------------------------------------------------
def test_bindep_entries_are_debian_package_names():
    entries = bindep_entries()
    assert entries
    for number, name, profiles in entries:
        assert DEBIAN_PACKAGE.match(name), 'meta/ee-bindep.txt line %d: %r is not a Debian package name' % (number, name)
        assert profiles, 'meta/ee-bindep.txt line %d: %s names no platform profile' % (number, name)
        assert all(p.startswith(('platform:', '!platform:')) for p in profiles), (number, profiles)


def test_bindep_declares_what_the_controller_runs():
    debian = {name for _number, name, profiles in bindep_entries() if 'platform:dpkg' in profiles}
    # compose: git; builds: composer on php-cli; connection and signing: openssh-client
    assert {'git', 'php-cli', 'composer', 'openssh-client'} <= debian
    # nothing of the collection runs rsync or the MariaDB client on the controller
    assert not debian & {'rsync', 'mariadb-client', 'default-mysql-client'}
