// The fused Fire kernels (dense and sparse) and the stem and head kernels
// compiled for the baseline ISA, which runs on any CPU (see fire_kernel_run.h
// and network_kernel_run.h).
//
// fire_kernel.h and network_kernel.h come first, before any target pragma:
// their inline functions are then compiled for the baseline ISA, like the code
// that calls them.
#include "fire_kernel.h"
#include "network_kernel.h"

#include "fire_kernel_run.h"
#include "network_kernel_run.h"
#include "vec_portable.h"

namespace fire_kernels {
const FireKernel kFireKernelPortable = fire_kernel<VecPortable>();
const NetworkKernel kNetworkKernelPortable = network_kernel<VecPortable>();
}  // namespace fire_kernels
