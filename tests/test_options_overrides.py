import pytest

from ckdsr.utils.option_spec import OptionError
from ckdsr.utils.options import apply_overrides, parse_override, read_yaml


def test_parse_override_values_are_yaml():
    assert parse_override('train.total_iter=1000') == (['train', 'total_iter'], 1000)
    assert parse_override('train.optim_g.lr=2e-4') == (['train', 'optim_g', 'lr'], 2e-4)
    assert parse_override('a.b=[1, 2]') == (['a', 'b'], [1, 2])
    assert parse_override('a.b=null') == (['a', 'b'], None)
    assert parse_override('a.b=true') == (['a', 'b'], True)
    assert parse_override('a:b=x', ':') == (['a', 'b'], 'x')


def test_override_is_not_eval():
    parts, value = parse_override("a=__import__('os').system('true')")
    assert value == "__import__('os').system('true')"


def test_apply_overrides_does_not_mutate_and_creates_paths():
    tree = {'train': {'total_iter': 5, 'losses': [{'weight': 1}, {'weight': 2}]}}
    out = apply_overrides(tree, ['train.total_iter=7', 'train.losses.1.weight=0.5', 'new.key=3'],
                          ['train:warmup_iter=2'])
    assert tree['train']['total_iter'] == 5 and tree['train']['losses'][1]['weight'] == 2
    assert out['train']['total_iter'] == 7 and out['train']['losses'][1]['weight'] == 0.5
    assert out['new'] == {'key': 3} and out['train']['warmup_iter'] == 2


def test_bad_override_messages():
    with pytest.raises(OptionError, match="must look like"):
        apply_overrides({}, ['train.total_iter'])
    with pytest.raises(OptionError, match=r'train.losses.5: no list item 5'):
        apply_overrides({'train': {'losses': [1]}}, ['train.losses.5.weight=1'])


def test_exponent_floats_without_dot_are_numbers(tmp_path):
    f = tmp_path / 'o.yml'
    f.write_text('lr: 2e-4\nb: 1.5\nc: 3\nd: 1e5\nname: 1e-x\n')
    assert read_yaml(str(f)) == {'lr': 2e-4, 'b': 1.5, 'c': 3, 'd': 1e5, 'name': '1e-x'}


def test_read_yaml_errors(tmp_path):
    with pytest.raises(OptionError, match='option file not found'):
        read_yaml(str(tmp_path / 'missing.yml'))
    bad = tmp_path / 'bad.yml'
    bad.write_text('a: [1, 2\n')
    with pytest.raises(OptionError, match='bad.yml: not valid YAML'):
        read_yaml(str(bad))
    dup = tmp_path / 'dup.yml'
    dup.write_text('train:\n  total_iter: 1\n  total_iter: 2\n')
    with pytest.raises(OptionError, match="duplicate key 'total_iter'"):
        read_yaml(str(dup))


def test_source_of_a_key_is_set_when_an_override_touched_it():
    from ckdsr.utils.options import source_of
    sets = ['train.total_iter=0', 'trian.x=1', 'datasets.train=null']
    assert source_of('train.total_iter', 'f.yml', sets) == '--set'
    assert source_of('trian', 'f.yml', sets) == '--set'  # the typo is the command line's, not the file's
    assert source_of('datasets.train.gt_size', 'f.yml', sets) == '--set'  # inside a block --set replaced
    assert source_of('train.ema_decay', 'f.yml', sets) == 'f.yml'
    assert source_of('train.ema_decay', 'f.yml', force_yml=['train:ema_decay=2']) == '--force_yml'


def test_load_options_attributes_each_problem(tmp_path):
    from ckdsr.utils.option_spec import Field, Section
    from ckdsr.utils.options import load_options
    path = tmp_path / 'o.yml'
    path.write_text('a: 0\nb: 0\n')
    schema = Section({'a': Field(int, 1, minimum=1), 'b': Field(int, 1, minimum=1)})
    with pytest.raises(OptionError) as err:
        load_options(str(path), sets=['b=-1'], schema=schema)
    assert err.value.lines() == [f'{path}: a: must be >= 1, got 0', '--set: b: must be >= 1, got -1']
