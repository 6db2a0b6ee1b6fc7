"""``custom_imports: [my_pkg.my_arch, ...]``: import the user's modules before an option tree is checked.

A module registers its archs, losses, datasets, models... on ckdsr's registries when imported
(``@ARCH_REGISTRY.register()``), so importing it first lets the option file name them with
``type:`` like a built-in, without editing the toolkit. Modules are imported by name with
:func:`importlib.import_module` (never exec/eval); they must be importable as Python imports them
(an installed package, or a folder on ``PYTHONPATH``).
"""
import importlib
from typing import Any, Dict, List

from ckdsr.utils.option_spec import OptionError

KEY = 'custom_imports'


def import_custom_modules(tree: Dict[str, Any], source: str = '<options>') -> List[str]:
    """Import every module named by ``tree['custom_imports']``; returns their names.

    Each failure is one problem line ``custom_imports.<i>: cannot import '<name>' (<error>)``;
    all are reported together as one :class:`OptionError`.
    """
    names = tree.get(KEY)
    if names is None:
        return []
    if not isinstance(names, list):
        raise OptionError([f'{KEY}: expected a list of module names, got {type(names).__name__} {names!r}'],
                          source=source)
    problems = []
    for i, name in enumerate(names):
        where = f'{KEY}.{i}'
        if not isinstance(name, str) or not name.strip():
            problems.append(f'{where}: expected a module name (dotted, e.g. my_pkg.my_arch), got {name!r}')
            continue
        try:
            importlib.import_module(name.strip())
        except Exception as err:  # any failure inside the user's module is theirs to see, in one line
            hint = ' (is it installed, or its folder on PYTHONPATH?)' if isinstance(err, ModuleNotFoundError) else ''
            detail = ' '.join(str(err).split())
            problems.append(f"{where}: cannot import '{name}': {type(err).__name__}: {detail}{hint}")
    if problems:
        raise OptionError(problems, source=source)
    return [n.strip() for n in names]
