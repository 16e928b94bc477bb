"""The stage defaults stated in cnnzip.recipes.stages' docstring are the dataclasses' own."""

from cnnzip.recipes import stages
from cnnzip.recipes.stages import EncodeStage, FinetuneStage, PruneStage, ShareStage


def test_docstring_states_each_default_the_dataclasses_hold():
    doc = " ".join(stages.__doc__.split())
    prune, share, finetune, encode = PruneStage(), ShareStage(), FinetuneStage(), EncodeStage()
    assert (prune.sparsity, prune.schedule, prune.steps, prune.epochs, prune.lr) == (
        0.94, "iterative", 3, 3, 1e-4,
    )  # fmt: skip
    assert "``sparsity`` (0.94)" in doc
    assert '"iterative" (default: 3 rounds of prune -> retrain, 3 epochs each at lr 1e-4)' in doc
    assert (share.bits, share.init) == ({"conv": 8, "linear": 5}, "linear")
    assert "8 bits for convs and 5 for linear layers, linear init" in doc
    assert (finetune.epochs, finetune.lr) == (3, 1e-4)
    assert "cnnzip.train.fit: 3 epochs at lr 1e-4" in doc
    assert (encode.dense_dtype, encode.index_bits) == ("float16", None)
    assert "dense tensors float16 by default" in doc
