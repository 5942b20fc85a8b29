// The int8 fused Fire kernel compiled for AVX-VNNI (256-bit vpdpbusd; see
// int8_fire_run.h). int8_fire.h comes first, before the target pragma.
#include "int8_fire.h"

#pragma GCC target("avx2,avxvnni")
#include "int8_fire_run.h"
#include "qvec_avx2.h"

namespace fire_kernels {
const Int8FireKernel kInt8FireAvxVnni = int8_fire_kernel<QVecAvxVnni>();
}  // namespace fire_kernels
