// The int8 kernels (fused Fire, head) compiled for AVX-512 VNNI (see int8_kernel_run.h).
// int8_kernel.h comes first, before the target pragma (fire_kernel_avx512.cpp
// says why).
#include "int8_kernel.h"

#ifdef FK_EMULATE_AVX512
// The emulated test build (fire_kernel_avx512.cpp): SIMDe's AVX-512 on AVX2 + FMA.
#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>
#else
#pragma GCC target("avx512f,avx512vnni")
#endif
// GCC 12's false positive about the merge source of all-ones masks
// (fire_kernel_avx512.cpp).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include "int8_kernel_run.h"
#include "qvec_avx512.h"

namespace fire_kernels {
const Int8Kernel kInt8Avx512Vnni = int8_kernel<QVecAvx512Vnni>();
}  // namespace fire_kernels
