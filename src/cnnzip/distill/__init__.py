"""Knowledge distillation (Hinton et al.): a loss, not a weight transform.

``KDLoss`` (or ``make_loss``) is a ``loss_fn`` for ``cnnzip.train.fit``, so any
stage that retrains (pruning, codebook fine-tuning, binary training) can learn
from a teacher or an ensemble of teachers by passing it.
"""

from cnnzip.distill.augment import jitter
from cnnzip.distill.loss import KDLoss, make_loss, soft_targets
from cnnzip.distill.teachers import Teachers, load_teachers

__all__ = ["KDLoss", "Teachers", "jitter", "load_teachers", "make_loss", "soft_targets"]
