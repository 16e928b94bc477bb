"""Binary networks: BWN and XNOR-Net layers, conversion of float models (REFERENCE.md section 3),
and ``binarize_run`` (convert a trained run and fine-tune it)."""

from cnnzip.binary.conversion import MODES, binarized, binary_layers, convert, skipped_layers
from cnnzip.binary.finetune import binarize_run
from cnnzip.binary.layers import BWN, BinActiv, XnorConv2d, XnorLinear, sign_ste
from cnnzip.binary.scales import filter_alpha, norm_affine

__all__ = [
    "BWN",
    "MODES",
    "BinActiv",
    "XnorConv2d",
    "XnorLinear",
    "binarize_run",
    "binarized",
    "binary_layers",
    "convert",
    "filter_alpha",
    "norm_affine",
    "sign_ste",
    "skipped_layers",
]
