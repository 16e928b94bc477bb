"""``cnnzip.binary`` exports what the README shows: ``binarize_run`` beside ``convert``."""

import cnnzip.binary
from cnnzip.binary import finetune, scales


def test_binarize_run_and_the_shared_scales_are_exported():
    assert cnnzip.binary.binarize_run is finetune.binarize_run
    assert cnnzip.binary.filter_alpha is scales.filter_alpha
    assert cnnzip.binary.norm_affine is scales.norm_affine
    assert {"binarize_run", "filter_alpha", "norm_affine"} <= set(cnnzip.binary.__all__)
