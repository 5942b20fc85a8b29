// The fused Fire kernels (dense and sparse) and the stem and head kernels
// compiled for AVX2 + FMA (see fire_kernel_run.h and
// network_kernel_run.h).
//
// fire_kernel.h and network_kernel.h come first, before any target pragma:
// their inline functions are then compiled for the baseline ISA, like the code
// that calls them.
#include "fire_kernel.h"
#include "network_kernel.h"

#pragma GCC target("avx2,fma")
#include "fire_kernel_run.h"
#include "network_kernel_run.h"
#include "vec_avx2.h"

namespace fire_kernels {
const FireKernel kFireKernelAvx2 = fire_kernel<VecAvx2>();
const NetworkKernel kNetworkKernelAvx2 = network_kernel<VecAvx2>();
}  // namespace fire_kernels
