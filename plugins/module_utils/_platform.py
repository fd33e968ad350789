# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Platform requirements of a PHP release: composer version constraints, required extensions, the host check.

Constraints follow composer's syntax for the parts a ``php`` requirement uses:
exact versions (``8.2.7``, ``=8.2.7``, ``==8.2.7``), comparisons (``>=``,
``>``, ``<=``, ``<``, ``!=``, ``<>``), wildcards (``8.*``, ``8.2.*``, ``*``),
tilde (``~8.1``, ``~8.1.2``), caret (``^8.1``, ``^0.3``), hyphen ranges
(``8.1 - 8.3``), AND by spaces or commas, OR by ``||`` (or ``|``). A leading
``v`` is allowed; stability suffixes (``-dev``, ``-RC1``, ``@stable``) are
ignored because a host runs a released PHP. Anything else raises
:class:`ConstraintError` naming the constraint and what is supported.

Versions compare as four numbers (missing parts are 0), as composer does:
``<8.2`` means below 8.2.0.0 and the exact constraint ``8.2`` means 8.2.0.0.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import typing as t

Version = t.Tuple[int, int, int, int]
Predicate = t.Tuple[str, Version]

SUPPORTED = ('exact versions (8.2.7, =8.2.7), comparisons (>=8.1, >8.0, <9, <=8.3, !=8.2.1), wildcards (8.2.*, *), '
             'tilde (~8.1), caret (^8.1), hyphen ranges (8.1 - 8.3), AND with spaces or commas, OR with ||')

_VERSION_RE = re.compile(
    r'\A[vV]?(\d+|[xX*])(?:\.(\d+|[xX*]))?(?:\.(\d+|[xX*]))?(?:\.(\d+|[xX*]))?'
    r'(?:[-.]?(?:dev|alpha|a|beta|b|RC|rc|patch|pl|p|stable)\.?\d*)?(?:@(?:dev|alpha|beta|RC|stable))?\Z')
_OPS = ('>=', '<=', '==', '!=', '<>', '>', '<', '=')
_HYPHEN_RE = re.compile(r'(\S+)\s+-\s+(\S+)')
_HOST_VERSION_RE = re.compile(r'\bPHP\s+(\d+)\.(\d+)\.(\d+)')


class ConstraintError(ValueError):
    """A version constraint uses syntax this module does not support."""


class PlatformError(Exception):
    """The platform check could not run (missing binary, unreadable output) or the requirements are malformed."""

    def __init__(self, msg: str, **details: t.Any) -> None:
        super().__init__(msg)
        self.msg = msg
        self.details = details


# -- constraints --------------------------------------------------------------
def _parse_version(text: str, constraint: str) -> tuple[list[int | None], int]:
    """Parts of a version (``None`` for a wildcard part) and how many parts were given."""
    m = _VERSION_RE.match(text)
    if not m:
        raise ConstraintError('unsupported version constraint %r: %r is not a version; supported are %s' % (constraint, text, SUPPORTED))
    given = [g for g in m.groups() if g is not None]
    parts: list[int | None] = [None if g in ('x', 'X', '*') else int(g) for g in given]
    for i, part in enumerate(parts):
        if part is None and any(p is not None for p in parts[i + 1:]):
            raise ConstraintError('unsupported version constraint %r: a wildcard must be the last part of %r' % (constraint, text))
    return parts, len(given)


def _pad(parts: t.Sequence[int | None]) -> Version:
    nums = [p if p is not None else 0 for p in parts][:4]
    nums += [0] * (4 - len(nums))
    return (nums[0], nums[1], nums[2], nums[3])


def _bump(parts: t.Sequence[int], index: int) -> Version:
    """The smallest version above every version that starts with ``parts[:index + 1]``."""
    nums = list(parts[:index + 1])
    nums[index] += 1
    return _pad(nums)


def _parse_single(term: str, constraint: str) -> list[Predicate]:
    if term in ('*', 'x', 'X'):
        return []
    op = ''
    for candidate in _OPS:
        if term.startswith(candidate):
            op = candidate
            break
    if not op and term[:1] in ('~', '^'):
        op = term[0]
    rest = term[len(op):]
    if not rest:
        raise ConstraintError('unsupported version constraint %r: %r has no version; supported are %s' % (constraint, term, SUPPORTED))
    parts, given = _parse_version(rest, constraint)
    wildcard = any(p is None for p in parts)
    if wildcard:
        if op not in ('', '=', '=='):
            raise ConstraintError('unsupported version constraint %r: %r mixes an operator with a wildcard' % (constraint, term))
        fixed = [p for p in parts if p is not None]
        if not fixed:
            return []
        return [('>=', _pad(fixed)), ('<', _bump(t.cast(t.List[int], fixed), len(fixed) - 1))]
    nums = t.cast(t.List[int], parts)
    version = _pad(nums)
    if op in ('', '=', '=='):
        return [('==', version)]
    if op == '<>':
        return [('!=', version)]
    if op in ('>=', '<=', '>', '<', '!='):
        return [(op, version)]
    if op == '~':
        if given == 1:
            return [('>=', version), ('<', _bump(nums, 0))]
        return [('>=', version), ('<', _bump(nums, given - 2))]
    # caret: the first non-zero part given may not change (the last given part when all are zero)
    index = next((i for i, p in enumerate(nums) if p != 0), given - 1)
    return [('>=', version), ('<', _bump(nums, index))]


def parse_constraint(constraint: str) -> list[list[Predicate]]:
    """Parse a composer constraint into OR-groups of AND-ed predicates; :class:`ConstraintError` when unsupported."""
    if not isinstance(constraint, str):
        raise ConstraintError('version constraint %r is not a string' % (constraint,))
    text = constraint.strip()
    if not text:
        raise ConstraintError('version constraint is empty: use * for any version')
    groups: list[list[Predicate]] = []
    for alternative in re.split(r'\s*\|\|?\s*', text):
        alternative = alternative.strip()
        if not alternative:
            raise ConstraintError('unsupported version constraint %r: an alternative of || is empty' % constraint)
        predicates: list[Predicate] = []

        def hyphen(match: t.Match[str]) -> str:
            low, _low_given = _parse_version(match.group(1), constraint)
            high, high_given = _parse_version(match.group(2), constraint)
            if any(p is None for p in low + high):
                raise ConstraintError('unsupported version constraint %r: no wildcards in a hyphen range' % constraint)
            predicates.append(('>=', _pad(low)))
            if high_given < 4:
                predicates.append(('<', _bump(t.cast(t.List[int], high), high_given - 1)))
            else:
                predicates.append(('<=', _pad(high)))
            return ' '
        alternative = _HYPHEN_RE.sub(hyphen, alternative)
        # ">= 8.1" is one term, as in composer
        alternative = re.sub(r'(>=|<=|==|!=|<>|[<>=~^])\s+', r'\1', alternative)
        for term in re.split(r'[\s,]+', alternative):
            if term:
                predicates.extend(_parse_single(term, constraint))
        groups.append(predicates)
    return groups


def parse_version(text: str) -> Version:
    """A concrete version (``8.2.7``) as four numbers; :class:`ConstraintError` for anything else."""
    parts, _given = _parse_version(text.strip(), text)
    if any(p is None for p in parts):
        raise ConstraintError('%r is not a concrete version' % text)
    return _pad(parts)


def _holds(op: str, have: Version, want: Version) -> bool:
    if op == '>=':
        return have >= want
    if op == '>':
        return have > want
    if op == '<=':
        return have <= want
    if op == '<':
        return have < want
    if op == '!=':
        return have != want
    return have == want


def satisfies(version: str | Version, constraint: str) -> bool:
    """True when ``version`` (``"8.2.7"`` or a 4-tuple) meets the composer ``constraint``."""
    have = parse_version(version) if isinstance(version, str) else version
    return any(all(_holds(op, have, want) for op, want in group) for group in parse_constraint(constraint))


# -- requirements -------------------------------------------------------------
def extension_name(name: str) -> str:
    """Canonical extension name: lower case, without ``ext-``, ``-`` and spaces as ``_`` (``Zend OPcache`` -> ``opcache``)."""
    result = name.strip().lower()
    if result.startswith('ext-'):
        result = result[4:]
    result = result.replace(' ', '_').replace('-', '_')
    if result in ('zend_opcache', 'opcache'):
        return 'opcache'
    return result


class Requirements:
    """PHP constraints and extensions, each with the places that require it."""

    def __init__(self) -> None:
        self.php: list[tuple[str, str]] = []
        self.extensions: dict[str, list[str]] = {}

    def add_php(self, constraint: str, source: str) -> None:
        try:
            parse_constraint(constraint)
        except ConstraintError as exc:
            raise PlatformError('%s requires php %r: %s' % (source, constraint, exc)) from None
        if (constraint, source) not in self.php:
            self.php.append((constraint, source))

    def add_extension(self, name: str, source: str) -> None:
        key = extension_name(name)
        if not key or not re.match(r'\A[a-z0-9_.]+\Z', key):
            raise PlatformError('%s requires the PHP extension %r: not an extension name (e.g. ext-pdo_mysql or pdo_mysql)' % (source, name))
        sources = self.extensions.setdefault(key, [])
        if source not in sources:
            sources.append(source)

    def add_composer_require(self, require: object, source: str) -> None:
        if not isinstance(require, dict):
            return
        for name, constraint in sorted(require.items()):
            lname = str(name).lower()
            if lname == 'php':
                self.add_php(str(constraint), source)
            elif lname.startswith('ext-'):
                self.add_extension(lname, source)

    def constraints(self) -> list[str]:
        """The distinct php constraints, in the order first seen (every one must hold)."""
        seen: list[str] = []
        for constraint, _source in self.php:
            if constraint not in seen:
                seen.append(constraint)
        return seen

    def to_json(self) -> dict[str, t.Any]:
        return {
            'php': self.constraints(),
            'extensions': sorted(self.extensions),
            'sources': {
                'php': [{'constraint': c, 'source': s} for c, s in self.php],
                'extensions': {k: list(v) for k, v in sorted(self.extensions.items())},
            },
        }


def _read_json_file(path: str) -> t.Any:
    try:
        with open(path, 'rb') as f:
            return json.loads(f.read().decode('utf-8'))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise PlatformError('cannot read %s: %s' % (path, exc)) from None


def composer_requirements(tree: str, requirements: Requirements | None = None) -> Requirements:
    """Platform requirements (php, ext-*) of ``composer.json`` ``require`` and of every ``composer.lock`` package."""
    req = requirements if requirements is not None else Requirements()
    doc = _read_json_file(os.path.join(tree, 'composer.json'))
    if isinstance(doc, dict):
        req.add_composer_require(doc.get('require'), 'composer.json')
    lock = _read_json_file(os.path.join(tree, 'composer.lock'))
    if isinstance(lock, dict):
        packages = lock.get('packages')
        for package in packages if isinstance(packages, list) else []:
            if isinstance(package, dict):
                req.add_composer_require(package.get('require'), 'composer.lock package %s' % package.get('name', '?'))
    return req


# -- the host -----------------------------------------------------------------
def _run(argv: list[str]) -> tuple[int, str, str]:
    try:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    except FileNotFoundError:
        raise PlatformError('%s is not installed on this host (not found in PATH): set php_binary (deploy_php_fpm_binary) '
                            'to the php-fpm binary the application runs under' % argv[0]) from None
    except OSError as exc:
        raise PlatformError('cannot run %s: %s' % (argv[0], exc.strerror or exc)) from None
    return proc.returncode, proc.stdout.decode('utf-8', 'replace'), proc.stderr.decode('utf-8', 'replace')


def host_php(binary: str) -> tuple[str, list[str]]:
    """``(version, modules)`` of the PHP binary, from ``BINARY -v`` and ``BINARY -m`` (canonical module names, sorted)."""
    rc, out, err = _run([binary, '-v'])
    m = _HOST_VERSION_RE.search(out)
    if rc != 0 or not m:
        raise PlatformError('%s -v did not report a PHP version (exit code %d): %s' % (binary, rc, (err or out).strip()[-500:]))
    version = '%s.%s.%s' % m.groups()
    rc, out, err = _run([binary, '-m'])
    if rc != 0:
        raise PlatformError('%s -m failed with exit code %d: %s' % (binary, rc, (err or out).strip()[-500:]))
    modules = sorted({extension_name(line) for line in out.splitlines() if line.strip() and not line.strip().startswith('[')})
    return version, modules


def check(version: str, modules: t.Iterable[str], php: t.Iterable[str], extensions: t.Iterable[str]) -> dict[str, t.Any]:
    """Compare a PHP version and module list with the requirements; ``missing`` lists every problem."""
    loaded = {extension_name(m) for m in modules}
    constraints = list(php)
    failed = [c for c in constraints if not satisfies(version, c)]
    wanted = sorted({extension_name(e) for e in extensions})
    missing_ext = [e for e in wanted if e not in loaded]
    missing = ['php %s does not satisfy the constraint %s' % (version, c) for c in failed]
    missing += ['extension %s is not loaded' % e for e in missing_ext]
    return {'version': version, 'php_failed': failed, 'missing_extensions': missing_ext, 'missing': missing}


def shortfall(result: t.Mapping[str, t.Any]) -> str:
    """What a result of :func:`check` says is missing, in words (\"\" when nothing is)."""
    parts = []
    if result['php_failed']:
        parts.append('PHP %s does not satisfy %s' % (result['version'], ' and '.join(result['php_failed'])))
    if result['missing_extensions']:
        exts = result['missing_extensions']
        parts.append('%d required PHP extension%s missing: %s' % (len(exts), ' is' if len(exts) == 1 else 's are', ', '.join(exts)))
    return '; '.join(parts)


def message(binary: str, result: t.Mapping[str, t.Any]) -> str:
    """One line naming everything that is missing on the host."""
    return '%s on this host does not meet the platform requirements of the release: %s (nothing was staged)' % (binary, shortfall(result))


def unfit_hosts(hosts: t.Mapping[str, t.Any], requirements: Requirements) -> dict[str, str]:
    """The hosts whose php-fpm cannot run a release of ``requirements``: host -> what it lacks (:func:`shortfall`).

    ``hosts`` maps each host to what it offers, as the platform module returns it (``version``, ``modules``); a host
    without a ``version`` (its check was skipped) is left out.
    """
    unfit = {}
    for host, offered in sorted(hosts.items()):
        if not isinstance(offered, t.Mapping) or not isinstance(offered.get('version'), str):
            continue
        result = check(offered['version'], offered.get('modules') or [], requirements.constraints(), requirements.extensions)
        if result['missing']:
            unfit[host] = shortfall(result)
    return unfit


def check_host(binary: str, php: t.Iterable[str], extensions: t.Iterable[str]) -> dict[str, t.Any]:
    """Run the checks against ``binary``; the result has ``version``, ``modules`` and ``missing`` (empty = all met)."""
    constraints = list(php)
    for constraint in constraints:
        try:
            parse_constraint(constraint)
        except ConstraintError as exc:
            raise PlatformError(str(exc)) from None
    version, modules = host_php(binary)
    result = check(version, modules, constraints, extensions)
    result['modules'] = modules
    return result
