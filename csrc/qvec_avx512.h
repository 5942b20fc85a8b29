// int8 dot products for AVX-512 VNNI: 16 output channels per vector.
//
// Included only by int8_kernel_avx512_vnni.cpp under its `#pragma GCC target`
// (or, in the emulated test build, on SIMDe).
#pragma once

#include <immintrin.h>
#include <string.h>

#include "inline.h"
#include "qvec_rows.h"

struct QVecAvx512Vnni {
  static constexpr int W = 16;
  // 6 pixels x 4 vectors of 16 channels: 24 accumulators, 4 weight vectors
  // and 1 broadcast of the 32 zmm registers.
  static constexpr int MR = 6;
  static constexpr int NRV = 4;
  using acc = __m512i;
  using act = __m512i;
  using wt = __m512i;

  FK_INLINE static void zero(acc& a) { a = _mm512_setzero_si512(); }
  // A pixel's 4 channel bytes in every lane.
  FK_INLINE static act broadcast(const uint8_t* p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm512_set1_epi32(v);
  }
  // 16 channels x 4 weights (64 bytes of a packed panel).
  FK_INLINE static wt load_weights(const int8_t* w) { return _mm512_loadu_si512(w); }
  // acc[o] += sum_k x[k] * w[o][k], k < 4: one vpdpbusd (u8 x s8, no saturation).
  FK_INLINE static void dot(acc& a, act x, wt w) { a = _mm512_dpbusd_epi32(a, x, w); }
  FK_INLINE static void add(acc& a, const acc& b) { a = _mm512_add_epi32(a, b); }

  // The sparse kernels' side (int8_sparse_run.h): vectors of 16 pixels, each
  // lane a pixel's 4 channels of one quad, against one quad's 4 weights in
  // every lane. 8 vectors a tile (an entry's bookkeeping spread over 8 dots),
  // two accumulator sets: 16 accumulators, 8 pixel vectors.
  static constexpr int SNV = 8;
  using pact = __m512i;
  using qwt = __m512i;
  FK_INLINE static pact load_pixels(const uint8_t* p) { return _mm512_loadu_si512(p); }
  FK_INLINE static qwt broadcast_quad(const int32_t* w) { return _mm512_set1_epi32(*w); }
  FK_INLINE static void dot_px(acc& a, pact x, qwt w) {
#ifdef FK_EMULATE_AVX512
    dot(a, x, w);
#else
    // The instruction itself: with the intrinsic, GCC 12 copied every
    // accumulator of the sparse loop out and back each entry.
    asm("vpdpbusd %2, %1, %0" : "+v"(a) : "v"(x), "v"(w));
#endif
  }

  // A vector's requantization parameters, loaded once per tile.
  struct rq {
    __m512i bias;
    __m512 m;
  };
  FK_INLINE static rq params(const int32_t* bias, const float* m) {
    return {_mm512_loadu_si512(bias), _mm512_loadu_ps(m)};
  }
  // One output channel's, in every lane (a vector of pixels).
  FK_INLINE static rq params1(int32_t bias, float m) {
    return {_mm512_set1_epi32(bias), _mm512_set1_ps(m)};
  }
  FK_INLINE static __m512 scaled(acc a, const rq& p) {
    return _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(a, p.bias)), p.m);
  }
  // clamp(rint(float(acc[o] + bias[o]) * m[o]), 0, 255) as int32 lanes. Clamped
  // before the conversion, which turns out-of-range values into INT_MIN.
  using ivec = __m512i;
  FK_INLINE static ivec requant(acc a, const rq& p) {
    const __m512 f = _mm512_max_ps(scaled(a, p), _mm512_setzero_ps());
    return _mm512_cvtps_epi32(_mm512_min_ps(f, _mm512_set1_ps(255.f)));  // round half to even
  }
  // The same as bytes, the first n lanes at dst. Natively the upper clamp is
  // vpmovusdb's unsigned saturation: a value past 2**31 converts to INT_MIN,
  // 2**31 unsigned, which saturates to 255 as well.
  FK_INLINE static void store_requant(uint8_t* dst, acc a, const rq& p, int n) {
    alignas(64) uint8_t bytes[W];
#ifdef FK_EMULATE_AVX512
    // SIMDe 0.8.2 has no _mm512_cvtusepi32_epi8: narrow through memory.
    alignas(64) int32_t lanes[W];
    _mm512_store_si512(lanes, requant(a, p));
    for (int i = 0; i < W; ++i) bytes[i] = static_cast<uint8_t>(lanes[i]);
#else
    const __m512i q = _mm512_cvtps_epi32(_mm512_max_ps(scaled(a, p), _mm512_setzero_ps()));
    if (n == W) {
      _mm_storeu_si128(reinterpret_cast<__m128i*>(dst), _mm512_cvtusepi32_epi8(q));
      return;
    }
    _mm_store_si128(reinterpret_cast<__m128i*>(bytes), _mm512_cvtusepi32_epi8(q));
#endif
    memcpy(dst, bytes, n);
  }
  // sum[o] += q[o], o < W.
  FK_INLINE static void add_to(int32_t* sum, ivec q) {
    _mm512_storeu_si512(sum, _mm512_add_epi32(_mm512_loadu_si512(sum), q));
  }
  FK_INLINE static void store_lanes(int32_t* dst, ivec q) { _mm512_storeu_si512(dst, q); }
  FK_INLINE static ivec load_lanes(const int32_t* src) { return _mm512_loadu_si512(src); }
  // Pixel (lane) l's 16 bytes, int32 a0[l], a1[l], a2[l], a3[l], the first n
  // stored at the span's pixels (qvec_rows.h) + offset. A 4 x 4 transpose within
  // each 128-bit lane: u_m's lane j is then pixel 4j + m's row.
  FK_INLINE static void store_pixel_quads(ivec a0, ivec a1, ivec a2, ivec a3,
                                          const PixelSpan& span, int64_t offset, int n) {
    const __m512i t0 = _mm512_unpacklo_epi32(a0, a1), t1 = _mm512_unpackhi_epi32(a0, a1);
    const __m512i t2 = _mm512_unpacklo_epi32(a2, a3), t3 = _mm512_unpackhi_epi32(a2, a3);
    const __m512i u[4] = {_mm512_unpacklo_epi64(t0, t2), _mm512_unpackhi_epi64(t0, t2),
                          _mm512_unpacklo_epi64(t1, t3), _mm512_unpackhi_epi64(t1, t3)};
    if (n == 16) {
      // Straight from the registers: each 16-byte load of the 64-byte stores
      // below waits for their forwarding (perf, AMD Zen 4: as long as the
      // sparse Fire's dot products of a 16-channel Fire).
      const auto row = [&]<int L>() { return _mm512_extracti32x4_epi32(u[L % 4], L / 4); };
      store_lanes_at(span, offset, row, std::make_integer_sequence<int, W>());
      return;
    }
    alignas(64) uint8_t rows[4][4][16];  // [m][j]: pixel 4j + m
#pragma GCC unroll 4
    for (int m = 0; m < 4; ++m) _mm512_store_si512(rows[m], u[m]);
    store_pixel_rows<W>(rows, span, offset, n);
  }
  // Lane l: bytes q0[l], q1[l], q2[l], q3[l] (each in [0, 255]) as one int32.
  FK_INLINE static ivec pack4(ivec q0, ivec q1, ivec q2, ivec q3) {
    return _mm512_or_si512(_mm512_or_si512(q0, _mm512_slli_epi32(q1, 8)),
                           _mm512_or_si512(_mm512_slli_epi32(q2, 16), _mm512_slli_epi32(q3, 24)));
  }
};
