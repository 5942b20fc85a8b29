// int8 dot products in plain C++ (any CPU), 8 output channels per "vector":
// the compiler vectorizes what it can for the baseline ISA.
#pragma once

#include <string.h>

#include "inline.h"
#include "qvec_rows.h"

struct QVecPortable {
  static constexpr int W = 8;
  static constexpr int MR = 4;
  static constexpr int NRV = 2;
  struct acc {
    int32_t v[W];
  };
  struct act {
    int32_t x[4];
  };
  using wt = const int8_t*;

  FK_INLINE static void zero(acc& a) {
    for (int o = 0; o < W; ++o) a.v[o] = 0;
  }
  FK_INLINE static act broadcast(const uint8_t* p) { return {{p[0], p[1], p[2], p[3]}}; }
  FK_INLINE static wt load_weights(const int8_t* w) { return w; }
  FK_INLINE static void dot(acc& a, const act& x, wt w) {
    for (int o = 0; o < W; ++o)
      a.v[o] += x.x[0] * w[4 * o] + x.x[1] * w[4 * o + 1] + x.x[2] * w[4 * o + 2] +
                x.x[3] * w[4 * o + 3];
  }
  FK_INLINE static void add(acc& a, const acc& b) {
    for (int o = 0; o < W; ++o) a.v[o] += b.v[o];
  }

  // The sparse side (int8_sparse_run.h): W pixels' quads against one quad's 4
  // weights.
  static constexpr int SNV = 2;
  using pact = const uint8_t*;
  struct qwt {
    int32_t w[4];
  };
  FK_INLINE static pact load_pixels(const uint8_t* p) { return p; }
  FK_INLINE static qwt broadcast_quad(const int32_t* w) {
    int8_t b[4];
    memcpy(b, w, 4);
    return {{b[0], b[1], b[2], b[3]}};
  }
  FK_INLINE static void dot_px(acc& a, pact x, const qwt& w) {
    for (int l = 0; l < W; ++l)
      a.v[l] += x[4 * l] * w.w[0] + x[4 * l + 1] * w.w[1] + x[4 * l + 2] * w.w[2] +
                x[4 * l + 3] * w.w[3];
  }

  // A vector's requantization parameters.
  struct rq {
    int32_t bias[W];
    float m[W];
  };
  FK_INLINE static rq params(const int32_t* bias, const float* m) {
    rq p;
    memcpy(p.bias, bias, sizeof p.bias);
    memcpy(p.m, m, sizeof p.m);
    return p;
  }
  // One output channel's, in every lane (a vector of pixels).
  FK_INLINE static rq params1(int32_t bias, float m) {
    rq p;
    for (int o = 0; o < W; ++o) p.bias[o] = bias, p.m[o] = m;
    return p;
  }
  // clamp(rint(float(acc[o] + bias[o]) * m[o]), 0, 255).
  using ivec = acc;
  FK_INLINE static ivec requant(const acc& a, const rq& p) {
    ivec q;
    for (int o = 0; o < W; ++o) {
      float f = static_cast<float>(a.v[o] + p.bias[o]) * p.m[o];
      f = f > 0.f ? (f < 255.f ? f : 255.f) : 0.f;
      q.v[o] = static_cast<int32_t>(__builtin_rintf(f));  // round half to even
    }
    return q;
  }
  // The same as bytes, the first n lanes at dst.
  FK_INLINE static void store_requant(uint8_t* dst, const acc& a, const rq& p, int n) {
    const ivec q = requant(a, p);
    for (int o = 0; o < n; ++o) dst[o] = static_cast<uint8_t>(q.v[o]);
  }
  // sum[o] += q[o], o < W.
  FK_INLINE static void add_to(int32_t* sum, const ivec& q) {
    for (int o = 0; o < W; ++o) sum[o] += q.v[o];
  }
  FK_INLINE static void store_lanes(int32_t* dst, const ivec& q) { memcpy(dst, q.v, sizeof q.v); }
  FK_INLINE static ivec load_lanes(const int32_t* src) {
    ivec q;
    memcpy(q.v, src, sizeof q.v);
    return q;
  }
  // Pixel (lane) l's 16 bytes, int32 a0[l], a1[l], a2[l], a3[l], the first n
  // stored at the span's pixels (qvec_rows.h) + offset.
  FK_INLINE static void store_pixel_quads(const ivec& a0, const ivec& a1, const ivec& a2,
                                          const ivec& a3, const PixelSpan& span, int64_t offset,
                                          int n) {
    uint8_t* dst = span.at + offset;
    for (int l = span.first; l < span.last; ++l, dst += span.pitch) {
      uint8_t row[16];
      memcpy(row, &a0.v[l], 4), memcpy(row + 4, &a1.v[l], 4);
      memcpy(row + 8, &a2.v[l], 4), memcpy(row + 12, &a3.v[l], 4);
      memcpy(dst, row, n);
    }
  }
  // Lane l: bytes q0[l], q1[l], q2[l], q3[l] (each in [0, 255]) as one int32.
  FK_INLINE static ivec pack4(const ivec& q0, const ivec& q1, const ivec& q2, const ivec& q3) {
    ivec p;
    for (int l = 0; l < W; ++l)
      p.v[l] = static_cast<int32_t>(static_cast<uint32_t>(q0.v[l]) |
                                    static_cast<uint32_t>(q1.v[l]) << 8 |
                                    static_cast<uint32_t>(q2.v[l]) << 16 |
                                    static_cast<uint32_t>(q3.v[l]) << 24);
    return p;
  }
};
