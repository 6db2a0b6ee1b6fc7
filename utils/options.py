"""Load an option file, apply command-line overrides, validate it, save the resolved copy.

Overrides never go through ``eval``: ``--set train.total_iter=1000`` parses the value with
``yaml.safe_load``; BasicSR's ``--force_yml train:total_iter=1000`` is accepted too.
The loaded tree is never mutated by the code that builds things from it.
"""
import copy
import os
import re
from typing import Any, Dict, Iterable, List, Optional, Tuple

import yaml

from ckdsr.utils.option_spec import OptionError, Section, validate


class _UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that refuses duplicate keys (PyYAML silently keeps the last one)."""


def _construct_mapping(loader, node, deep=False):
    seen = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key '{key}' (first at line {seen[key] + 1})", key_node.start_mark)
        seen[key] = key_node.start_mark.line
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
# YAML 1.1 reads `2e-4` (no dot) as a string; option files mean a number, so resolve it as float.
_UniqueKeyLoader.add_implicit_resolver(
    'tag:yaml.org,2002:float',
    re.compile(r'''^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                   |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                   |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                   |[-+]?\.(?:inf|Inf|INF)
                   |\.(?:nan|NaN|NAN))$''', re.X),
    list('-+0123456789.'))


def yaml_value(text: str):
    """Parse one YAML scalar/list as the option loader would."""
    return yaml.load(text, Loader=_UniqueKeyLoader)


def read_yaml(path: str) -> Dict[str, Any]:
    """Parse a YAML option file; syntax errors name the file and line."""
    if not os.path.isfile(path):
        raise OptionError([f'option file not found: {path}'], source=path)
    with open(path, 'r', encoding='utf-8') as f:
        try:
            tree = yaml.load(f, Loader=_UniqueKeyLoader)
        except yaml.YAMLError as err:
            raise OptionError([f'not valid YAML: {" ".join(str(err).split())}'], source=path) from None
    if tree is None:
        tree = {}
    if not isinstance(tree, dict):
        raise OptionError([f'expected a mapping at the top, got {type(tree).__name__}'], source=path)
    return tree


def parse_override(text: str, sep: str = '.') -> (List[str], Any):
    """``'a.b.c=value'`` -> (['a', 'b', 'c'], yaml.safe_load('value'))."""
    if '=' not in text:
        raise OptionError([f"override '{text}' must look like key{sep}path=value"], source='--set')
    key, raw = text.split('=', 1)
    parts = [p for p in key.strip().split(sep) if p]
    if not parts:
        raise OptionError([f"override '{text}' has an empty key path"], source='--set')
    try:
        value = yaml_value(raw) if raw.strip() != '' else None
    except yaml.YAMLError as err:
        raise OptionError([f"override '{text}': value is not valid YAML ({err})"], source='--set')
    return parts, value


def set_by_path(tree: Dict[str, Any], parts: List[str], value: Any, source: str = '--set') -> None:
    """Set ``tree[p0][p1]...`` creating mappings as needed; list items are addressed by index."""
    node = tree
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        where = '.'.join(parts[:i + 1])
        if isinstance(node, list):
            try:
                idx = int(part)
                node[idx]
            except (ValueError, IndexError):
                raise OptionError([f'{where}: no list item {part} (list has {len(node)} items)'],
                                  source=source) from None
            if last:
                node[idx] = value
            else:
                node = node[idx]
            continue
        if not isinstance(node, dict):
            raise OptionError([f'{where}: cannot set a key inside a {type(node).__name__}'], source=source)
        if last:
            node[part] = value
        else:
            if node.get(part) is None:
                node[part] = {}
            node = node[part]


def apply_overrides(tree: Dict[str, Any], sets: Iterable[str] = (), force_yml: Iterable[str] = ()) -> Dict:
    """A copy of ``tree`` with ``--set a.b=v`` and ``--force_yml a:b=v`` overrides applied."""
    out = copy.deepcopy(tree)
    for text in sets or ():
        parts, value = parse_override(text, '.')
        set_by_path(out, parts, value, source='--set')
    for text in force_yml or ():
        parts, value = parse_override(text, ':')
        set_by_path(out, parts, value, source='--force_yml')
    return out


def validate_tree(tree: Dict[str, Any], schema: Section, source: str) -> Dict[str, Any]:
    """Validate against ``schema``; returns a new tree with defaults filled in."""
    problems: List[str] = []
    out = validate(schema, tree, '', problems)
    if problems:
        raise OptionError(problems, source=source)
    return out


def save_options(opt: Dict[str, Any], path: str) -> None:
    """Write the resolved options as YAML (atomically)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f'{path}.tmp-{os.getpid()}'
    with open(tmp, 'w', encoding='utf-8') as f:
        yaml.safe_dump(opt, f, sort_keys=False, default_flow_style=None)
    os.replace(tmp, path)


def override_keys(sets: Iterable[str] = (), force_yml: Iterable[str] = ()) -> List[Tuple[List[str], str]]:
    """``[(key path parts, '--set' | '--force_yml')]`` of the command-line overrides."""
    out = []
    for texts, sep, source in ((sets, '.', '--set'), (force_yml, ':', '--force_yml')):
        for text in texts or ():
            key = text.split('=', 1)[0]
            out.append(([p for p in key.strip().split(sep) if p], source))
    return out


def source_of(key_path: str, path: str, sets: Iterable[str] = (), force_yml: Iterable[str] = ()) -> str:
    """Where the value at ``key_path`` came from: ``--set``/``--force_yml`` when an override set
    that key, a key inside it or the block holding it; else the option file ``path``."""
    parts = [p for p in key_path.split('.') if p]
    source = path
    for over, where in override_keys(sets, force_yml):
        n = min(len(over), len(parts))
        if n and over[:n] == parts[:n]:
            source = where  # the last override of a key wins, as when applying them
    return source


def attribute(err: OptionError, path: str, sets: Iterable[str] = (), force_yml: Iterable[str] = ()) -> OptionError:
    """``err`` with each problem's source set: ``--set`` for a key given on the command line (a
    ``--set`` typo is not the option file's), else the option file."""
    sources = [src if src not in (None, path) else source_of(key, path, sets, force_yml)
               for src, key in zip(err.sources, err.key_paths())]
    return OptionError(err.problems, source=path, sources=sources)


def load_options(path: str, sets: Iterable[str] = (), force_yml: Iterable[str] = (),
                 schema: Optional[Section] = None) -> Dict[str, Any]:
    """Read, override and validate an option file. ``schema`` defaults to ckdsr's full schema,
    followed by the checks across keys of :mod:`ckdsr.models.option_checks`. Problems name ``--set``
    when the value came from there."""
    try:
        tree = apply_overrides(read_yaml(path), sets, force_yml)
        if schema is not None:
            return validate_tree(tree, schema, source=path)
        from ckdsr.models.option_checks import check_options  # late imports: the registries must be filled
        from ckdsr.models.option_schema import schema_for
        opt = validate_tree(tree, schema_for(tree, source=path), source=path)
        problems = check_options(opt)
        if problems:
            raise OptionError(problems, source=path)
        return opt
    except OptionError as err:
        raise attribute(err, path, sets, force_yml) from None
