// The fused Fire kernels (dense and sparse) compiled for AVX-512F (see
// fire_kernel_run.h).
//
// fire_kernel.h comes first, before any target pragma: its inline functions
// are then compiled for the baseline ISA, like the code that calls them.
#include "fire_kernel.h"

#pragma GCC target("avx512f,fma")
// GCC 12 warns that _mm512_max_ps reads the "undefined" vector it passes as
// the merge source of an all-ones mask: a false positive.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include "fire_kernel_run.h"
#include "vec_avx512.h"

namespace fire_kernels {
const FireKernel kFireKernelAvx512 = fire_kernel<VecAvx512>();
}  // namespace fire_kernels
