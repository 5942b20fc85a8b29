// The int8 kernels (fused Fire, head) compiled for AVX2: vpmaddubsw for weights whose
// pairs cannot saturate it, exact int16 widening for any others (qvec_avx2.h,
// int8_kernel_run.h). int8_kernel.h comes first, before the
// target pragma.
#include "int8_kernel.h"

#pragma GCC target("avx2")
#include "int8_kernel_run.h"
#include "qvec_avx2.h"

namespace fire_kernels {
const Int8Kernel kInt8Avx2 = int8_kernel<QVecAvx2>(true);
const Int8Kernel kInt8Avx2Wide = int8_kernel<QVecAvx2Wide>();
}  // namespace fire_kernels
