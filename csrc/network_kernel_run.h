// The stem and head kernels of one ISA (network_kernel.h for their math),
// written once over a vector type Vec and instantiated by
// fire_kernel_<isa>.cpp like fire_kernel_run.h. They reuse the Fire's
// micro-kernels: the stem's conv rows and the dense head are GEMMs of pixels x
// output channels (dense_nhwc.h), the sparse head is the sparse 1x1 conv
// (sparse_nchw.h).
#pragma once

#include "dense_nhwc.h"
#include "kernel_band.h"
#include "network_kernel.h"
#include "sparse_nchw.h"

namespace fire_kernels {
namespace {

// `n` floats of `given` (zeros for a null one) then zeros up to `padded`.
FK_INLINE float* pad_bias(const float* given, int64_t n, int64_t padded, float* at) {
  zero_range(at, padded);
  if (given)
    for (int64_t c = 0; c < n; ++c) at[c] = given[c];
  return at;
}

template <class Vec>
struct StemRun {
  using Nhwc = DenseNhwc<Vec>;
  using reg = typename Vec::reg;
  static constexpr int VW = Vec::W;
  static constexpr int MR = Vec::MR;
  static constexpr int NRV = Vec::NRV;
  static constexpr int NR = VW * NRV;

  // Conv channels [o0, o0 + NRB*VW) + bias + ReLU of the `valid` <= MR conv
  // pixels from cx0, into `row` ([Wc][Op]). Pixel i's im2col row is read in place:
  // k runs of k*C floats, run dy at pixels[i] in input ring slot (slot0 + dy) mod k.
  template <int NRB>
  struct Tile {
    static void run(const StemArgs& a, const float* const (&pixels)[MR], int64_t slot0,
                    int64_t ring_pitch, int64_t o0, int64_t Op, int64_t cx0, int64_t valid,
                    float* row, const float* bias) {
      const int64_t run = a.k * a.C, K = a.k * run;
      const float* w_r[NRB];
      Nhwc::weight_vectors(a.w + o0 * K, K * kChannelPad, w_r);
      reg acc[MR][NRB];
#pragma GCC unroll 8
      for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
        for (int r = 0; r < NRB; ++r) acc[i][r] = Vec::zero();
      for (int64_t dy = 0, slot = slot0; dy < a.k; ++dy, slot = slot + 1 == a.k ? 0 : slot + 1)
        Nhwc::template accumulate<NRB>(pixels, slot * ring_pitch, 1, run, w_r,
                                       dy * run * kChannelPad, kChannelPad, acc);
#pragma GCC unroll 8
      for (int i = 0; i < MR; ++i) {
        if (i >= valid) break;
        float* dst = row + (cx0 + i) * Op + o0;
#pragma GCC unroll 4
        for (int r = 0; r < NRB; ++r)
          Vec::store(dst + r * VW, Vec::relu(Vec::add(acc[i][r], Vec::load(bias + o0 + r * VW))));
      }
    }
  };

  // d[ix*C + c] = src[c*plane + ix] for the W pixels of a row: C planes, each
  // contiguous, interleaved into channels last (the compiler makes the loads
  // whole vectors and the interleave permutes).
  template <int C>
  static void interleave(const float* __restrict src, int64_t plane, int64_t W,
                         float* __restrict d) {
    for (int64_t ix = 0; ix < W; ++ix)
#pragma GCC unroll 4
      for (int c = 0; c < C; ++c) d[ix * C + c] = src[c * plane + ix];
  }

  // Input row iy of the image at x_img, zero-padded by a.pad on both sides,
  // channels last, into `dst` ([W + 2*pad][C]); zeros for a row off the image.
  static void input_row(const StemArgs& a, const float* x_img, int64_t iy, float* dst) {
    zero_range(dst, a.pad * a.C);
    zero_range(dst + (a.pad + a.W) * a.C, a.pad * a.C);
    float* d = dst + a.pad * a.C;
    if (iy < 0 || iy >= a.H) {
      zero_range(d, a.W * a.C);
    } else if (a.x_sc == 1 && a.x_sw == a.C) {
      memcpy(d, x_img + iy * a.x_sh, a.W * a.C * sizeof(float));
    } else if (a.x_sw == 1 && a.C == 3) {  // an NCHW image
      interleave<3>(x_img + iy * a.x_sh, a.x_sc, a.W, d);
    } else {
      for (int64_t ix = 0; ix < a.W; ++ix)
        for (int64_t c = 0; c < a.C; ++c)
          d[ix * a.C + c] = x_img[iy * a.x_sh + ix * a.x_sw + c * a.x_sc];
    }
  }

  // Conv output row cy, all Op channels, into `row`: each pixel's im2col row (k
  // runs of k*C floats in the padded input rows in `input`, input row iy in slot
  // iy mod k) times the packed weights.
  static void conv_row(const StemArgs& a, const float* input, int64_t cy, float* row,
                       const float* bias) {
    const int64_t Op = round_up(a.O, kChannelPad), ring_pitch = (a.W + 2 * a.pad) * a.C;
    const int64_t iy0 = cy * a.stride - a.pad, slot0 = ((iy0 % a.k) + a.k) % a.k;
    for (int64_t cx0 = 0; cx0 < a.Wc; cx0 += MR) {
      const int64_t valid = imin(MR, a.Wc - cx0);
      const float* pixels[MR];
      for (int i = 0; i < MR; ++i) pixels[i] = input + imin(cx0 + i, a.Wc - 1) * a.stride * a.C;
      for (int64_t o0 = 0; o0 < Op; o0 += NR)
        dispatch_vectors<NRV, Tile>(imin(NRV, (Op - o0) / VW), a, pixels, slot0, ring_pitch, o0,
                                    Op, cx0, valid, row, bias);
    }
  }

  // Output row oy: the max over each pool window of the conv rows in `ring`
  // (conv row cy in slot cy % pool.kernel). First the max down the window's rows
  // for every column, into `colmax` ([Wc][Op]: a flat loop over whole vectors,
  // every one independent), then along each window's columns.
  static void pool_row(const StemArgs& a, const float* ring, int64_t oy, float* colmax,
                       float* out_row) {
    const int64_t Op = round_up(a.O, kChannelPad), pk = a.pool.kernel, ps = a.pool.stride;
    const int64_t cy0 = oy * ps, cy1 = imin(cy0 + pk, a.Hc), row_pitch = a.Wc * Op;
    const float* cols = ring + (cy0 % pk) * row_pitch;
    for (int64_t cy = cy0 + 1; cy < cy1; ++cy) {
      const float* next = ring + (cy % pk) * row_pitch;
      for (int64_t j = 0; j < row_pitch; j += VW)
        Vec::store(colmax + j, Vec::max_nan(Vec::load(cols + j), Vec::load(next + j)));
      cols = colmax;
    }
    for (int64_t ox = 0; ox < a.Wo; ++ox) {
      const int64_t cx0 = ox * ps, cx1 = imin(cx0 + pk, a.Wc);
      for (int64_t o = 0; o < a.O; o += VW) {
        reg m = Vec::load(cols + cx0 * Op + o);
        for (int64_t cx = cx0 + 1; cx < cx1; ++cx)
          m = Vec::max_nan(m, Vec::load(cols + cx * Op + o));
        const int64_t n = a.O - o;
        if (n >= VW)
          Vec::store(out_row + ox * a.O + o, m);
        else
          Vec::store_first(out_row + ox * a.O + o, m, static_cast<int>(n));
      }
    }
  }

  static void rows(const StemArgs& a, int64_t n, int64_t oy0, int64_t oy1, float* scratch) {
    const StemScratch layout = stem_scratch_layout(a);
    const int64_t Op = round_up(a.O, kChannelPad), pk = a.pool.kernel;
    const int64_t wp = a.W + 2 * a.pad;
    const float* bias = pad_bias(a.b, a.O, Op, scratch + layout.bias);
    float *input = scratch + layout.input, *ring = scratch + layout.rows;
    const float* x_img = a.x + n * a.x_sn;
    int64_t held = -1;  // conv rows [held - pk + 1, held] are in the ring
    // Input rows (read - k, read] are in `input`: none yet.
    int64_t read = oy0 * a.pool.stride * a.stride - a.pad - 1;
    for (int64_t oy = oy0; oy < oy1; ++oy) {
      const int64_t cy0 = oy * a.pool.stride, cy1 = imin(cy0 + pk, a.Hc);
      for (int64_t cy = imax(cy0, held + 1); cy < cy1; ++cy) {
        const int64_t iy0 = cy * a.stride - a.pad, iy1 = iy0 + a.k;
        for (int64_t iy = imax(iy0, read + 1); iy < iy1; ++iy)
          input_row(a, x_img, iy, input + (((iy % a.k) + a.k) % a.k) * wp * a.C);
        read = iy1 - 1;
        conv_row(a, input, cy, ring + (cy % pk) * a.Wc * Op, bias);
      }
      held = imax(held, cy1 - 1);
      pool_row(a, ring, oy, scratch + layout.colmax, a.out + (n * a.Ho + oy) * a.Wo * a.O);
    }
  }
};

template <class Vec>
struct HeadRun {
  using Nhwc = DenseNhwc<Vec>;
  using Sparse = SparseNchw<Vec>;
  using reg = typename Vec::reg;
  static constexpr int VW = Vec::W;
  static constexpr int MR = Vec::MR;
  static constexpr int NRV = Vec::NRV;
  static constexpr int NR = VW * NRV;

  // out[n][o] for `count` channels from o of the per-channel sums in `sum`.
  static void store_means(const HeadArgs& a, const float* sum, float* out, int64_t count) {
    for (int64_t j = 0; j < count; ++j) out[j] = sum[j] / static_cast<float>(a.HW);
  }

  // Dense: output channels [j0, min(j0 + NRB*VW, o1)) of the image at x_img.
  template <int NRB>
  struct DenseTile {
    static void run(const HeadArgs& a, const float* x_img, int64_t n, int64_t j0, int64_t o1,
                    const float* bias) {
      reg sum[NRB];
#pragma GCC unroll 4
      for (int r = 0; r < NRB; ++r) sum[r] = Vec::zero();
      for (int64_t p0 = 0; p0 < a.HW; p0 += MR) {
        const int64_t valid = imin(MR, a.HW - p0);
        const float* rows[MR];
#pragma GCC unroll 8
        for (int i = 0; i < MR; ++i) rows[i] = x_img + imin(p0 + i, a.HW - 1) * a.x_ps;
        reg acc[MR][NRB];
        Nhwc::template conv_tile<NRB, 1>(rows, a.x_sc, 0, 0, a.C, a.w + j0 * a.C,
                                         a.C * kChannelPad, acc);
#pragma GCC unroll 8
        for (int i = 0; i < MR; ++i) {
          if (i >= valid) break;
#pragma GCC unroll 4
          for (int r = 0; r < NRB; ++r)
            sum[r] = Vec::add(sum[r], Vec::relu(Vec::add(acc[i][r], Vec::load(bias + j0 + r * VW))));
        }
      }
      float sums[NRB * VW];
#pragma GCC unroll 4
      for (int r = 0; r < NRB; ++r) Vec::store(sums + r * VW, sum[r]);
      store_means(a, sums, a.out + n * a.O + j0, imin(NRB * VW, o1 - j0));
    }
  };

  // Sparse: group g (output channels g*B ..) over the pixels [p0, p0 + valid)
  // of the transposed image xt, its relu(...) added to sum[j] per channel.
  template <int B, int NVB>
  struct SparseTile {
    static void run(const HeadArgs& a, const float* xt, int64_t pitch, int64_t g, int64_t valid,
                    const float* bias, reg* sum) {
      const FireSparse& sp = *a.sparse;
      reg acc[B][NVB];
      Sparse::template sparse_tile<B, NVB>(xt, sp.s_rows, sp.s_chan, pitch, sp.s_values, g, acc);
#pragma GCC unroll 4
      for (int j = 0; j < B; ++j) {
        const reg b = Vec::broadcast(bias + g * B + j);
#pragma GCC unroll 8
        for (int v = 0; v < NVB; ++v) {
          const reg o = Vec::relu(Vec::add(acc[j][v], b));
          const int64_t lanes = valid - v * VW;  // pixels past the image are not summed
          sum[j] = Vec::add(sum[j], lanes >= VW ? o : Vec::keep_first(o, static_cast<int>(lanes)));
        }
      }
    }
  };

  static void sparse(const HeadArgs& a, int64_t n, int64_t o0, int64_t o1, const float* bias,
                     float* xt) {
    const int64_t pitch = head_pitch(a.HW);
    const PixelSource src{a.x + n * a.x_sn, a.x_sc, 0, 0, a.HW, true, a.x_ps};
    for (int64_t p0 = 0; p0 < pitch; p0 += kMaxTilePixels)
      gather_tile<Vec>(src, a.C, p0, imax(0, imin(kMaxTilePixels, a.HW - p0)), kMaxTilePixels,
                       xt + p0, pitch);
    with_block(a.sparse->block, [&](auto block) {
      constexpr int B = decltype(block)::value;
      constexpr int TP = VW * Sparse::template tile_vectors<B>();
      for (int64_t g = o0 / B; g * B < o1; ++g) {
        reg sum[B];
        for (int j = 0; j < B; ++j) sum[j] = Vec::zero();
        reg* sums = sum;  // by pointer: dispatch_nv passes its arguments as const
        for (int64_t p0 = 0; p0 < a.HW; p0 += TP) {
          const int64_t valid = imin(TP, a.HW - p0);
          Sparse::template dispatch_nv<SparseTile, B>((valid + VW - 1) / VW, a, xt + p0, pitch,
                                                      g, valid, bias, sums);
        }
        float totals[B];
        for (int j = 0; j < B; ++j) totals[j] = Vec::sum(sum[j]);
        store_means(a, totals, a.out + n * a.O + g * B, imin(B, o1 - g * B));
      }
    });
  }

  static void run(const HeadArgs& a, int64_t n, int64_t o0, int64_t o1, float* scratch) {
    const int64_t Op = round_up(a.O, kChannelPad);
    const float* bias = pad_bias(a.b, a.O, Op, scratch);
    if (a.sparse) {
      sparse(a, n, o0, o1, bias, scratch + Op);
      return;
    }
    const float* x_img = a.x + n * a.x_sn;
    for (int64_t j0 = o0; j0 < o1; j0 += NR)
      dispatch_vectors<NRV, DenseTile>(imin(NRV, (o1 - j0 + VW - 1) / VW), a, x_img, n, j0, o1,
                                       bias);
  }
};

// The NetworkKernel (network_kernel.h) of vector type Vec.
template <class Vec>
constexpr NetworkKernel network_kernel() {
  return {&StemRun<Vec>::rows, &HeadRun<Vec>::run};
}

}  // namespace
}  // namespace fire_kernels
