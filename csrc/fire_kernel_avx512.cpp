// The fused Fire kernels (dense and sparse) compiled for AVX-512F (see fire_kernel_impl.h).
#include "fire_kernel.h"

#pragma GCC target("avx512f,fma")
// GCC 12 warns that _mm512_max_ps reads the "undefined" vector it passes as
// the merge source of an all-ones mask: a false positive.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include "vec_avx512.h"

using Vec = VecAvx512;
#define FK_ISA_NAMESPACE avx512
#include "fire_kernel_impl.h"

const fire_kernels::FireKernel fire_kernels::kFireKernelAvx512 = {
    &avx512::run, VecAvx512::CO, VecAvx512::W * VecAvx512::NV, VecAvx512::MR};
