// int8 dot products on 256-bit vectors, 8 output channels each: AVX2
// (QVecAvx2, QVecAvx2Wide) and AVX-VNNI (QVecAvxVnni).
//
// AVX2's fast u8 x s8 product, vpmaddubsw, adds two products into int16 with
// saturation: 255*127*2 = 64770 does not fit. It is exact when every pair of
// weights it adds (channels 0-1 and 2-3 of a quad) has |w0| + |w1| <= 128
// (255*128 = 32640 <= 32767), which weights quantized to 7 bits always meet:
//   * QVecAvx2 (vpmaddubsw, then vpmaddwd by ones into int32) runs a Fire
//     whose packed weights all meet it (the operator checks);
//   * QVecAvx2Wide runs any other: it widens both sides to int16 and uses
//     vpmaddwd (s16 x s16 pairs into int32, exact). A pixel's 4 bytes,
//     zero-extended, against a quad of 4 channels' weights, sign-extended,
//     gives each output channel two int32 partial sums (channels 0-1 and
//     2-3), kept apart in two accumulators and added once, in the epilogue.
// Both are exact for any input: no result ever saturates.
//
// Included only by int8_kernel_avx2.cpp and int8_kernel_avx_vnni.cpp under
// their `#pragma GCC target`.
#pragma once

#include <immintrin.h>
#include <string.h>

#include "inline.h"
#include "qvec_rows.h"

struct QVec256 {
  static constexpr int W = 8;

  FK_INLINE static __m256i broadcast32(const uint8_t* p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
  }

  // A vector's requantization parameters, loaded once per tile.
  struct rq {
    __m256i bias;
    __m256 m;
  };
  FK_INLINE static rq params(const int32_t* bias, const float* m) {
    return {_mm256_loadu_si256(reinterpret_cast<const __m256i*>(bias)), _mm256_loadu_ps(m)};
  }
  // One output channel's, in every lane (a vector of pixels).
  FK_INLINE static rq params1(int32_t bias, float m) {
    return {_mm256_set1_epi32(bias), _mm256_set1_ps(m)};
  }
  // rint(min(float(s[o] + bias[o]) * m[o], 255)) as int32 lanes, not yet clamped
  // at 0. The upper clamp comes before the conversion, which turns
  // out-of-range values into INT_MIN.
  FK_INLINE static __m256i below_256(__m256i s, const rq& p) {
    const __m256 f = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(s, p.bias)), p.m);
    return _mm256_cvtps_epi32(_mm256_min_ps(f, _mm256_set1_ps(255.f)));  // round half to even
  }
  using ivec = __m256i;
  // clamp(rint(float(s[o] + bias[o]) * m[o]), 0, 255) as int32 lanes.
  FK_INLINE static ivec requant8(__m256i s, const rq& p) {
    return _mm256_max_epi32(below_256(s, p), _mm256_setzero_si256());
  }
  // The same as bytes, the first n lanes at dst: packus saturates the negative
  // lanes to 0.
  FK_INLINE static void store_requant8(uint8_t* dst, __m256i s, const rq& p, int n) {
    const __m256i q = below_256(s, p);
    const __m128i words =
        _mm_packus_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1));
    const __m128i bytes = _mm_packus_epi16(words, words);  // lanes 0-7: the 8 channels
    if (n == W) {
      _mm_storel_epi64(reinterpret_cast<__m128i*>(dst), bytes);
      return;
    }
    alignas(16) uint8_t lanes[16];
    _mm_store_si128(reinterpret_cast<__m128i*>(lanes), bytes);
    memcpy(dst, lanes, n);
  }
  // sum[o] += q[o], o < W.
  FK_INLINE static void add_to(int32_t* sum, ivec q) {
    __m256i* p = reinterpret_cast<__m256i*>(sum);
    _mm256_storeu_si256(p, _mm256_add_epi32(_mm256_loadu_si256(p), q));
  }
  FK_INLINE static void store_lanes(int32_t* dst, ivec q) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst), q);
  }
  FK_INLINE static ivec load_lanes(const int32_t* src) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src));
  }
  // Pixel (lane) l's 16 bytes, int32 a0[l], a1[l], a2[l], a3[l], the first n
  // stored at the span's pixels (qvec_rows.h) + offset. A 4 x 4 transpose within
  // each 128-bit lane: u_m's lane j is then pixel 4j + m's row.
  FK_INLINE static void store_pixel_quads(ivec a0, ivec a1, ivec a2, ivec a3,
                                          const PixelSpan& span, int64_t offset, int n) {
    const __m256i t0 = _mm256_unpacklo_epi32(a0, a1), t1 = _mm256_unpackhi_epi32(a0, a1);
    const __m256i t2 = _mm256_unpacklo_epi32(a2, a3), t3 = _mm256_unpackhi_epi32(a2, a3);
    const __m256i u[4] = {_mm256_unpacklo_epi64(t0, t2), _mm256_unpackhi_epi64(t0, t2),
                          _mm256_unpacklo_epi64(t1, t3), _mm256_unpackhi_epi64(t1, t3)};
    if (n == 16) {  // straight from the registers, as qvec_avx512.h
      const auto row = [&]<int L>() { return _mm256_extracti128_si256(u[L % 4], L / 4); };
      store_lanes_at(span, offset, row, std::make_integer_sequence<int, W>());
      return;
    }
    alignas(32) uint8_t rows[4][2][16];  // [m][j]: pixel 4j + m
#pragma GCC unroll 4
    for (int m = 0; m < 4; ++m) _mm256_store_si256(reinterpret_cast<__m256i*>(rows[m]), u[m]);
    store_pixel_rows<W>(rows, span, offset, n);
  }
  // Lane l: bytes q0[l], q1[l], q2[l], q3[l] (each in [0, 255]) as one int32.
  FK_INLINE static ivec pack4(ivec q0, ivec q1, ivec q2, ivec q3) {
    return _mm256_or_si256(_mm256_or_si256(q0, _mm256_slli_epi32(q1, 8)),
                           _mm256_or_si256(_mm256_slli_epi32(q2, 16), _mm256_slli_epi32(q3, 24)));
  }

  // The sparse kernels' weights (int8_sparse_run.h): one quad's 4 weights in
  // every lane, against vectors of 8 pixels (each lane a pixel's quad).
  FK_INLINE static __m256i quad32(const int32_t* w) { return _mm256_set1_epi32(*w); }
};

// The 256-bit types with one accumulator per vector of 8 channels, the raw
// broadcast and the raw weights (QVecAvx2, QVecAvxVnni): they differ in the dot.
struct QVec256Direct : QVec256 {
  using acc = __m256i;
  using act = __m256i;
  using wt = __m256i;

  FK_INLINE static void zero(acc& a) { a = _mm256_setzero_si256(); }
  FK_INLINE static act broadcast(const uint8_t* p) { return broadcast32(p); }
  FK_INLINE static wt load_weights(const int8_t* w) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w));
  }
  FK_INLINE static ivec requant(acc a, const rq& p) { return requant8(a, p); }
  FK_INLINE static void store_requant(uint8_t* dst, acc a, const rq& p, int n) {
    store_requant8(dst, a, p, n);
  }
  FK_INLINE static void add(acc& a, const acc& b) { a = _mm256_add_epi32(a, b); }

  // The sparse side: the pixels' bytes and the quad's weights as they are, the
  // path's own dot. 4 vectors a tile, two accumulator sets: 8 accumulators.
  static constexpr int SNV = 4;
  using pact = __m256i;
  using qwt = __m256i;
  FK_INLINE static pact load_pixels(const uint8_t* p) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  }
  FK_INLINE static qwt broadcast_quad(const int32_t* w) { return quad32(w); }
};

struct QVecAvx2 : QVec256Direct {
  // 4 pixels x 2 vectors: 8 accumulators, 2 weight vectors, 1 broadcast, the
  // ones and a product.
  static constexpr int MR = 4;
  static constexpr int NRV = 2;

  // acc[o] += sum_k x[k] * w[o][k], k < 4: pairs into int16 (exact for weights
  // whose pairs meet the bound above), then the two pairs into int32.
  FK_INLINE static void dot(acc& a, act x, wt w) {
    const __m256i pairs = _mm256_maddubs_epi16(x, w);
    a = _mm256_add_epi32(a, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)));
  }
  FK_INLINE static void dot_px(acc& a, pact x, qwt w) { dot(a, x, w); }
};

struct QVecAvx2Wide : QVec256 {
  // 6 pixels x 1 vector: 12 accumulator registers, 2 of weights, 1 broadcast.
  static constexpr int MR = 6;
  static constexpr int NRV = 1;
  // Channel o's sums over channel pairs (0, 1) and (2, 3) of each quad: lo
  // holds them for o < 4 as [o0 o0' o1 o1' | o2 o2' o3 o3'], hi for 4 <= o < 8.
  struct acc {
    __m256i lo, hi;
  };
  using act = __m256i;  // the pixel's 4 bytes as int16, repeated
  struct wt {
    __m256i lo, hi;  // channels 0-3 and 4-7, 4 weights each, as int16
  };

  FK_INLINE static void zero(acc& a) { a.lo = a.hi = _mm256_setzero_si256(); }
  FK_INLINE static act broadcast(const uint8_t* p) {
    return _mm256_cvtepu8_epi16(_mm256_castsi256_si128(broadcast32(p)));
  }
  FK_INLINE static wt load_weights(const int8_t* w) {
    return {_mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w))),
            _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + 16)))};
  }
  FK_INLINE static void dot(acc& a, act x, const wt& w) {
    a.lo = _mm256_add_epi32(a.lo, _mm256_madd_epi16(x, w.lo));
    a.hi = _mm256_add_epi32(a.hi, _mm256_madd_epi16(x, w.hi));
  }
  // hadd: [o0 o1 o4 o5 | o2 o3 o6 o7]; the permute puts the 64-bit pairs in order.
  FK_INLINE static __m256i sums(const acc& a) {
    return _mm256_permute4x64_epi64(_mm256_hadd_epi32(a.lo, a.hi), 0xD8);
  }
  FK_INLINE static ivec requant(const acc& a, const rq& p) { return requant8(sums(a), p); }
  FK_INLINE static void store_requant(uint8_t* dst, const acc& a, const rq& p, int n) {
    store_requant8(dst, sums(a), p, n);
  }
  FK_INLINE static void add(acc& a, const acc& b) {
    a.lo = _mm256_add_epi32(a.lo, b.lo);
    a.hi = _mm256_add_epi32(a.hi, b.hi);
  }

  // The sparse side, the same arithmetic with pixels in place of channels: 8
  // pixels' quads zero-extended to int16 (pixels 0-3 in lo, 4-7 in hi) against
  // the quad's 4 weights sign-extended and repeated; acc.lo then holds pixel
  // p's two partial sums where `sums` expects channel p's. 2 vectors a tile:
  // 8 accumulator registers.
  static constexpr int SNV = 2;
  struct pact {
    __m256i lo, hi;
  };
  using qwt = __m256i;
  FK_INLINE static pact load_pixels(const uint8_t* p) {
    return {_mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))),
            _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16)))};
  }
  FK_INLINE static qwt broadcast_quad(const int32_t* w) {
    return _mm256_cvtepi8_epi16(_mm256_castsi256_si128(quad32(w)));
  }
  FK_INLINE static void dot_px(acc& a, const pact& x, qwt w) {
    a.lo = _mm256_add_epi32(a.lo, _mm256_madd_epi16(x.lo, w));
    a.hi = _mm256_add_epi32(a.hi, _mm256_madd_epi16(x.hi, w));
  }
};

// Only where int8_kernel_avx_vnni.cpp defines FK_DPBUSD256: its 256-bit vpdpbusd
// (native under its target, or SIMDe's in the emulated test build).
#ifdef FK_DPBUSD256
struct QVecAvxVnni : QVec256Direct {
  // 6 pixels x 2 vectors: 12 accumulators, 2 weight vectors, 1 broadcast.
  static constexpr int MR = 6;
  static constexpr int NRV = 2;

  // acc[o] += sum_k x[k] * w[o][k], k < 4: one VEX vpdpbusd.
  FK_INLINE static void dot(acc& a, act x, wt w) { a = FK_DPBUSD256(a, x, w); }
  FK_INLINE static void dot_px(acc& a, pact x, qwt w) { dot(a, x, w); }
};
#endif
