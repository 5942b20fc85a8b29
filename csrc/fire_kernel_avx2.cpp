// The fused Fire kernels (dense and sparse) compiled for AVX2 + FMA (see fire_kernel_impl.h).
#include "fire_kernel.h"

#pragma GCC target("avx2,fma")
#include "vec_avx2.h"

using Vec = VecAvx2;
#define FK_ISA_NAMESPACE avx2
#include "fire_kernel_impl.h"

void fire_kernels::fire_kernel_avx2(const FireArgs& a, const FireWork& work,
                                     float* scratch) {
  avx2::run(a, work, scratch);
}
