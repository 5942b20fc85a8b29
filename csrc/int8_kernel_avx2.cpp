// The int8 fused Fire kernels compiled for AVX2: vpmaddubsw for weights whose
// pairs cannot saturate it, exact int16 widening for any others (qvec_avx2.h,
// int8_fire_run.h). int8_fire.h comes first, before the
// target pragma.
#include "int8_fire.h"

#pragma GCC target("avx2")
#include "int8_fire_run.h"
#include "qvec_avx2.h"

namespace fire_kernels {
const Int8FireKernel kInt8FireAvx2 = int8_fire_kernel<QVecAvx2>(true);
const Int8FireKernel kInt8FireAvx2Wide = int8_fire_kernel<QVecAvx2Wide>();
}  // namespace fire_kernels
