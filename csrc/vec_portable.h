// Portable 16-lane float "vectors": plain arrays that the compiler vectorises
// for the baseline x86-64 ISA (SSE2) or any other target.
//
// The lane count matches AVX-512 on purpose: the tests run this path on every
// machine, so the kernel's wide-vector tiling and tail handling are exercised
// even where no AVX-512 CPU is at hand.
#pragma once

#include <cstdint>

#include "inline.h"

struct VecPortable {
  struct reg {
    float v[16];
  };
  static constexpr int W = 16;
  // NCHW tile: 4 output channels x 16 pixels.
  static constexpr int CO = 4;
  static constexpr int NV = 1;
  // Channels-last tile: 4 pixels x 16 output channels.
  static constexpr int MR = 4;
  static constexpr int NRV = 1;
  // Sparse tiles: vectors of pixels for groups of 1 channel (two chains of
  // accumulators) and of 4 channels.
  static constexpr int SNV1 = 2;
  static constexpr int SNV4 = 1;

  FK_INLINE static reg zero() {
    reg r;
    for (int i = 0; i < W; ++i) r.v[i] = 0.f;
    return r;
  }
  FK_INLINE static reg load(const float* p) {
    reg r;
    for (int i = 0; i < W; ++i) r.v[i] = p[i];
    return r;
  }
  FK_INLINE static void store(float* p, reg a) {
    for (int i = 0; i < W; ++i) p[i] = a.v[i];
  }
  FK_INLINE static reg broadcast(const float* p) {
    reg r;
    for (int i = 0; i < W; ++i) r.v[i] = *p;
    return r;
  }
  // a * b + c
  FK_INLINE static reg fmadd(reg a, reg b, reg c) {
    for (int i = 0; i < W; ++i) c.v[i] += a.v[i] * b.v[i];
    return c;
  }
  FK_INLINE static reg add(reg a, reg b) {
    for (int i = 0; i < W; ++i) a.v[i] += b.v[i];
    return a;
  }
  // max(0, v) that keeps NaN, like torch.relu.
  FK_INLINE static reg relu(reg a) {
    for (int i = 0; i < W; ++i) a.v[i] = (a.v[i] < 0.f) ? 0.f : a.v[i];
    return a;
  }
  // max(a, b), NaN if either is (as torch's max pooling).
  FK_INLINE static reg max_nan(reg a, reg b) {
    for (int i = 0; i < W; ++i) a.v[i] = (a.v[i] != a.v[i] || a.v[i] > b.v[i]) ? a.v[i] : b.v[i];
    return a;
  }
  // The lanes [0, n) of v, zeros after.
  FK_INLINE static reg keep_first(reg a, int n) {
    for (int i = n; i < W; ++i) a.v[i] = 0.f;
    return a;
  }
  FK_INLINE static float sum(reg a) {
    float s = 0.f;
    for (int i = 0; i < W; ++i) s += a.v[i];
    return s;
  }
  FK_INLINE static void store_first(float* p, reg a, int n) {
    for (int i = 0; i < n; ++i) p[i] = a.v[i];
  }
  // dst[j * ld + i] = src[i * ls + j] for i, j < W.
  // Lane i: p[2i] (even) or p[2i + 1] (odd), i < W: a stride-2 pooling window's columns.
  FK_INLINE static reg even(const float* p) {
    reg r;
    for (int i = 0; i < W; ++i) r.v[i] = p[2 * i];
    return r;
  }
  FK_INLINE static reg odd(const float* p) { return even(p + 1); }
  FK_INLINE static void transpose(const float* src, int64_t ls, float* dst, int64_t ld) {
    for (int i = 0; i < W; ++i)
      for (int j = 0; j < W; ++j) dst[j * ld + i] = src[i * ls + j];
  }
};
