"""Render an option schema as Markdown: the option reference is generated, never hand-written."""
import inspect
from typing import Any, List

from ckdsr.utils.option_spec import REQUIRED, Block, DictOf, Field, ListOf, Section, signature_params, type_name


def _default(value: Any) -> str:
    if value is REQUIRED:
        return '**required**'
    if value is inspect.Parameter.empty:
        return '**required**'
    return f'`{value!r}`' if value is not None else '`null`'


def _cell(text: str) -> str:
    return str(text).replace('|', '\\|')


def _rows(spec: Any, prefix: str, out: List[str]) -> None:
    if isinstance(spec, Section):
        for key, sub in spec.fields.items():
            _rows(sub, f'{prefix}.{key}' if prefix else key, out)
    elif isinstance(spec, Field):
        out.append(f'| `{prefix}` | {_cell(type_name(spec.ann))} | {_cell(_default(spec.default))} | {_cell(spec.doc)} |')
    elif isinstance(spec, ListOf):
        if isinstance(spec.item, (Section, Block)):
            out.append(f'| `{prefix}` | list | `[]` | {spec.doc} (items below) |')
            _rows(spec.item, f'{prefix}[i]', out)
        else:
            out.append(f'| `{prefix}` | list of {type_name(getattr(spec.item, "ann", object))} | `[]` | {spec.doc} |')
    elif isinstance(spec, DictOf):
        out.append(f'| `{prefix}` | mapping | `{{}}` | {spec.doc or spec.key_hint} (values below) |')
        _rows(spec.item, f'{prefix}.<name>', out)
    elif isinstance(spec, Block):
        req = '**required**' if spec.required else '`null`'
        out.append(f'| `{prefix}` | {spec.kind} block | {req} | {spec.doc} `type:` picks the {spec.kind}; '
                   f'its constructor arguments are the other keys |')
        for key, sub in spec.extra.items():
            _rows(sub, f'{prefix}.{key}', out)


def schema_markdown(schema: Section) -> str:
    lines = ['| key | type | default | meaning |', '| --- | --- | --- | --- |']
    _rows(schema, '', lines)
    return '\n'.join(lines) + '\n'


def registry_markdown(title: str, registry, skip_first: int = 0) -> str:
    """Every registered name with its option keys (constructor arguments) and defaults."""
    lines = [f'### {title}', '']
    for name in registry:
        params, _ = signature_params(registry.get(name))
        items = list(params.items())[skip_first:]
        args = ', '.join(f'`{k}`={_default(d)}' if d is not inspect.Parameter.empty else f'`{k}`'
                         for k, (_, d) in items)
        lines.append(f'- **{name}**: {args or "(no options)"}')
    return '\n'.join(lines) + '\n'
