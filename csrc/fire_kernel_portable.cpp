// The fused Fire kernels (dense and sparse) compiled for the baseline ISA, which
// runs on any CPU (see fire_kernel_run.h).
//
// fire_kernel.h comes first, before any target pragma: its inline functions
// are then compiled for the baseline ISA, like the code that calls them.
#include "fire_kernel.h"

#include "fire_kernel_run.h"
#include "vec_portable.h"

namespace fire_kernels {
const FireKernel kFireKernelPortable = fire_kernel<VecPortable>();
}  // namespace fire_kernels
