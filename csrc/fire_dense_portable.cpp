// The dense fused Fire kernel compiled for the baseline ISA (any CPU) (see fire_dense_impl.h).
#include "fire_dense.h"

#include "vec_portable.h"

using Vec = VecPortable;
#define FK_ISA_NAMESPACE portable
#include "fire_dense_impl.h"

void fire_kernels::fire_dense_portable(const FireDenseArgs& a, const FireDenseWork& work,
                                     float* scratch) {
  portable::run(a, work, scratch);
}
