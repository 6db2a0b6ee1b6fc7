"""Validation of option trees against typed specs (independent of the registered archs)."""
from typing import Optional, Sequence

import pytest

from ckdsr.utils.option_spec import (REQUIRED, Block, DictOf, Field, ListOf, OptionError, Section,
                               merge_sections, registry_resolver)
from ckdsr.utils.options import validate_tree
from ckdsr.utils.registry import Registry

REG = Registry('arch')


@REG.register()
class TinyNet:
    def __init__(self, num_feat: int = 8, res_scale: float = 1.0, mean: Sequence[float] = (0.5,),
                 mode: Optional[str] = None):
        pass


SCHEMA = Section({
    'name': Field(str, REQUIRED),
    'network_g': Block(registry_resolver(REG), 'arch'),
    'train': Section({'total_iter': Field(int, REQUIRED), 'ema_decay': Field(float, 0.0),
                      'losses': ListOf(Section({'w': Field(float, 1.0)}))}),
    'datasets': DictOf(Field(str), key_pattern=r'(train|val)(_\w+)?', key_hint='train or val_*'),
})


def check(tree):
    return validate_tree(tree, SCHEMA, 'f.yml')


def good():
    return {'name': 'x', 'network_g': {'type': 'TinyNet', 'num_feat': 16}, 'train': {'total_iter': 10}}


def test_valid_tree_gets_defaults():
    out = check(good())
    assert out['train'] == {'total_iter': 10, 'ema_decay': 0.0, 'losses': []}
    assert out['network_g'] == {'type': 'TinyNet', 'num_feat': 16}
    assert out['datasets'] == {}


def test_misspelt_section_names_suggestion():
    tree = good()
    tree['trian'] = tree.pop('train')
    with pytest.raises(OptionError) as err:
        check(tree)
    text = str(err.value)
    assert "f.yml: trian: unknown key (did you mean 'train'?)" in text


def test_misspelt_nested_key():
    tree = good()
    tree['train']['total_itr'] = 5
    with pytest.raises(OptionError, match=r"f.yml: train.total_itr: unknown key \(did you mean 'train.total_iter'\?\)"):
        check(tree)


def test_wrong_type():
    tree = good()
    tree['train']['total_iter'] = 'abc'
    with pytest.raises(OptionError, match=r"train.total_iter: expected int, got str 'abc'"):
        check(tree)


def test_int_accepted_for_float_but_bool_not_for_int():
    tree = good()
    tree['train']['ema_decay'] = 0
    assert check(tree)['train']['ema_decay'] == 0
    tree['train']['total_iter'] = True
    with pytest.raises(OptionError, match='expected int, got bool'):
        check(tree)


def test_block_kwargs_checked_against_signature():
    tree = good()
    tree['network_g'] = {'type': 'TinyNet', 'num_fet': 4}
    with pytest.raises(OptionError, match=r"network_g.num_fet: unknown key \(did you mean 'network_g.num_feat'\?\) for arch TinyNet"):
        check(tree)
    tree['network_g'] = {'type': 'TinyNet', 'mean': [0.1, 'a']}
    with pytest.raises(OptionError, match=r'network_g.mean: expected list of number'):
        check(tree)
    tree['network_g'] = {'type': 'TinyNett'}
    with pytest.raises(OptionError, match=r"network_g.type: No arch named 'TinyNett'. Did you mean 'TinyNet'"):
        check(tree)


def test_required_missing_and_list_items():
    tree = good()
    del tree['train']['total_iter']
    tree['train']['losses'] = [{'w': 2}, {'ww': 1}]
    with pytest.raises(OptionError) as err:
        check(tree)
    assert sorted(err.value.problems) == [
        "train.losses.1.ww: unknown key (did you mean 'train.losses.1.w'?)",
        'train.total_iter: required key is missing']
    tree['train']['losses'] = [{'zzz': 1}]
    tree['train']['total_iter'] = 1
    with pytest.raises(OptionError, match=r'train.losses.0.zzz: unknown key \(valid keys here: w\)'):
        check(tree)


def test_dict_key_pattern():
    tree = good()
    tree['datasets'] = {'train': 'a', 'vall': 'b'}
    with pytest.raises(OptionError, match='datasets.vall: key not allowed here'):
        check(tree)


def test_path_fields_must_exist(tmp_path):
    spec = Section({'p': Field(Optional[str], None, path=True)})
    assert validate_tree({'p': str(tmp_path)}, spec, 'f') == {'p': str(tmp_path)}
    with pytest.raises(OptionError, match='p: file or folder not found'):
        validate_tree({'p': str(tmp_path / 'nope.pth')}, spec, 'f')


def test_merge_sections_recurses():
    merged = merge_sections(SCHEMA, {'train': Section({'extra': Field(int, 3)}), 'network_t': Field(str)})
    assert set(merged.fields['train'].fields) == {'total_iter', 'ema_decay', 'losses', 'extra'}
    assert 'network_t' in merged.fields and 'network_t' not in SCHEMA.fields


def test_paths_unchecked_skips_only_existence(tmp_path):
    from ckdsr.utils.option_spec import paths_unchecked
    spec = Section({'p': Field(Optional[str], None, path=True), 'n': Field(int, 1)})
    with paths_unchecked():
        assert validate_tree({'p': str(tmp_path / 'missing')}, spec, 'f')['p'].endswith('missing')
        with pytest.raises(OptionError, match='n: expected int'):
            validate_tree({'n': 'x'}, spec, 'f')
    with pytest.raises(OptionError, match='file or folder not found'):
        validate_tree({'p': str(tmp_path / 'missing')}, spec, 'f')


def test_bounds_name_the_key_and_the_value():
    spec = Section({'n': Field(int, 1, minimum=1), 'd': Field(Optional[float], None, minimum=0, maximum=1)})
    with pytest.raises(OptionError) as err:
        validate_tree({'n': 0, 'd': 1.5}, spec, 'f.yml')
    assert err.value.lines() == ['f.yml: n: must be >= 1, got 0', 'f.yml: d: must be <= 1, got 1.5']
    assert validate_tree({'n': 1, 'd': None}, spec, 'f.yml') == {'n': 1, 'd': None}


def test_pep604_unions_are_checked():
    """torch annotates Adam's lr as `float | Tensor`: a string must not pass as a number."""
    reg = Registry('optim')

    @reg.register()
    class Opt:
        def __init__(self, lr: 'float | int' = 1e-3):
            pass

    spec = Section({'o': Block(registry_resolver(reg), 'optimizer')})
    with pytest.raises(OptionError, match=r"o.lr: expected number or int, got str 'fast'"):
        validate_tree({'o': {'type': 'Opt', 'lr': 'fast'}}, spec, 'f.yml')
    assert validate_tree({'o': {'type': 'Opt', 'lr': 2}}, spec, 'f.yml') == {'o': {'type': 'Opt', 'lr': 2}}


def test_null_means_absent_for_sections_that_are_off_when_absent():
    spec = Section({'opt_in': Section({'taps': Field(list, REQUIRED)}, absent_none=True),
                    'defaults': Section({'k': Field(int, 3)})})
    assert validate_tree({'opt_in': None, 'defaults': None}, spec, 'f.yml') == validate_tree({}, spec, 'f.yml') \
        == {'opt_in': None, 'defaults': {'k': 3}}


def test_tuple_defaults_are_filled_as_lists():
    assert validate_tree({}, Section({'r': Field(Sequence[float], (0.5, 1.5))}), 'f.yml') == {'r': [0.5, 1.5]}


def test_option_error_keeps_a_source_per_problem():
    err = OptionError(['a.b: bad', 'c: worse'], source='f.yml', sources=['--set', 'f.yml'])
    assert err.lines() == ['--set: a.b: bad', 'f.yml: c: worse'] and str(err) == '--set: a.b: bad\nf.yml: c: worse'
    assert err.key_paths() == ['a.b', 'c']
    assert OptionError(['x.y: late'], source=None).lines() == ['x.y: late']
