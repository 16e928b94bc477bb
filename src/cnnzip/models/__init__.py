"""The model zoo: every architecture registers its builders here on import.

Stages above the zoo register their own (cnnzip.binary: "binarized"); ``import cnnzip``
imports them all, so the registry is complete once any part of cnnzip is imported.
The user's own model needs no registering: ``get_model("mynets:small_cnn", width=8)``.
"""

from cnnzip.models import (
    alexnet,  # noqa: F401
    googlenet,  # noqa: F401
    lenet,  # noqa: F401  (registers the LeNets)
    mlp,  # noqa: F401  (registers Hinton's MLPs)
    mobilenet,  # noqa: F401
    resnet,  # noqa: F401
    shufflenet,  # noqa: F401
    squeezenet,  # noqa: F401
    vgg,  # noqa: F401
)
from cnnzip.models.registry import (
    UntrustedFactoryError,
    build_model,
    check_model_kwargs,
    get_model,
    get_model_builder,
    is_factory,
    list_models,
    register_model,
    trust_factories,
)

__all__ = [
    "UntrustedFactoryError",
    "build_model",
    "check_model_kwargs",
    "get_model",
    "get_model_builder",
    "is_factory",
    "list_models",
    "register_model",
    "trust_factories",
]
