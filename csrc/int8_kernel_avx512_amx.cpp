// The int8 kernels for CPUs with AMX (Intel Sapphire Rapids and later): the
// dense Fire, head and stem on tile multiplies (int8_amx_fire_run.h,
// int8_amx_head_run.h, int8_amx_stem_run.h); the sparse kernels as on AVX-512
// VNNI (their skipping of zero quads does not fill 16 x 64-byte tiles). int8_kernel.h comes first, before the target
// pragma (fire_kernel_avx512.cpp says why).
#include "int8_kernel.h"

#ifdef FK_EMULATE_AVX512
// The emulated test build: SIMDe's AVX-512 and amx_tiles.h's scalar tiles.
#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>
#else
#pragma GCC target("avx512f,avx512vnni,amx-tile,amx-int8")
#include <immintrin.h>
#endif
// GCC 12's false positive about the merge source of all-ones masks
// (fire_kernel_avx512.cpp).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include "int8_amx_fire_run.h"
#include "int8_amx_head_run.h"
#include "int8_amx_stem_run.h"
#include "int8_kernel_run.h"
#include "qvec_avx512.h"

namespace fire_kernels {
const Int8Kernel kInt8Avx512Amx = [] {
  Int8Kernel k = int8_kernel<QVecAvx512Vnni>();
  k.fire = &Int8AmxFire<QVecAvx512Vnni>::run;
  k.head = &Int8AmxHead<QVecAvx512Vnni>::run;
  k.stem = &Int8AmxStem<QVecAvx512Vnni>::run;
  return k;
}();
}  // namespace fire_kernels
