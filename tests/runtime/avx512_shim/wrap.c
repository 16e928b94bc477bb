/* xnor_conv.c with the AVX-512 intrinsics replaced by plain C (shim512.h), so the
 * AVX-512 path's indexing and masking run on any x86 CPU. */
#define _GNU_SOURCE /* as xnor_conv.c, which is included after the system headers here */
#include <immintrin.h>

#include "shim512.h"
#include "xnor_conv.c"
