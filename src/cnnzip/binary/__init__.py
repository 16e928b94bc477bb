"""Binary networks: BWN and XNOR-Net layers, conversion of float models (REFERENCE.md section 3)."""

from cnnzip.binary.convert import MODES, binarized, binary_layers, convert, skipped_layers
from cnnzip.binary.layers import BWN, BinActiv, XnorConv2d, XnorLinear, sign_ste

__all__ = [
    "BWN",
    "MODES",
    "BinActiv",
    "XnorConv2d",
    "XnorLinear",
    "binarized",
    "binary_layers",
    "convert",
    "sign_ste",
    "skipped_layers",
]
