// The fused Fire kernel of one ISA: the work of one FireWork (fire_kernel.h),
// written once over a vector type Vec (vec_avx512.h, vec_avx2.h,
// vec_portable.h) and instantiated by fire_kernel_<isa>.cpp under that ISA's
// `#pragma GCC target` (kernel_band.h says why it is all in an anonymous
// namespace).
//
// Math (per image, pixels q = y*W + x taken in row-major "flat" order):
//   s[c][q]   = relu(b_s[c]  + sum_k  w_s[c][k]  * x[k][q])                 squeeze
//   o1[e][q]  = relu(b_e1[e] + sum_c  w_e1[e][c] * s[c][q])                 expand 1x1
//   o3[e][q]  = relu(b_e3[e] + sum_{c,dy,dx} w_e3[e][c][dy][dx]
//                                     * s[c][(y+dy-1)*W + (x+dx-1)])        expand 3x3, s = 0 off the image
//   out = cat(o1, o3) along channels: each expand stores into its own slice.
//
// Tiling:
//   * Work item = one band of `band` consecutive flat pixels [q0, q1) of one
//     image (the scheduler, fire_scheduler.cpp, cuts the images into bands and
//     hands them to threads). The 3x3 needs the squeeze at [q0 - W - 1,
//     q1 + W + 1): the band plus one row (and one pixel) of halo on each side.
//     Only that is computed, into per-thread scratch that stays in L2; no full
//     squeeze tensor exists.
//   * The squeeze is stored three times: as is (centre column, dx = 1), shifted
//     right by one pixel (bufL[q] = s[q-1], dx = 0) and left by one
//     (bufR[q] = s[q+1], dx = 2), with the pixels whose neighbour falls off the
//     left/right image edge set to zero, and rows off the top/bottom edge zero.
//     Then every 3x3 tap is a plain contiguous read at offset (dy-1)*W pixels
//     in one of the three buffers, so the whole band is one flat loop over
//     pixels: no per-row tails, and tiles stay full even on 13x13 images.
//   * Two families of dense micro-kernels, one per memory format, so that
//     neither transposes activations: NCHW (dense_nchw.h, vectors along
//     pixels) and channels last (dense_nhwc.h, vectors along output
//     channels); and the sparse kernels (sparse_nchw.h). In each, one
//     micro-kernel does the squeeze (one tap, input x), the 1x1 expand (one
//     tap, the centre buffer) and the 3x3 expand (nine taps), and the epilogue
//     (bias, ReLU, store into the output's channel slice, so the concat is
//     free) runs on registers.
//   * Expands loop over channel blocks outside and pixel tiles inside, so a
//     block's weights stay in L1 while its tiles sweep the band's buffers (L2).
//   * Tails get micro-kernels of their own size (template instances for every
//     smaller tile), chosen at run time; stores past the valid pixels or
//     channels are masked or skipped.
#pragma once

#include "dense_nchw.h"
#include "dense_nhwc.h"
#include "fire_kernel.h"
#include "kernel_band.h"
#include "sparse_nchw.h"

namespace fire_kernels {
namespace {

template <class Vec>
struct FireRun {
  using Nchw = DenseNchw<Vec>;
  using Nhwc = DenseNhwc<Vec>;
  using Sparse = SparseNchw<Vec>;

  // The biases padded with zeros to whole kChannelPad blocks (zeros for absent
  // ones), so that channel tails and bias=False need no special case; `cat`
  // holds the expands' biases as one [E1 + E3] vector for the sparse kernel.
  struct Biases {
    float *s, *e1, *e3, *cat;
  };

  static Biases pad_biases(const FireArgs& a, float* at) {
    const int64_t sizes[3] = {a.S, a.E1, a.E3};
    const float* given[3] = {a.b_s, a.b_e1, a.b_e3};
    float* padded[3];
    for (int k = 0; k < 3; ++k) {
      padded[k] = at;
      const int64_t n = round_up(sizes[k], kChannelPad);
      zero_range(at, n);
      if (given[k])
        for (int64_t c = 0; c < sizes[k]; ++c) at[c] = given[k][c];
      at += n;
    }
    for (int64_t c = 0; c < a.E1; ++c) at[c] = padded[1][c];
    for (int64_t c = 0; c < a.E3; ++c) at[a.E1 + c] = padded[2][c];
    return {padded[0], padded[1], padded[2], at};
  }

  // Whether the dense channels-last kernels run: their buffers are [dx][pixel][Sp];
  // the NCHW and sparse kernels' [dx][S][pixel].
  static bool nhwc(const FireArgs& a) { return a.channels_last && !a.sparse; }

  // Squeeze + ReLU of image pixels [qa, qb) into the band's three buffers.
  static void squeeze(const FireArgs& a, const Band& bd, const float* x_img, int64_t qa,
                      int64_t qb, const FireScratch& layout, float* scratch, const Biases& b) {
    float* tile = scratch + layout.tile;
    PooledRows pooled{scratch + layout.pooled, scratch + layout.rowmax, layout.pooled_pitch,
                      layout.pooled_rows, 0, 0};
    if (a.sparse)
      Sparse::squeeze(a, bd, x_img, tile, pooled, b.s, qa, qb);
    else if (nhwc(a))
      Nhwc::squeeze(a, bd, x_img, pooled.buf, b.s, qa, qb);
    else
      Nchw::squeeze(a, bd, x_img, tile, pooled, b.s, qa, qb);
  }

  // The zeros the 3x3 reads as padding, in the band's three buffers.
  static void zero_band_padding(const FireArgs& a, const Band& bd) {
    if (nhwc(a))
      zero_padding(a, bd, a.Sp, 1, [&](int d, int64_t q) {
        return bd.buf + (d * bd.lp + bd.idx(q, a.W)) * a.Sp;
      });
    else
      zero_padding(a, bd, a.S, bd.lp, [&](int d, int64_t q) {
        return bd.buf + d * a.S * bd.lp + bd.idx(q, a.W);
      });
  }

  // Output channels [c_begin, c_end) of the concat for the band, split between
  // the expands.
  static void expand(const FireArgs& a, const Band& bd, float* out_img, int64_t c_begin,
                     int64_t c_end, const FireScratch& layout, float* scratch, const Biases& b) {
    if (a.sparse) {
      Sparse::expand(a, bd, out_img, c_begin, c_end, scratch + layout.stage, b.cat);
      return;
    }
    const int64_t e1_end = imin(c_end, a.E1), e3_begin = imax(c_begin, a.E1) - a.E1;
    auto expand_one = nhwc(a) ? &Nhwc::expand : &Nchw::expand;
    if (c_begin < e1_end) expand_one(a, bd, out_img, false, 0, c_begin, e1_end, a.w_e1, b.e1);
    if (c_end > a.E1)
      expand_one(a, bd, out_img, true, a.E1, e3_begin, c_end - a.E1, a.w_e3, b.e3);
  }

  // Work items [begin, end) of kBands: each band's squeeze with its halo, its
  // padding, then both expands, all in this thread's scratch.
  static void bands(const FireArgs& a, int64_t begin, int64_t end, const FireScratch& layout,
                    float* scratch, const Biases& b) {
    const int64_t HW = a.H * a.W, W = a.W, channels = a.E1 + a.E3;
    int64_t last = -1;  // the item whose squeeze the buffers hold
    for (int64_t item = begin; item < end; ++item) {
      const int64_t n = item / a.bands_per_image, band = item % a.bands_per_image;
      Band bd;
      bd.q0 = band_start(a, band);
      bd.q1 = band_start(a, band + 1);
      if (bd.q0 >= bd.q1) continue;
      bd.lp = layout.lp;
      bd.buf = scratch + layout.bufs;
      int64_t from = imax(0, bd.q0 - W - 1);
      if (item == last + 1 && bd.q0 > 0) {
        // The band above, just computed here, already holds this band's top
        // halo, buffer pixels [q0 - W, q0 + W): move them to where this band
        // keeps them instead of squeezing those pixels again. The squeeze
        // restarts at q0 + W - 1, whose shifted copy bufL[q0 + W] is the first
        // buffer pixel not moved.
        move_halo(bd.buf, nhwc(a) ? a.Sp : a.S, bd.lp, bd.q0 - band_start(a, band - 1), 2 * W,
                  nhwc(a));
        from = bd.q0 + W - 1;
      }
      squeeze(a, bd, a.x + n * a.x_sn, from, imin(HW, bd.q1 + W + 1), layout, scratch, b);
      zero_band_padding(a, bd);
      expand(a, bd, a.out + n * channels * HW, 0, channels, layout, scratch, b);
      last = item;
    }
  }

  // One step of an image shared by all threads, in the shared buffers.
  static void shared_step(const FireArgs& a, const FireWork& work, const FireScratch& layout,
                          float* scratch, const Biases& b) {
    const int64_t HW = a.H * a.W;
    Band bd;  // the whole image
    bd.q0 = 0;
    bd.q1 = HW;
    bd.lp = layout.lp;
    bd.buf = work.shared;
    if (work.phase == FirePhase::kSqueeze)
      squeeze(a, bd, a.x + work.n * a.x_sn, work.begin, work.end, layout, scratch, b);
    else if (work.phase == FirePhase::kPadding)
      zero_band_padding(a, bd);
    else
      expand(a, bd, a.out + work.n * (a.E1 + a.E3) * HW, work.begin, work.end, layout, scratch,
             b);
  }

  static void run(const FireArgs& a, const FireWork& work, float* scratch) {
    const FireScratch layout = fire_scratch_layout(a);
    const Biases b = pad_biases(a, scratch + layout.bias);
    if (work.phase == FirePhase::kBands)
      bands(a, work.begin, work.end, layout, scratch, b);
    else
      shared_step(a, work, layout, scratch, b);
  }
};

// The FireKernel (fire_kernel.h) of vector type Vec.
template <class Vec>
constexpr FireKernel fire_kernel() {
  return {&FireRun<Vec>::run, Vec::CO, Vec::W * Vec::NV, Vec::MR};
}

}  // namespace
}  // namespace fire_kernels
