// The fused Fire kernels (dense and sparse) compiled for AVX2 + FMA (see fire_kernel_impl.h).
#include "fire_kernel.h"

#pragma GCC target("avx2,fma")
#include "vec_avx2.h"

using Vec = VecAvx2;
#define FK_ISA_NAMESPACE avx2
#include "fire_kernel_impl.h"

const fire_kernels::FireKernel fire_kernels::kFireKernelAvx2 = {
    &avx2::run, VecAvx2::CO, VecAvx2::W * VecAvx2::NV, VecAvx2::MR};
