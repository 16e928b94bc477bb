"""Shape rules shared by the runtime's convolutions: torch's, with errors that say what to do.

torch checks these inside its kernels; the runtime's own convolutions (the binary
C kernels, the CSR twins) compute their output size themselves, so they check first:
a stride of 0 would divide by zero, a kernel larger than the padded input would ask
for a negative size.
"""

from __future__ import annotations

from cnnzip.errors import CnnzipError

__all__ = ["check_conv_settings", "conv_output_size"]

Pair = tuple[int, int]


def check_conv_settings(layer: str, stride: Pair, padding: Pair) -> None:
    """Refuse, at construction, a conv no input can run through."""
    if min(stride) < 1 or min(padding) < 0:
        raise CnnzipError(
            f"{layer}: stride must be >= 1 and padding >= 0, got stride {stride}, padding {padding}"
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
