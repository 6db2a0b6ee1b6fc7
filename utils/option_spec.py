"""Typed option specifications that validate YAML trees and double as documentation.

A spec is one of:

* :class:`Field` — a leaf with a type annotation, a default and a doc line;
* :class:`Section` — a fixed set of named specs;
* :class:`ListOf` / :class:`DictOf` — repeated specs;
* :class:`Block` — a ``{type: Name, ...}`` mapping whose keys are the constructor arguments of the
  object ``Name`` resolves to (an arch, a loss, an optimizer...), plus a few fixed extra fields.

``validate(spec, value, path)`` returns the value with defaults filled in and raises
:class:`OptionError` listing every problem, each naming the key path and the closest valid key.
"""
import contextlib
import contextvars
import inspect
import os
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from ckdsr.utils.suggest import closest

REQUIRED = object()  # sentinel: the key must be given
_CHECK_PATHS = contextvars.ContextVar('ckdsr_check_paths', default=True)


def paths_checked() -> bool:
    """False inside :func:`paths_unchecked` (checks that read files are skipped then)."""
    return _CHECK_PATHS.get()


@contextlib.contextmanager
def paths_unchecked():
    """Validate structure and types only (e.g. inspecting an option file away from its data)."""
    token = _CHECK_PATHS.set(False)
    try:
        yield
    finally:
        _CHECK_PATHS.reset(token)


class OptionError(ValueError):
    """One or more problems in an option file; ``str()`` is one line per problem.

    Each problem reads ``<key.path>: <what is wrong>``. ``source`` is where the value came from:
    the option file, ``--set``, or None when not yet known (an error found while building from an
    already loaded tree; :func:`ckdsr.utils.options.attribute` fills it in). ``sources`` gives one source
    per problem where they differ (a ``--set`` value beside a mistake in the file).
    """

    def __init__(self, problems: List[str], source: Optional[str] = '<options>',
                 sources: Optional[List[Optional[str]]] = None):
        self.problems = list(problems)
        self.source = source
        self.sources = list(sources) if sources is not None else [source] * len(self.problems)
        super().__init__('\n'.join(self.lines()))

    def lines(self) -> List[str]:
        """``'<source>: <problem>'`` per problem (the problem alone where the source is unknown)."""
        return [f'{src}: {p}' if src else p for src, p in zip(self.sources, self.problems)]

    def key_paths(self) -> List[str]:
        """The option key path each problem names (the text before its first ': ')."""
        return [p.split(': ', 1)[0] if ': ' in p else '' for p in self.problems]


# --------------------------------------------------------------------------- type checking
_UNIONS = (typing.Union, types.UnionType)  # Optional[int] and int | None (torch annotates lr as float | Tensor)

def type_name(ann: Any) -> str:
    """A readable name for a type annotation (``Optional[int]`` -> ``int or null``)."""
    if ann is inspect.Parameter.empty or ann is Any:
        return 'any'
    origin = typing.get_origin(ann)
    args = typing.get_args(ann)
    if origin in _UNIONS:
        return ' or '.join('null' if a is type(None) else type_name(a) for a in args)
    if origin is typing.Literal:
        return 'one of ' + ', '.join(repr(a) for a in args)
    if origin in (list, tuple, typing.Sequence, getattr(__import__('collections.abc').abc, 'Sequence')):
        inner = type_name(args[0]) if args else 'any'
        if origin is tuple and args and args[-1] is not Ellipsis:  # fixed length, e.g. Adam's betas
            return f'list of {len(args)} ({inner})' if len(set(args)) == 1 else \
                'list [' + ', '.join(type_name(a) for a in args) + ']'
        return f'list of {inner}'
    if origin in (dict, typing.Mapping, __import__('collections.abc').abc.Mapping):
        return 'mapping'
    if ann is float:
        return 'number'
    return getattr(ann, '__name__', str(ann))


def type_ok(value: Any, ann: Any) -> bool:
    """Whether a YAML value fits a Python type annotation (ints are accepted for floats)."""
    if ann is inspect.Parameter.empty or ann is Any or ann is None and value is None:
        return True
    if ann is type(None):
        return value is None
    origin = typing.get_origin(ann)
    args = typing.get_args(ann)
    if origin in _UNIONS:
        return any(type_ok(value, a) for a in args)
    if origin is typing.Literal:
        return value in args
    import collections.abc as cabc
    if origin in (list, tuple, cabc.Sequence, typing.Sequence):
        if not isinstance(value, (list, tuple)):
            return False
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(args) == len(value) and all(type_ok(v, a) for v, a in zip(value, args))
        return not args or all(type_ok(v, args[0]) for v in value)
    if origin in (dict, cabc.Mapping, typing.Mapping):
        return isinstance(value, dict)
    if ann is bool:
        return isinstance(value, bool)
    if ann is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if ann is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if ann is str:
        return isinstance(value, str)
    if isinstance(ann, type):
        return isinstance(value, ann)
    return True  # an annotation we cannot check (forward refs, protocols): accept


def integral_to_int(value: Any, ann: Any) -> Any:
    """``value`` with integral floats turned into ints where ``ann`` wants an int and not a float.

    BasicSR writes every frequency as ``!!float 5e3``, so ``5000.0`` is accepted for ``int``
    (``5000.5`` is not: the value is returned unchanged and fails :func:`type_ok`). Lists and
    tuples are converted item by item (``milestones: [2e5, 4e5]``).
    """
    if type_ok(value, ann):
        return value
    if isinstance(value, float) and value.is_integer() and type_ok(int(value), ann):
        return int(value)
    if isinstance(value, (list, tuple)):
        converted = _integral_items(value, ann)
        if converted is not None:
            return converted
    return value


def _integral_items(value: Any, ann: Any) -> Optional[list]:
    """The list with its items converted by :func:`integral_to_int`, if that makes it fit ``ann``."""
    candidates = typing.get_args(ann) if typing.get_origin(ann) in _UNIONS else (ann,)
    for cand in candidates:
        args = typing.get_args(cand)
        if not args:
            continue
        if typing.get_origin(cand) is tuple and args[-1] is not Ellipsis:
            if len(args) != len(value):
                continue
            items = [integral_to_int(v, a) for v, a in zip(value, args)]
        else:
            items = [integral_to_int(v, args[0]) for v in value]
        if type_ok(items, cand):
            return items
    return None


def where_to_get(path: str) -> str:
    """``'; <who publishes it, where / which command makes it>'`` for a known external file."""
    from ckdsr.utils.external_files import describe
    hint = describe(path)
    return f'; {hint}' if hint else ''


def _fmt(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + '...'


def _unknown_key(path: str, key: str, valid: List[str]) -> str:
    where = f'{path}.{key}' if path else key
    hits = closest(key, valid, n=1)
    if hits:
        good = f'{path}.{hits[0]}' if path else hits[0]
        return f"{where}: unknown key (did you mean '{good}'?)"
    return f"{where}: unknown key (valid keys here: {', '.join(sorted(valid))})"


# --------------------------------------------------------------------------- specs
@dataclass
class Field:
    """A leaf option. ``path=True`` means a file or folder that must exist when given;
    ``minimum``/``maximum`` bound a number (inclusive; null passes where the type allows it)."""
    ann: Any = Any
    default: Any = None
    doc: str = ''
    path: bool = False
    minimum: Optional[float] = None
    maximum: Optional[float] = None

    def validate(self, value: Any, where: str, problems: List[str]) -> Any:
        value = integral_to_int(value, self.ann)
        if not type_ok(value, self.ann):
            problems.append(f'{where}: expected {type_name(self.ann)}, got {type(value).__name__} '
                            f'{_fmt(value)}')
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if self.minimum is not None and value < self.minimum:
                problems.append(f'{where}: must be >= {self.minimum}, got {value}')
            if self.maximum is not None and value > self.maximum:
                problems.append(f'{where}: must be <= {self.maximum}, got {value}')
        if self.path and value is not None and _CHECK_PATHS.get() and not os.path.exists(os.path.expanduser(str(value))):
            problems.append(f'{where}: file or folder not found: {value}{where_to_get(str(value))}')
        return value

    def fill_default(self):
        return _as_yaml(self.default)


def _as_yaml(value: Any) -> Any:
    """A default as YAML would read it back (tuples become lists), so a saved tree loads unchanged."""
    if isinstance(value, (list, tuple)):
        return [_as_yaml(v) for v in value]
    if isinstance(value, dict):
        return {k: _as_yaml(v) for k, v in value.items()}
    return value


@dataclass
class Section:
    """A mapping with a fixed set of keys."""
    fields: Dict[str, Any]
    doc: str = ''
    optional: bool = True  # an absent section is filled with its defaults (or None if ``absent_none``)
    absent_none: bool = False

    def validate(self, value: Any, where: str, problems: List[str]) -> Any:
        if value is None:
            # ``key: null`` means the same as an absent key, so a saved tree loads back unchanged:
            # a section that is off when absent (``absent_none``) stays off.
            if self.absent_none:
                return None
            value = {}
        if not isinstance(value, dict):
            problems.append(f'{where or "<top>"}: expected a mapping, got {type(value).__name__} '
                            f'{_fmt(value)}')
            return value
        out = {}
        for key in value:
            if key not in self.fields:
                problems.append(_unknown_key(where, str(key), list(self.fields)))
        for key, spec in self.fields.items():
            sub = f'{where}.{key}' if where else key
            if key in value:
                out[key] = validate(spec, value[key], sub, problems)
            else:
                default = fill_default(spec)
                if default is REQUIRED:
                    problems.append(f'{sub}: required key is missing')
                else:
                    out[key] = default
        return out

    def fill_default(self):
        if self.absent_none:
            return None
        return {k: fill_default(s) for k, s in self.fields.items()
                if fill_default(s) is not REQUIRED} if self.optional else REQUIRED


@dataclass
class ListOf:
    item: Any
    doc: str = ''
    default: Any = field(default_factory=list)

    def validate(self, value: Any, where: str, problems: List[str]) -> Any:
        if value is None:
            return []
        if not isinstance(value, list):
            problems.append(f'{where}: expected a list, got {type(value).__name__} {_fmt(value)}')
            return value
        return [validate(self.item, v, f'{where}.{i}', problems) for i, v in enumerate(value)]

    def fill_default(self):
        return list(self.default) if self.default is not None else None


@dataclass
class DictOf:
    """A mapping of free keys (matching ``key_pattern``) to values of one spec."""
    item: Any
    doc: str = ''
    key_pattern: Optional[str] = None
    key_hint: str = ''
    default: Any = field(default_factory=dict)

    def validate(self, value: Any, where: str, problems: List[str]) -> Any:
        if value is None:
            return {}
        if not isinstance(value, dict):
            problems.append(f'{where}: expected a mapping, got {type(value).__name__} {_fmt(value)}')
            return value
        out = {}
        for key, v in value.items():
            if self.key_pattern and not re.fullmatch(self.key_pattern, str(key)):
                problems.append(f'{where}.{key}: key not allowed here ({self.key_hint})')
            out[key] = validate(self.item, v, f'{where}.{key}', problems)
        return out

    def fill_default(self):
        return dict(self.default) if self.default is not None else None


#: resolver(type_name) -> {arg: (annotation, default)}; raises KeyError with a suggestion on a miss.
Resolver = Callable[[str], Tuple[Dict[str, Tuple[Any, Any]], bool]]

_PATH_ARG = re.compile(r'^(dataroot.*|.*_path|.*_file|pretrain.*)$')


def signature_params(fn: Callable) -> Tuple[Dict[str, Tuple[Any, Any]], bool]:
    """``({name: (annotation, default)}, accepts_var_kwargs)`` of a callable (class -> __init__)."""
    target = fn.__init__ if inspect.isclass(fn) else fn
    try:
        hints = typing.get_type_hints(target)
    except Exception:  # unresolvable forward references: fall back to raw annotations
        hints = {}
    params, var_kw = {}, False
    for name, p in inspect.signature(fn).parameters.items():
        if p.kind is p.VAR_KEYWORD:
            var_kw = True
            continue
        if p.kind is p.VAR_POSITIONAL or name == 'self':
            continue
        params[name] = (hints.get(name, p.annotation), p.default)
    return params, var_kw


@dataclass
class Block:
    """``{type: Name, **kwargs}``: kwargs checked against what ``resolver(Name)`` accepts.

    ``extra`` holds fields that belong to the surrounding block (a loss term's ``weight``, a
    dataset's loader keys) rather than to the constructor. ``injected`` names constructor
    arguments the framework supplies itself (e.g. ``scale``), which the file may still set.
    """
    resolver: Resolver
    kind: str
    extra: Dict[str, Any] = field(default_factory=dict)
    injected: Tuple[str, ...] = ()
    doc: str = ''
    required: bool = True
    default_type: Optional[str] = None

    def validate(self, value: Any, where: str, problems: List[str]) -> Any:
        if value is None and not self.required:
            return None
        if not isinstance(value, dict):
            problems.append(f'{where}: expected a mapping with a `type:` key, got '
                            f'{type(value).__name__} {_fmt(value)}')
            return value
        type_ = value.get('type', self.default_type)
        if type_ is None:
            problems.append(f'{where}.type: required key is missing (which {self.kind} to build)')
            return value
        try:
            params, var_kw = self.resolver(type_)
        except KeyError as err:
            problems.append(f'{where}.type: {err.args[0] if err.args else err}')
            return value
        out = {'type': type_}
        valid = ['type'] + list(self.extra) + list(params)
        for key, v in value.items():
            if key == 'type':
                continue
            sub = f'{where}.{key}'
            if key in self.extra:
                out[key] = validate(self.extra[key], v, sub, problems)
            elif key in params:
                ann, _ = params[key]
                out[key] = Field(ann, path=bool(_PATH_ARG.match(key))).validate(v, sub, problems)
            elif var_kw:
                out[key] = v
            else:
                problems.append(_unknown_key(where, key, valid) + f' for {self.kind} {type_}')
        for key, spec in self.extra.items():
            if key not in value:
                default = fill_default(spec)
                if default is REQUIRED:
                    problems.append(f'{where}.{key}: required key is missing')
                else:
                    out[key] = default
        for key, (ann, default) in params.items():
            if default is inspect.Parameter.empty and key not in value and key not in self.injected:
                problems.append(f'{where}.{key}: required argument of {self.kind} {type_} is missing')
        return out

    def fill_default(self):
        return REQUIRED if self.required else None


def validate(spec: Any, value: Any, where: str, problems: List[str]) -> Any:
    return spec.validate(value, where, problems)


def fill_default(spec: Any) -> Any:
    return spec.fill_default()


def registry_resolver(registry) -> Resolver:
    """Resolver over a :class:`ckdsr.utils.registry.Registry`: the class's constructor signature."""

    def resolve(name: str):
        return signature_params(registry.get(name))

    return resolve


def merge_sections(base: Section, extra: Mapping[str, Any]) -> Section:
    """A copy of ``base`` with ``extra`` specs merged in (sections merge recursively)."""
    fields = dict(base.fields)
    for key, spec in extra.items():
        if key in fields and isinstance(fields[key], Section) and isinstance(spec, Section):
            fields[key] = merge_sections(fields[key], spec.fields)
        else:
            fields[key] = spec
    return Section(fields, doc=base.doc, optional=base.optional, absent_none=base.absent_none)
