// The fused Fire kernels (dense and sparse) compiled for AVX2 + FMA (see
// fire_kernel_run.h).
//
// fire_kernel.h comes first, before any target pragma: its inline functions
// are then compiled for the baseline ISA, like the code that calls them.
#include "fire_kernel.h"

#pragma GCC target("avx2,fma")
#include "fire_kernel_run.h"
#include "vec_avx2.h"

namespace fire_kernels {
const FireKernel kFireKernelAvx2 = fire_kernel<VecAvx2>();
}  // namespace fire_kernels
