"""What a model costs: parameters, MACs, bytes per layer, and measured latency.

``cnnzip.profile(model, input_shape)`` (this package's ``profile``, exported at
the top level) counts by forward hooks on any nn.Module; see ``profiler.py``
for how and ``counters.py`` for the counting conventions. The package is
named ``profiling`` so that ``cnnzip.profile`` is always the function and
``cnnzip.profiling`` always the package.

Extension points: ``register_counter`` (cost of a new module type) and
``register_storage`` / a transform's ``storage_bytes`` method (bytes of
weights stored sparse, as a codebook, or binary).
"""

from cnnzip.profiling.counters import Cost, conv_kind, register_counter
from cnnzip.profiling.latency import measure_latency
from cnnzip.profiling.profiler import profile
from cnnzip.profiling.report import (
    MAC_CONVENTION,
    Latency,
    LayerProfile,
    ProfileReport,
    compare,
    comparison,
    comparison_text,
)
from cnnzip.profiling.storage import layer_params, register_storage, weight_bytes

__all__ = [
    "MAC_CONVENTION",
    "Cost",
    "Latency",
    "LayerProfile",
    "ProfileReport",
    "compare",
    "comparison",
    "comparison_text",
    "conv_kind",
    "layer_params",
    "measure_latency",
    "profile",
    "register_counter",
    "register_storage",
    "weight_bytes",
]
