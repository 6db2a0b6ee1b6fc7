"""`tools/train.py --dry-run` and `tools/model_info.py -opt` on paper option files whose datasets and
weights are not here (issue 16, point 11): they list what is missing, with the option key and where
to get it, and still print the networks and their parameter counts."""
from pathlib import Path

from ckdsr.models.network_io import build_network
from tests.helpers.kd import tiny_kd_options
from tests.helpers.tiny_run import write_options
from ckdsr.tools.model_info import main as model_info_main
from ckdsr.tools.train import main as train_main

REPO = Path(__file__).resolve().parents[1]
PAPER = str(REPO / 'options' / 'dckd_rcan_x4.yml')


def test_dry_run_of_a_paper_file_lists_missing_files_and_prints_the_networks(capsys):
    assert train_main(['-opt', PAPER, '--dry-run']) == 2
    out = capsys.readouterr().out.splitlines()
    assert out[:4] == [f'{PAPER}: dckd_rcan_x4 (KDModel, x4)',
                       '  network_g: RCAN  params 5,171,315 (5.171M)',   # DESIGN 7: RCAN 10x6 5.17M
                       '  network_t: RCAN  params 15,592,355 (15.592M)',  # RCAN 10x20 15.59M
                       'missing (5): the run cannot start until these exist']
    missing = out[4:]
    keys = [line.split(': ')[1] for line in missing]
    assert keys == ['datasets.train.dataroot_gt', 'datasets.train.dataroot_lq', 'datasets.val.dataroot',
                    'path.pretrain_network_t', 'distill.embedding.checkpoint_path']
    assert 'python tools/create_lmdb.py --hr datasets/DIV2K/DIV2K_train_HR' in missing[0]
    assert 'https://github.com/yulunzhang/RCAN' in missing[3]
    assert 'https://heibox.uni-heidelberg.de/d/8088892a516d4e3baf92/' in missing[4]


def test_dry_run_still_reports_other_mistakes_as_errors(capsys):
    assert train_main(['-opt', PAPER, '--dry-run', '--set', 'train.total_iter=0']) == 2
    captured = capsys.readouterr()
    assert captured.err.splitlines() == ['error: --set: train.total_iter: must be >= 1, got 0']
    assert captured.out == ''


def test_model_info_works_without_the_files(capsys):
    assert model_info_main(['-opt', str(REPO / 'options' / 'kd_rcan_x2.yml'), '--lr-size', '16x16']) == 0
    captured = capsys.readouterr()
    rows = captured.out.splitlines()
    assert [r.split('  MACs')[0] for r in rows] == ['network_g: RCAN  params 5,023,603 (5.024M)',
                                                     'network_t: RCAN  params 15,444,643 (15.445M)']
    assert all(r.endswith('at 16x16 -> 32x32') for r in rows)  # upscale filled from scale 2, as a run does
    missing = captured.err.splitlines()
    assert any(line.startswith('missing: ') and 'path.pretrain_network_t' in line and
               'python tools/train.py -opt options/train_rcan_10x20_x2.yml' in line for line in missing)


def test_dry_run_of_a_complete_run_builds_and_checks_the_model_and_writes_nothing(tmp_path, capsys):
    opt = tiny_kd_options(tmp_path, [{'type': 'L1Loss'}, {'type': 'L1Loss', 'name': 'l_kd',
                                                          'inputs': {'target': 'teacher_sr'}}], total_iter=1)
    path = write_options(opt, tmp_path / 'kd.yml')
    assert train_main(['-opt', str(path), '--dry-run']) == 0
    out = capsys.readouterr().out.splitlines()
    n_g, n_t = (sum(p.numel() for p in build_network(opt[k], 2).parameters()) for k in ('network_g', 'network_t'))
    assert out[1:] == [f'  network_g: EDSR  params {n_g:,} ({n_g / 1e6:.3f}M)',
                       f'  network_t: EDSR  params {n_t:,} ({n_t / 1e6:.3f}M)',
                       'model built and checked on the CPU (one tiny forward per network; tap and layer-weight '
                       'counts)', 'ready: every file is there']
    assert not (tmp_path / 'experiments').exists()
    assert train_main(['-opt', str(path), '--dry-run', '--set', 'network_t.num_feat=8']) == 2
    err = capsys.readouterr().err.splitlines()
    # the key at fault is the weights file (set in the file), which no longer fits the --set network
    assert len(err) == 1 and err[0].startswith(f'error: {path}: path.pretrain_network_t: {tmp_path / "teacher.pth"} '
                                               "(layout 'basicsr', param_key 'params') does not fit EDSR")
