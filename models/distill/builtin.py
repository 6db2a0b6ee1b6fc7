"""The built-in ``distill.*`` sections: embedding and bicubic negatives."""
from typing import Literal

from ckdsr.models.distill.embedding import Embedding
from ckdsr.models.distill.negatives import BicubicNegatives
from ckdsr.models.distill.registry import ComponentSpec, register_component
from ckdsr.utils.option_spec import Block, Field, Section, registry_resolver
from ckdsr.utils.registry import ARCH_REGISTRY

register_component(ComponentSpec(
    key='embedding',
    schema=Block(registry_resolver(ARCH_REGISTRY), 'arch', required=False,
                 doc='frozen embedding net for contrastive terms (VGG19Features, VQGANEncoder, ...)'),
    build=lambda model, cfg: Embedding(cfg, model.device, channels_last=model.channels_last),
    doc='provides emb_sr, emb_teacher_sr, emb_gt, emb_negatives, emb_positives, z_sr, z_teacher_sr, codebook'))

register_component(ComponentSpec(
    key='negatives',
    schema=Section({
        'source': Field(Literal['bicubic'], 'bicubic', 'bicubic: upsampled LR of batch images (CSD)'),
        'num': Field(int, 10, 'number of negatives'),
    }, absent_none=True),
    build=lambda model, cfg: BicubicNegatives(cfg['num'], model.scale, seed=model.seed),
    doc='provides negatives'))
