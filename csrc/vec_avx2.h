// 8-lane float vectors for AVX2 + FMA.
//
// Included only by kernel translation units that wrap it in
// `#pragma GCC target("avx2,fma")`, so no AVX instruction is ever emitted
// for code that runs before the CPU check.
#pragma once

#include <immintrin.h>

#include "inline.h"
#include "transpose8x8.h"

struct VecAvx2 {
  using reg = __m256;
  static constexpr int W = 8;
  // NCHW tile: CO output channels x NV vectors of pixels (6 x 16 px, BLIS'
  // Zen shape): 12 accumulators, 2 pixel vectors and 1 broadcast fit the 16
  // ymm registers.
  static constexpr int CO = 6;
  static constexpr int NV = 2;
  // Channels-last tile: 6 pixels x 2 vectors of output channels: 12
  // accumulators, 2 weight vectors and 1 broadcast.
  static constexpr int MR = 6;
  static constexpr int NRV = 2;
  // Sparse tiles: vectors of pixels for groups of 1 channel (two chains of
  // accumulators) and of 4 channels.
  static constexpr int SNV1 = 4;
  static constexpr int SNV4 = 2;

  FK_INLINE static reg zero() { return _mm256_setzero_ps(); }
  FK_INLINE static reg load(const float* p) { return _mm256_loadu_ps(p); }
  FK_INLINE static void store(float* p, reg v) { _mm256_storeu_ps(p, v); }
  FK_INLINE static reg broadcast(const float* p) { return _mm256_broadcast_ss(p); }
  // a * b + c
  FK_INLINE static reg fmadd(reg a, reg b, reg c) { return _mm256_fmadd_ps(a, b, c); }
  FK_INLINE static reg add(reg a, reg b) { return _mm256_add_ps(a, b); }
  // max(0, v) that keeps NaN: vmaxps returns its second operand when either is NaN.
  FK_INLINE static reg relu(reg v) { return _mm256_max_ps(_mm256_setzero_ps(), v); }
  // max(a, b), NaN if either is (as torch's max pooling): vmaxps returns its
  // second operand when either is NaN, which covers a NaN b; a NaN a is kept.
  FK_INLINE static reg max_nan(reg a, reg b) {
    return _mm256_blendv_ps(_mm256_max_ps(a, b), a, _mm256_cmp_ps(a, a, _CMP_UNORD_Q));
  }
  // The lanes [0, n) of v, zeros after.
  FK_INLINE static reg keep_first(reg v, int n) {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_and_ps(v, _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(n), lane)));
  }
  FK_INLINE static float sum(reg v) {
    const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(t, _mm_movehdup_ps(t)));
  }
  FK_INLINE static void store_first(float* p, reg v, int n) {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(n), lane);
    _mm256_maskstore_ps(p, mask, v);
  }
  // Lane i: p[2i] (even) or p[2i + 1] (odd), i < W: a stride-2 pooling window's columns.
  // shuffle_ps takes lanes 0 and 2 of each 128-bit half of both inputs
  // (p0 p2 p8 p10 | p4 p6 p12 p14); the 64-bit permute puts the halves in order.
  FK_INLINE static reg even(const float* p) {
    const __m256 s = _mm256_shuffle_ps(_mm256_loadu_ps(p), _mm256_loadu_ps(p + W),
                                       _MM_SHUFFLE(2, 0, 2, 0));
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(s), _MM_SHUFFLE(3, 1, 2, 0)));
  }
  FK_INLINE static reg odd(const float* p) { return even(p + 1); }
  // dst[j * ld + i] = src[i * ls + j] for i, j < W.
  FK_INLINE static void transpose(const float* src, int64_t ls, float* dst, int64_t ld) {
    transpose8x8(src, ls, dst, ld);
  }
};
