"""Deep Compression stage 3 and the file that proves it: sparse storage, entropy coding, .cnnz.

from cnnzip import codec
codec.save("lenet5.cnnz", model, arch={"name": "lenet5", "kwargs": {}})
model = codec.load("lenet5.cnnz")            # nn.Module, weights bit-exact
print(codec.inspect("lenet5.cnnz").table())  # per-layer bytes by stage
"""

from cnnzip.codec.container import CnnzFile, read
from cnnzip.codec.errors import CnnzFormatError, CnnzVersionError
from cnnzip.codec.inspect import Report, inspect
from cnnzip.codec.model import decode_state, encode, load, load_file, save
from cnnzip.codec.streams import decode_stream, encode_stream, entropy_bits

__all__ = [
    "CnnzFile",
    "CnnzFormatError",
    "CnnzVersionError",
    "Report",
    "decode_state",
    "decode_stream",
    "encode",
    "encode_stream",
    "entropy_bits",
    "inspect",
    "load",
    "load_file",
    "read",
    "save",
]
