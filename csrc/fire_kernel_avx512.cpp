// The fused Fire kernels (dense and sparse) and the stem and head kernels
// compiled for AVX-512F (see fire_kernel_run.h and
// network_kernel_run.h).
//
// fire_kernel.h and network_kernel.h come first, before any target pragma:
// their inline functions are then compiled for the baseline ISA, like the code
// that calls them.
#include "fire_kernel.h"
#include "network_kernel.h"

#ifdef FK_EMULATE_AVX512
// A test build (FIRE_KERNELS_EMULATE_AVX512=1, fire_kernels/_build.py), never
// what users load: these kernels on SIMDe's implementation of the AVX-512
// intrinsics, built with -mavx2 -mfma, so that their tile geometry, masked
// tails and transposes run on CPUs without AVX-512.
#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>
#else
#pragma GCC target("avx512f,fma")
#endif
// GCC 12 warns that _mm512_max_ps reads the "undefined" vector it passes as
// the merge source of an all-ones mask: a false positive.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include "fire_kernel_run.h"
#include "network_kernel_run.h"
#include "vec_avx512.h"

namespace fire_kernels {
const FireKernel kFireKernelAvx512 = fire_kernel<VecAvx512>();
const NetworkKernel kNetworkKernelAvx512 = network_kernel<VecAvx512>();
}  // namespace fire_kernels
