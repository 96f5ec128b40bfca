"""Memory networks: MemNN (Weston et al. 2014), MemN2N (Sukhbaatar et al. 2015), KV-MemNN (Miller et al. 2016).

What networks are built from, importable from here: the three models, MemN2N's linear-start callback and
random-noise augmentation, MemNN's margin ranking loss, and the functional maths (:mod:`.functional`:
encodings, masked addressing, hops). Importing this package registers the family's names, as
:mod:`overlooked.catalog` does, and nothing else.
"""

from overlooked.memory import functional
from overlooked.memory.memnn import MemNN
from overlooked.memory.memnn_objective import MemNNMargin, memnn_ranking_loss
from overlooked.memory.models import kvmemnn, memn2n
from overlooked.memory.modules import KVMemNN, MemN2N
from overlooked.memory.training import LinearStart, RandomTime

__all__ = [
    "MemN2N",
    "KVMemNN",
    "MemNN",
    "memn2n",
    "kvmemnn",
    "LinearStart",
    "RandomTime",
    "MemNNMargin",
    "memnn_ranking_loss",
    "functional",
]
