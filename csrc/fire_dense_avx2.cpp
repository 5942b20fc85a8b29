// The dense fused Fire kernel compiled for AVX2 + FMA (see fire_dense_impl.h).
#include "fire_dense.h"

#pragma GCC target("avx2,fma")
#include "vec_avx2.h"

using Vec = VecAvx2;
#define FK_ISA_NAMESPACE avx2
#include "fire_dense_impl.h"

void fire_kernels::fire_dense_avx2(const FireDenseArgs& a, const FireDenseWork& work,
                                     float* scratch) {
  avx2::run(a, work, scratch);
}
