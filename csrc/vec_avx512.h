// 16-lane float vectors for AVX-512F.
//
// Included only by kernel translation units that wrap it in
// `#pragma GCC target("avx512f")`, so no AVX-512 instruction is ever emitted
// for code that runs before the CPU check.
#pragma once

#include <immintrin.h>

#include "inline.h"
#include "transpose8x8.h"

struct VecAvx512 {
  using reg = __m512;
  static constexpr int W = 16;
  // NCHW tile: 8 output channels x 3 vectors of pixels (48 px): 24
  // accumulators, 3 pixel vectors and 1 broadcast of the 32 zmm registers.
  static constexpr int CO = 8;
  static constexpr int NV = 3;
  // Channels-last tile: 6 pixels x 4 vectors of output channels (64): 24
  // accumulators, 4 weight vectors and 1 broadcast.
  static constexpr int MR = 6;
  static constexpr int NRV = 4;
  // Sparse tiles: vectors of pixels for groups of 1 channel (two chains of
  // accumulators) and of 4 channels.
  static constexpr int SNV1 = 4;
  static constexpr int SNV4 = 2;

  FK_INLINE static reg zero() { return _mm512_setzero_ps(); }
  FK_INLINE static reg load(const float* p) { return _mm512_loadu_ps(p); }
  FK_INLINE static void store(float* p, reg v) { _mm512_storeu_ps(p, v); }
  FK_INLINE static reg broadcast(const float* p) { return _mm512_set1_ps(*p); }
  // a * b + c
  FK_INLINE static reg fmadd(reg a, reg b, reg c) { return _mm512_fmadd_ps(a, b, c); }
  FK_INLINE static reg add(reg a, reg b) { return _mm512_add_ps(a, b); }
  // max(0, v) that keeps NaN: vmaxps returns its second operand when either is NaN.
  FK_INLINE static reg relu(reg v) { return _mm512_max_ps(_mm512_setzero_ps(), v); }
  // max(a, b), NaN if either is (as torch's max pooling): vmaxps returns its
  // second operand when either is NaN, which covers a NaN b; a NaN a is kept.
  FK_INLINE static reg max_nan(reg a, reg b) {
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q), _mm512_max_ps(a, b), a);
  }
  // The lanes [0, n) of v, zeros after.
  FK_INLINE static reg keep_first(reg v, int n) {
    return _mm512_maskz_mov_ps(static_cast<__mmask16>((1u << n) - 1u), v);
  }
  // Through memory rather than _mm512_reduce_add_ps, which SIMDe (the emulated
  // test build) does not alias; it runs once per output channel, not per FMA.
  FK_INLINE static float sum(reg v) {
    alignas(64) float lanes[W];
    _mm512_store_ps(lanes, v);
    float s = 0.f;
    for (int i = 0; i < W; ++i) s += lanes[i];
    return s;
  }
  FK_INLINE static void store_first(float* p, reg v, int n) {
#ifdef FK_EMULATE_AVX512
    // SIMDe's emulated _mm512_mask_storeu_ps (simde_mm512_mask_storeu_ps in
    // simde/x86/avx512/storeu.h, 0.8.2) stores all 16 lanes, zeros in the
    // masked-off ones (simde issue #1204): it would wipe the pixels or channels
    // past n that other tiles and threads own, and write past the end of the
    // output and scratch. Upstream's fix blends with what memory holds, which
    // still writes every lane. So store lane by lane, as the hardware's masked
    // store touches only the first n.
    alignas(64) float lanes[W];
    _mm512_store_ps(lanes, v);
    for (int i = 0; i < n; ++i) p[i] = lanes[i];
#else
    _mm512_mask_storeu_ps(p, static_cast<__mmask16>((1u << n) - 1u), v);
#endif
  }
  // Lane i: p[2i] (even) or p[2i + 1] (odd), i < W: a stride-2 pooling window's columns.
  FK_INLINE static reg even(const float* p) {
    const __m512i idx = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    return _mm512_permutex2var_ps(_mm512_loadu_ps(p), idx, _mm512_loadu_ps(p + W));
  }
  FK_INLINE static reg odd(const float* p) { return even(p + 1); }
  // dst[j * ld + i] = src[i * ls + j] for i, j < W: four 8x8 quadrants.
  FK_INLINE static void transpose(const float* src, int64_t ls, float* dst, int64_t ld) {
    transpose8x8(src, ls, dst, ld);
    transpose8x8(src + 8, ls, dst + 8 * ld, ld);
    transpose8x8(src + 8 * ls, ls, dst + 8, ld);
    transpose8x8(src + 8 * ls + 8, ls, dst + 8 * ld + 8, ld);
  }
};
