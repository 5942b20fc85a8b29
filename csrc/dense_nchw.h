// NCHW micro-kernels of the dense Fire: vectors along pixels, weights
// broadcast, for the vector type Vec (vec_<isa>.h). See fire_kernel_run.h for
// the math and the tiling; kernel_band.h for why everything is in an
// anonymous namespace.
//
// A register tile is CO output channels x NV vectors of pixels; per input
// channel and tap, NV pixel vectors are loaded and each of the CO weights
// broadcast into CO*NV FMAs. Weights come packed in blocks of CO output
// channels, in the order the tile reads them (pack_weights.cpp). Squeeze
// buffers: [dx][S][lp] (buffer dx, channel c, pixel i at (dx*S + c)*lp + i).
#pragma once

#include "fire_kernel.h"
#include "kernel_band.h"

namespace fire_kernels {
namespace {

template <class Vec>
struct DenseNchw {
  using reg = typename Vec::reg;
  static constexpr int VW = Vec::W;
  static constexpr int CO = Vec::CO;
  static constexpr int NV = Vec::NV;
  static constexpr int TP = VW * NV;  // pixels per tile
  static_assert(TP <= kMaxTilePixels, "tile wider than the scratch layout allows");
  // Expands prefetch this many channels ahead (their buffers are in L2).
  static constexpr int64_t kPrefetchChannels = 6;

  // acc[j][v] = sum_{t < NT} sum_{c < K} w[(t*K + c)*CO + j] * in_t(c)[v*VW .. v*VW + VW)
  // for j < COB, v < NVB, where in_t(c) = in + c*in_cs + tap_offset(t) (NT == 9)
  // or in + c*in_cs (NT == 1), and w is a block of packed weights (pack_weights.h).
  // Taps outside, channels inside: the inner loop then holds one input pointer
  // and one weight pointer, which leaves the compiler enough registers to keep
  // all COB*NVB accumulators in registers. Every loop over the accumulators,
  // here and in the epilogues, is unrolled: a run-time index would force the
  // whole tile out of registers into memory.
  template <int COB, int NVB, int NT, bool kPrefetch = true>
  FK_INLINE static void conv_tile(const float* in, int64_t in_cs, int64_t row, int64_t buf_stride,
                                  int64_t K, const float* w, int64_t prefetch,
                                  reg (&acc)[COB][NVB]) {
#pragma GCC unroll 8
    for (int j = 0; j < COB; ++j)
#pragma GCC unroll 4
      for (int v = 0; v < NVB; ++v) acc[j][v] = Vec::zero();
    for (int t = 0; t < NT; ++t) {
      const float* p = (NT == 1) ? in : in + tap_offset(t, buf_stride, row);
      const float* wt = w + t * K * CO;
      for (int64_t c = 0; c < K; ++c, p += in_cs, wt += CO) {
        // Consecutive channels are a row apart, a stride the hardware
        // prefetchers do not follow: fetch by hand what is needed `prefetch`
        // floats further on.
        if (kPrefetch) {
          __builtin_prefetch(p + prefetch);
          __builtin_prefetch(p + prefetch + NVB * VW - 1);
        }
        reg xv[NVB];
#pragma GCC unroll 4
        for (int v = 0; v < NVB; ++v) xv[v] = Vec::load(p + v * VW);
#pragma GCC unroll 8
        for (int j = 0; j < COB; ++j) {
          const reg b = Vec::broadcast(wt + j);
#pragma GCC unroll 4
          for (int v = 0; v < NVB; ++v) acc[j][v] = Vec::fmadd(b, xv[v], acc[j][v]);
        }
      }
    }
  }

  // Squeeze channels [j0, j0 + COB) + bias + ReLU of the `valid` <= NVB*VW
  // pixels from image pixel t0 (input rows `in`, `in_cs` apart), stored into the
  // three buffers.
  template <int COB, int NVB>
  struct SqueezeTile {
    static void run(const FireArgs& a, const Band& bd, const float* in, int64_t in_cs,
                    int64_t t0, int64_t valid, int64_t j0, const float* bias) {
      reg acc[COB][NVB];
      // The input comes from memory: the tile's first channel block prefetches
      // the next tile, a whole tile of work ahead. The other blocks would only
      // fetch the same lines again, at one load slot per prefetch.
      if (j0 == 0)
        conv_tile<COB, NVB, 1, true>(in, in_cs, 0, 0, a.C, a.w_s, TP, acc);
      else
        conv_tile<COB, NVB, 1, false>(in, in_cs, 0, 0, a.C, a.w_s + j0 * a.C, TP, acc);
      float* centre = bd.buf + a.S * bd.lp + j0 * bd.lp + bd.idx(t0, a.W);
#pragma GCC unroll 8
      for (int j = 0; j < COB; ++j, centre += bd.lp)
        store_squeeze_row<Vec>(a, bd, centre, acc[j], Vec::broadcast(bias + j0 + j), valid);
    }
  };

  // Expand channels [j0, j0 + COB) (of the 1x1 or the 3x3) + bias + ReLU for
  // `valid` <= NVB*VW band pixels from band offset p0, stored into output
  // channels co0 + j0 + j.
  template <int COB, int NVB>
  struct ExpandTile {
    static void run(const FireArgs& a, const Band& bd, float* out_img, bool three,
                    int64_t j0, int64_t co0, const float* w, const float* bias, int64_t p0,
                    int64_t valid) {
      const int64_t S = a.S, HW = a.H * a.W;
      const int64_t q = bd.q0 + p0;
      const int64_t i = bd.idx(q, a.W);
      reg acc[COB][NVB];
      if (three)
        conv_tile<COB, NVB, 9>(bd.buf + i, bd.lp, a.W, S * bd.lp, S, w + j0 * 9 * S,
                               kPrefetchChannels * bd.lp, acc);
      else
        conv_tile<COB, NVB, 1>(bd.buf + S * bd.lp + i, bd.lp, 0, 0, S, w + j0 * S,
                               kPrefetchChannels * bd.lp, acc);
      float* dst = out_img + (co0 + j0) * HW + q;
#pragma GCC unroll 8
      for (int j = 0; j < COB; ++j, dst += HW)
        store_output_row<Vec>(dst, acc[j], Vec::broadcast(bias + j0 + j), valid);
    }
  };

  // Runs F<cob, nvb>::run(args...) for run-time 1 <= cob <= CO, 1 <= nvb <= NV.
  template <template <int, int> class F, int COB, typename... Args>
  FK_INLINE static void dispatch_nv(int64_t nvb, const Args&... args) {
    static_assert(NV <= 3, "extend dispatch_nv");
    if constexpr (NV >= 3)
      if (nvb == 3) return F<COB, 3>::run(args...);
    if constexpr (NV >= 2)
      if (nvb == 2) return F<COB, 2>::run(args...);
    F<COB, 1>::run(args...);
  }

  template <template <int, int> class F, typename... Args>
  FK_INLINE static void dispatch_tile(int64_t cob, int64_t nvb, const Args&... args) {
    static_assert(CO <= 8, "extend dispatch_tile");
    switch (cob) {
#define FK_CASE(n)                                          \
  case n:                                                   \
    if constexpr (n <= CO) dispatch_nv<F, n>(nvb, args...); \
    break;
      FK_CASE(1) FK_CASE(2) FK_CASE(3) FK_CASE(4) FK_CASE(5) FK_CASE(6) FK_CASE(7) FK_CASE(8)
#undef FK_CASE
    }
  }

  FK_INLINE static int64_t vectors_for(int64_t pixels) {
    return imin(NV, (pixels + VW - 1) / VW);
  }

  // Squeeze + ReLU of image pixels [qa, qb) into the three buffers; `tile`
  // and `pooled`: input_tile's scratch and pooled rows.
  static void squeeze(const FireArgs& a, const Band& bd, const float* x_img, float* tile,
                      PooledRows& pooled, const float* bias, int64_t qa, int64_t qb) {
    for (int64_t t0 = qa; t0 < qb; t0 += TP) {
      const int64_t valid = imin(TP, qb - t0);
      const int64_t nvb = vectors_for(valid);
      int64_t in_cs;
      const float* in = input_tile<Vec>(a, x_img, t0, valid, nvb * VW, tile, TP, pooled, &in_cs);
      for (int64_t j0 = 0; j0 < a.S; j0 += CO)
        dispatch_tile<SqueezeTile>(imin(CO, a.S - j0), nvb, a, bd, in, in_cs, t0, valid, j0,
                                   bias);
    }
  }

  // Channels [j_begin, j_end) of one expand (1x1 or 3x3) for the band, into
  // output channels co0 + j. j_begin is a multiple of CO (the scheduler's
  // channel split), so each tile's weights are one packed block.
  static void expand(const FireArgs& a, const Band& bd, float* out_img, bool three, int64_t co0,
                     int64_t j_begin, int64_t j_end, const float* w, const float* bias) {
    const int64_t n_pix = bd.q1 - bd.q0;
    for (int64_t j0 = j_begin; j0 < j_end; j0 += CO) {
      for (int64_t p0 = 0; p0 < n_pix; p0 += TP) {
        const int64_t valid = imin(TP, n_pix - p0);
        dispatch_tile<ExpandTile>(imin(CO, j_end - j0), vectors_for(valid), a, bd, out_img,
                                  three, j0, co0, w, bias, p0, valid);
      }
    }
  }
};

}  // namespace
}  // namespace fire_kernels
