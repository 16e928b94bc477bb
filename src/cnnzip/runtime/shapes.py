"""Shape rules shared by the runtime's convolutions: torch's, with errors that say what to do.

torch checks these inside its kernels; the runtime's own convolutions (the binary
C kernels, the CSR twins) compute their output size themselves, so they check first:
a stride of 0 would divide by zero, a kernel larger than the padded input would ask
for a negative size, a float stride reaches ``torch.empty``, a stride of 2**40
overflows the C int it is passed as, and a padding of 2**20 asks the allocator for
terabytes. Settings are bounded at construction, tensor sizes before allocation.
"""

from __future__ import annotations

import math

from cnnzip.errors import CnnzipError

__all__ = [
    "C_INT_MAX",
    "MAX_ELEMENTS",
    "MAX_SETTING",
    "check_conv_settings",
    "check_elements",
    "check_int",
    "conv_output_size",
]

Pair = tuple[int, int]

MAX_SETTING = 2**16  # stride, padding, kernel side: far beyond any real conv, well inside a C int
MAX_ELEMENTS = 2**31  # one tensor the runtime allocates: 8 GiB of float32
C_INT_MAX = 2**31 - 1  # what the C kernels take their sizes as


def check_int(
    layer: str, what: str, value: object, lowest: int, highest: int = MAX_SETTING
) -> None:
    """Refuse anything but an int in [lowest, highest]: a bool, a float, a numpy scalar
    would reach torch or C as something else."""
    if not isinstance(value, int) or isinstance(value, bool) or not lowest <= value <= highest:
        raise CnnzipError(
            f"{layer}: {what} must be an integer in [{lowest}, {highest}], got {value!r}"
        )


def check_conv_settings(layer: str, stride: Pair, padding: Pair, kernel: Pair) -> None:
    """Refuse, at construction, a conv no input can run through (or only absurdly)."""
    for what, values, lowest in (
        ("stride", stride, 1),
        ("padding", padding, 0),
        ("kernel size", kernel, 1),
    ):
        for value in values:
            check_int(layer, what, value, lowest)


def check_elements(layer: str, what: str, shape: tuple[int, ...]) -> None:
    """Refuse, before allocating it, a tensor of more than ``MAX_ELEMENTS`` elements."""
    count = math.prod(shape)
    if count > MAX_ELEMENTS:
        raise CnnzipError(
            f"{layer}: the {what} {shape} would hold {count} elements, more than "
            f"{MAX_ELEMENTS} ({4 * MAX_ELEMENTS // 2**30} GiB of float32); "
            "give a smaller batch, input or padding"
        )


def conv_output_size(layer: str, hw: Pair, kernel: Pair, stride: Pair, padding: Pair) -> Pair:
    """(Ho, Wo) of a conv over an (H, W) input; an input smaller than the kernel once
    padded is refused, as torch refuses it."""
    padded = (hw[0] + 2 * padding[0], hw[1] + 2 * padding[1])
    if min(hw) < 1 or padded[0] < kernel[0] or padded[1] < kernel[1]:
        raise CnnzipError(
            f"{layer}: a {hw[0]}x{hw[1]} input padded by {padding} is smaller than the "
            f"{kernel[0]}x{kernel[1]} kernel; give a larger input"
        )
    return (padded[0] - kernel[0]) // stride[0] + 1, (padded[1] - kernel[1]) // stride[1] + 1
