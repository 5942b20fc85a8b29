// The int8 kernels (fused Fire, head) compiled for AVX-VNNI (256-bit vpdpbusd; see
// int8_kernel_run.h). int8_kernel.h comes first, before the target pragma.
#include "int8_kernel.h"

#pragma GCC target("avx2,avxvnni")
#include "int8_kernel_run.h"
#include "qvec_avx2.h"

namespace fire_kernels {
const Int8Kernel kInt8AvxVnni = int8_kernel<QVecAvxVnni>();
}  // namespace fire_kernels
