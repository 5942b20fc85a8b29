// Channels-last micro-kernels of the dense Fire: vectors along output
// channels, activations broadcast, for the vector type Vec (vec_<isa>.h). See
// fire_kernel_run.h for the math and the tiling; kernel_band.h for why
// everything is in an anonymous namespace.
//
// A register tile is MR pixels x NRV vectors of output channels; per input
// channel and tap, NRV weight vectors are loaded and each pixel's activation
// broadcast into MR*NRV FMAs. Weights come packed in panels of kChannelPad
// output channels, channels innermost (pack_weights.cpp). Squeeze buffers:
// [dx][lp][Sp] (buffer dx, pixel i, channel c at (dx*lp + i)*Sp + c).
#pragma once

#include "fire_kernel.h"
#include "kernel_band.h"
#include "tile_dispatch.h"

namespace fire_kernels {
namespace {

template <class Vec>
struct DenseNhwc {
  using reg = typename Vec::reg;
  static constexpr int VW = Vec::W;
  static constexpr int MR = Vec::MR;
  static constexpr int NRV = Vec::NRV;
  static constexpr int NR = VW * NRV;  // output channels per tile
  static_assert(MR <= kMaxTilePixels, "tile wider than the scratch layout allows");
  static_assert(kChannelPad % VW == 0, "a vector of weights must lie within one panel");

  // acc[i][r] = sum_{t < NT} sum_{c < K} in_t(i)[c*kstride] * w_r[(c*NT + t)*16 ..]
  // for i < MR, r < NRB, where in_t(i) = rows[i] + tap_offset(t) (NT == 9) or
  // rows[i] (NT == 1), and w_r is vector r's place in the packed panels
  // (pack_weights.h) that start at w, `w_panel` floats apart. As in the NCHW
  // kernel: taps outside, channels inside, every loop over the accumulators
  // unrolled.
  template <int NRB, int NT>
  FK_INLINE static void conv_tile(const float* const (&rows)[MR], int64_t kstride, int64_t row,
                                  int64_t buf_stride, int64_t K, const float* w, int64_t w_panel,
                                  reg (&acc)[MR][NRB]) {
    const float* w_r[NRB];
    weight_vectors(w, w_panel, w_r);
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
      for (int r = 0; r < NRB; ++r) acc[i][r] = Vec::zero();
    for (int t = 0; t < NT; ++t)
      accumulate<NRB>(rows, NT == 1 ? 0 : tap_offset(t, buf_stride, row), kstride, K, w_r,
                      t * kChannelPad, NT * kChannelPad, acc);
  }

  // acc[i][r] += sum_{c < K} (rows[i] + offset)[c*kstride] * w_r[r][woff + c*wstep ..]:
  // one tap of conv_tile, or one run of the stem's im2col row.
  template <int NRB>
  FK_INLINE static void accumulate(const float* const (&rows)[MR], int64_t offset,
                                   int64_t kstride, int64_t K, const float* const (&w_r)[NRB],
                                   int64_t woff, int64_t wstep, reg (&acc)[MR][NRB]) {
    const float* p[MR];
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) p[i] = rows[i] + offset;
    int64_t off = 0;
    for (int64_t c = 0; c < K; ++c, off += kstride, woff += wstep) {
      reg wv[NRB];
#pragma GCC unroll 4
      for (int r = 0; r < NRB; ++r) wv[r] = Vec::load(w_r[r] + woff);
#pragma GCC unroll 8
      for (int i = 0; i < MR; ++i) {
        const reg b = Vec::broadcast(p[i] + off);
#pragma GCC unroll 4
        for (int r = 0; r < NRB; ++r) acc[i][r] = Vec::fmadd(b, wv[r], acc[i][r]);
      }
    }
  }

  // The packed weights of output vector r (of a tile starting at w), `w_panel`
  // floats from one panel of kChannelPad channels to the next.
  template <int NRB>
  FK_INLINE static void weight_vectors(const float* w, int64_t w_panel,
                                       const float* (&w_r)[NRB]) {
#pragma GCC unroll 4
    for (int r = 0; r < NRB; ++r)
      w_r[r] = w + (r * VW / kChannelPad) * w_panel + (r * VW) % kChannelPad;
  }

  // Squeeze channels [cs0, cs0 + NRB*VW) + bias + ReLU of the `valid` <= MR
  // image pixels from t0 (input pixel rows `rows`), stored into the three
  // buffers. Padded channels compute relu(0) = 0.
  template <int NRB>
  struct SqueezeTile {
    static void run(const FireArgs& a, const Band& bd, const float* const (&rows)[MR],
                    int64_t kstride, int64_t t0, int64_t valid, int64_t cs0, const float* bias) {
      reg acc[MR][NRB];
      conv_tile<NRB, 1>(rows, kstride, 0, 0, a.C, a.w_s + cs0 * a.C, kChannelPad * a.C, acc);
      const int64_t stride = bd.lp * a.Sp;  // from one buffer to the next
#pragma GCC unroll 8
      for (int i = 0; i < MR; ++i) {
        if (i >= valid) break;
        float* centre = bd.buf + stride + bd.idx(t0 + i, a.W) * a.Sp + cs0;
#pragma GCC unroll 4
        for (int r = 0; r < NRB; ++r) {
          const reg s = Vec::relu(Vec::add(acc[i][r], Vec::load(bias + cs0 + r * VW)));
          Vec::store(centre + r * VW, s);
          Vec::store(centre - stride + a.Sp + r * VW, s);  // bufL[q + 1] = s[q]
          Vec::store(centre + stride - a.Sp + r * VW, s);  // bufR[q - 1] = s[q]
        }
      }
    }
  };

  // Expand channels [j0, min(j0 + NRB*VW, j_end)) (of the 1x1 or the 3x3) +
  // bias + ReLU for `valid` <= MR band pixels from band offset p0, stored into
  // output channels co0 + j; `w` is the packed weight, [Ep/16][S][taps][16].
  // j0 is a multiple of kChannelPad, where a panel starts.
  template <int NRB>
  struct ExpandTile {
    static void run(const FireArgs& a, const Band& bd, float* out_img, bool three,
                    int64_t j0, int64_t co0, int64_t j_end, const float* w,
                    const float* bias, int64_t p0, int64_t valid) {
      const int64_t S = a.S, Sp = a.Sp;
      const int64_t q = bd.q0 + p0;
      // Pixel rows in bufL for the 3x3 (its taps add the offsets), centre for the 1x1.
      const float* first = bd.buf + ((three ? 0 : bd.lp) + bd.idx(q, a.W)) * Sp;
      const float* rows[MR];
#pragma GCC unroll 8
      for (int i = 0; i < MR; ++i) rows[i] = first + i * Sp;
      reg acc[MR][NRB];
      const int64_t taps = three ? 9 : 1;
      const float* panel = w + j0 * S * taps;  // panel j0 / kChannelPad
      if (three)
        conv_tile<NRB, 9>(rows, 1, a.W * Sp, bd.lp * Sp, S, panel, S * 9 * kChannelPad, acc);
      else
        conv_tile<NRB, 1>(rows, 1, 0, 0, S, panel, S * kChannelPad, acc);
      const int64_t channels = a.E1 + a.E3;
#pragma GCC unroll 8
      for (int i = 0; i < MR; ++i) {
        if (i >= valid) break;
        float* dst = out_img + (q + i) * channels + co0 + j0;
#pragma GCC unroll 4
        for (int r = 0; r < NRB; ++r) {
          const reg o = Vec::relu(Vec::add(acc[i][r], Vec::load(bias + j0 + r * VW)));
          const int64_t n = j_end - j0 - r * VW;
          if (n >= VW)
            Vec::store(dst + r * VW, o);
          else
            Vec::store_first(dst + r * VW, o, static_cast<int>(n));
        }
      }
    }
  };

  FK_INLINE static int64_t vectors_for(int64_t channels) {
    return imin(NRV, (channels + VW - 1) / VW);
  }

  // Squeeze + ReLU of image pixels [qa, qb) into the three buffers; with
  // pooling, each tile's pooled pixels are made in `pooled` first.
  static void squeeze(const FireArgs& a, const Band& bd, const float* x_img, float* pooled,
                      const float* bias, int64_t qa, int64_t qb) {
    const bool pool = a.pool.kernel > 1;
    const PixelSource src = pool ? PixelSource{pooled, 1, 0, 0, a.W, true, a.C}
                                 : input_source(a, x_img);
    for (int64_t t0 = qa; t0 < qb; t0 += MR) {
      const int64_t valid = imin(MR, qb - t0);
      if (pool) pool_pixels<Vec>(a, x_img, t0, valid, pooled, a.C);
      // Pixels past the valid ones repeat the last valid one: computed, not stored.
      const float* rows[MR];
      for (int i = 0; i < MR; ++i) rows[i] = src.pixel((pool ? 0 : t0) + imin(i, valid - 1));
      for (int64_t cs0 = 0; cs0 < a.Sp; cs0 += NR)
        dispatch_vectors<NRV, SqueezeTile>(vectors_for(a.Sp - cs0), a, bd, rows, src.sc, t0,
                                           valid, cs0, bias);
    }
  }

  // Channels [j_begin, j_end) of one expand (1x1 or 3x3) for the band, into
  // output channels co0 + j. Tiles past the band's end read buffer slack and
  // store nothing there.
  static void expand(const FireArgs& a, const Band& bd, float* out_img, bool three, int64_t co0,
                     int64_t j_begin, int64_t j_end, const float* w, const float* bias) {
    const int64_t n_pix = bd.q1 - bd.q0;
    for (int64_t j0 = j_begin; j0 < j_end; j0 += NR) {
      const int64_t nrb = vectors_for(j_end - j0);
      for (int64_t p0 = 0; p0 < n_pix; p0 += MR)
        dispatch_vectors<NRV, ExpandTile>(nrb, a, bd, out_img, three, j0, co0, j_end, w, bias,
                                          p0, imin(MR, n_pix - p0));
    }
  }
};

}  // namespace
}  // namespace fire_kernels
