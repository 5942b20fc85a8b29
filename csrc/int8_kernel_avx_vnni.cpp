// The int8 kernels (fused Fire, stem, head) compiled for AVX-VNNI (256-bit
// vpdpbusd; see int8_kernel_run.h). int8_kernel.h comes first, before the
// target pragma.
#include "int8_kernel.h"

#ifdef FK_EMULATE_AVX512
// The emulated test build (fire_kernel_avx512.cpp): SIMDe's 256-bit vpdpbusd
// (AVX512-VNNI's VL form, which computes what AVX-VNNI's does) on AVX2, so
// that this path runs on CPUs without AVX-VNNI too.
#include <simde/x86/avx512.h>
#define FK_DPBUSD256 simde_mm256_dpbusd_epi32
#else
#pragma GCC target("avx2,avxvnni")
#define FK_DPBUSD256 _mm256_dpbusd_avx_epi32
#endif
#include "int8_kernel_run.h"
#include "qvec_avx2.h"

namespace fire_kernels {
const Int8Kernel kInt8AvxVnni = int8_kernel<QVecAvxVnni>();
}  // namespace fire_kernels
