"""--launcher slurm: torchrun's variables from SLURM's environment (as BasicSR's slurm launcher)."""
import os

import pytest

from ckdsr.utils import dist as D

TASK = {'SLURM_PROCID': '5', 'SLURM_NTASKS': '8', 'SLURM_NODELIST': 'gpu[03-04]', 'SLURM_LOCALID': '1'}


@pytest.mark.parametrize('nodelist,first', [('gpu03', 'gpu03'), ('gpu[03-04]', 'gpu03'), ('gpu[7,9-12]', 'gpu7'),
                                            ('node-a[001-004],node-b2', 'node-a001'), ('a1,b[2-3]', 'a1'),
                                            ('cn[0101-0102]', 'cn0101')])
def test_first_host_of_a_nodelist(nodelist, first):
    assert D.first_slurm_host(nodelist) == first


def test_slurm_env_maps_rank_world_local_rank_and_master():
    asked = []
    env = D.slurm_env(TASK, n_gpu=4, resolve_host=lambda nodes: asked.append(nodes) or 'gpu03.cluster')
    assert env == {'RANK': '5', 'WORLD_SIZE': '8', 'LOCAL_RANK': '1', 'MASTER_ADDR': 'gpu03.cluster',
                   'MASTER_PORT': '29500'}
    assert asked == ['gpu[03-04]']
    # without scontrol the node list is parsed here; without SLURM_LOCALID the rank modulo the GPUs
    no_local = {k: v for k, v in TASK.items() if k != 'SLURM_LOCALID'}
    env = D.slurm_env(no_local, n_gpu=4, resolve_host=lambda nodes: None)
    assert env['MASTER_ADDR'] == 'gpu03' and env['LOCAL_RANK'] == '1'
    assert D.slurm_env(no_local, n_gpu=0, resolve_host=lambda nodes: None)['LOCAL_RANK'] == '0'
    # MASTER_ADDR / MASTER_PORT already in the environment win
    env = D.slurm_env({**TASK, 'MASTER_ADDR': '10.0.0.1', 'MASTER_PORT': '12345'}, resolve_host=lambda n: 'x')
    assert (env['MASTER_ADDR'], env['MASTER_PORT']) == ('10.0.0.1', '12345')


def test_slurm_env_errors():
    with pytest.raises(RuntimeError, match="launcher 'slurm' needs SLURM_NTASKS, SLURM_NODELIST in the "
                                           r'environment \(start the run with srun\)'):
        D.slurm_env({'SLURM_PROCID': '0'})
    with pytest.raises(ValueError, match=r"SLURM_NODELIST '\[1-2\]': cannot read a host name"):
        D.first_slurm_host('[1-2]')


def test_init_dist_slurm_joins_a_one_process_group(tmp_path):
    """A forked child with a 1-task SLURM environment joins a real gloo group through init_dist."""
    import torch.distributed as dist
    store = dist.TCPStore('127.0.0.1', 0, 1, is_master=True, wait_for_workers=False)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            for k in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR'):
                os.environ.pop(k, None)
            os.environ.update({'SLURM_PROCID': '0', 'SLURM_NTASKS': '1', 'SLURM_NODELIST': 'localhost',
                               'SLURM_LOCALID': '0', 'MASTER_PORT': str(store.port),
                               'TORCHELASTIC_USE_AGENT_STORE': 'True', 'GLOO_SOCKET_IFNAME': 'lo'})
            ok = D.init_dist('slurm', backend='gloo') == (0, 1) and os.environ['MASTER_ADDR'] == 'localhost'
            D.destroy()
            code = 0 if ok else 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    del store
    assert os.waitstatus_to_exitcode(status) == 0


def test_train_without_a_slurm_environment_is_one_error_line(tmp_path, monkeypatch, capsys):
    from tests.helpers.chaos import TRAIN_CLI
    from tests.helpers.tiny_run import tiny_sr_options, write_options
    for key in ('SLURM_PROCID', 'SLURM_NTASKS', 'SLURM_NODELIST'):
        monkeypatch.delenv(key, raising=False)
    opt_file = write_options(tiny_sr_options(tmp_path), tmp_path / 'o.yml')
    assert TRAIN_CLI.main(['-opt', str(opt_file), '--launcher', 'slurm']) == 2
    assert capsys.readouterr().err.splitlines() == [
        "error: --launcher slurm: launcher 'slurm' needs SLURM_PROCID, SLURM_NTASKS, SLURM_NODELIST in the "
        'environment (start the run with srun)']
    assert not (tmp_path / 'experiments').exists()
