// The fused Fire kernels (dense and sparse) compiled for the baseline ISA (any CPU) (see fire_kernel_impl.h).
#include "fire_kernel.h"

#include "vec_portable.h"

using Vec = VecPortable;
#define FK_ISA_NAMESPACE portable
#include "fire_kernel_impl.h"

const fire_kernels::FireKernel fire_kernels::kFireKernelPortable = {
    &portable::run, VecPortable::CO, VecPortable::W * VecPortable::NV, VecPortable::MR};
