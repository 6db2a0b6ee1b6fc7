"""Dataset keys that carry their own random seed.

The training loader (``ckdsr.data.loader``) passes ``(index, seed)`` tuples to datasets that set
``accepts_seeded_keys = True``; the seed depends only on ``(seed, epoch, position in the
epoch)``, so a sample's crop and flips do not depend on which worker loads it, how many
workers there are, or whether the run was resumed. Plain ``int`` keys still work: the sample
then draws from the process-global ``random`` state (seeded per worker by the loader).
"""
import random
from typing import Tuple, Union

Key = Union[int, Tuple[int, int]]


def unpack_key(key: Key) -> Tuple[int, random.Random]:
    """``(index, rng)`` for an ``int`` or ``(index, seed)`` key."""
    if isinstance(key, (tuple, list)):
        index, seed = key
        return int(index), random.Random(int(seed))
    return int(key), random.Random(random.getrandbits(64))
