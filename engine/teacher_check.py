"""Score the frozen teacher against bicubic once before distilling (``val.check_teacher``).

A KD run learns from its teacher's outputs, so a teacher that upscales worse than plain bicubic
interpolation (wrong ``scale``/``upscale``, the wrong weights file or ``param_key_t``, inputs in
another range than it was trained on) wastes the whole run. This check runs the teacher and MATLAB
bicubic (:func:`ckdsr.data.matlab_imresize.imresize_torch`, the "Bicubic" row of SR tables) over the
first validation set with the validation code (:func:`ckdsr.engine.evaluation.evaluate_dataset`; under
DDP each rank scores its share and the results are gathered), and compares the first metric.
Cost: one teacher forward and one bicubic resize per image of that set. The global random
generators are restored afterwards, so the check leaves training (and exact resume) as it was.
"""
import logging
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional

import torch

from ckdsr.data.matlab_imresize import imresize_torch
from ckdsr.engine.evaluation import average, evaluate_dataset, make_forward
from ckdsr.utils.rng import get_rng_state, set_rng_state

logger = logging.getLogger('ckdsr')


@dataclass
class TeacherCheck:
    """The first metric (PSNR by convention) of the teacher and of bicubic on one dataset."""
    dataset: str
    metric: str
    teacher: float
    bicubic: float

    @property
    def below_bicubic(self) -> bool:
        return self.teacher < self.bicubic

    def line(self) -> str:
        return (f'teacher check on {self.dataset}: teacher {self.metric} {self.teacher:.4f} vs bicubic '
                f'{self.bicubic:.4f} ({self.teacher - self.bicubic:+.4f})')

    def warning(self) -> str:
        return (f'the teacher (network_t) scores {self.metric} {self.teacher:.4f} on {self.dataset}, BELOW '
                f'bicubic interpolation ({self.bicubic:.4f}): it is almost certainly misconfigured and '
                'distilling from it will harm the student. Likely causes: wrong scale (network_t.upscale or '
                'scale differs from the factor its weights were trained for), wrong weights '
                '(path.pretrain_network_t is not a trained checkpoint of this arch, or path.param_key_t picks '
                'the wrong entry), wrong input range (network_t.img_range / rgb_mean differ from the '
                "checkpoint's training). Skip this check with val.check_teacher: false")


def check_teacher(teacher_net: torch.nn.Module, val_sets: Mapping[str, Any], val_opt: Mapping[str, Any],
                  scale: int, device: torch.device, rank: int = 0, world_size: int = 1
                  ) -> Optional[TeacherCheck]:
    """Score ``teacher_net`` and bicubic on the first of ``val_sets`` with ``val_opt``'s metrics and
    tiling; every rank must call it. None when there is no set or no metric."""
    if not val_sets:
        return None
    name, dataset = next(iter(val_sets.items()))
    metrics = val_opt.get('metrics') or None
    was_training = teacher_net.training
    rng = get_rng_state()  # evaluation may draw from the global generators: leave them untouched
    teacher_net.eval()
    # tiling as validation (memory); no self-ensemble (x8 the cost, and bicubic has none)
    teacher_fwd = make_forward(teacher_net, scale, False, val_opt.get('tile'), val_opt.get('tile_overlap', 16))
    results: Dict[str, Dict[str, float]] = {}
    try:
        for label, forward in (('teacher', teacher_fwd), ('bicubic', lambda x: imresize_torch(x, scale))):
            rows = evaluate_dataset(forward, dataset, scale, metrics, device=device, rank=rank,
                                    world_size=world_size)
            results[label] = average(rows)
    finally:
        teacher_net.train(was_training)
        set_rng_state(rng)
    if not results['teacher']:
        return None
    metric, value = next(iter(results['teacher'].items()))
    return TeacherCheck(dataset=name, metric=metric, teacher=value, bicubic=results['bicubic'][metric])


def log_teacher_check(result: Optional[TeacherCheck], rank: int = 0) -> None:
    """One INFO line, plus a WARNING when the teacher is below bicubic (rank 0 only)."""
    if result is None or rank != 0:
        return
    logger.info(result.line())
    if result.below_bicubic:
        logger.warning(result.warning())
