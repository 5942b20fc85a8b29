// int8 dot products in plain C++ (any CPU), 8 output channels per "vector":
// the compiler vectorizes what it can for the baseline ISA.
#pragma once

#include <string.h>

#include "inline.h"

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

  // A vector's requantization parameters.
  struct rq {
    const int32_t* bias;
    const float* m;
  };
  FK_INLINE static rq params(const int32_t* bias, const float* m) { return {bias, m}; }
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
};
