// The dense fused Fire kernel, written once over a vector type `Vec`
// (vec_avx512.h, vec_avx2.h, vec_portable.h) and compiled once per ISA by
// fire_kernel_<isa>.cpp, each inside its own namespace FK_ISA_NAMESPACE.
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
//     image. The 3x3 needs the squeeze at [q0 - W - 1, q1 + W + 1): the band
//     plus one row (and one pixel) of halo on each side. Only that is computed,
//     into per-thread scratch that stays in L2; no full squeeze tensor exists.
//   * The squeeze is stored three times: as is (centre column, dx = 1), shifted
//     right by one pixel (bufL[q] = s[q-1], dx = 0) and left by one
//     (bufR[q] = s[q+1], dx = 2), with the pixels whose neighbour falls off the
//     left/right image edge set to zero, and rows off the top/bottom edge zero.
//     Then every 3x3 tap is a plain contiguous read at offset (dy-1)*W pixels
//     in one of the three buffers, so the whole band is one flat loop over
//     pixels: no per-row tails, and tiles stay full even on 13x13 images.
//   * Two families of micro-kernels, one per memory format, so that neither
//     transposes activations:
//       NCHW (fire_dense_nchw.inc): vectors along pixels. A register tile is
//       Vec::CO output channels x Vec::NV vectors of pixels; per input channel
//       and tap, NV pixel vectors are loaded and each of the CO weights
//       broadcast into CO*NV FMAs. Weights come packed in blocks of CO
//       output channels, in the order the tile reads them (pack_weights.cpp).
//       Buffers are [dx][S][pixel].
//       Channels last (fire_dense_nhwc.inc): vectors along output channels.
//       A register tile is Vec::MR pixels x Vec::NRV vectors of channels; per
//       input channel and tap, NRV weight vectors are loaded and each pixel's
//       activation broadcast into MR*NRV FMAs. Weights come packed with output
//       channels innermost (pack_weights.cpp). Buffers are [dx][pixel][Sp].
//     In both, one micro-kernel does the squeeze (one tap, input x), the 1x1
//     expand (one tap, the centre buffer) and the 3x3 expand (nine taps), and
//     the epilogue (bias, ReLU, store into the output's channel slice, so the
//     concat is free) runs on registers.
//   * Expands loop over channel blocks outside and pixel tiles inside, so a
//     block's weights stay in L1 while its tiles sweep the band's buffers (L2).
//   * Tails get micro-kernels of their own size (template instances for every
//     smaller tile), chosen at run time; stores past the valid pixels or
//     channels are masked or skipped.
//
// Only intrinsics and this file's own helpers are used here: no std::
// templates, whose instantiations would be shared with code compiled for
// other ISAs.
#include <string.h>

#include "fire_kernel.h"

namespace fire_kernels {
namespace FK_ISA_NAMESPACE {
namespace {

using reg = Vec::reg;
constexpr int VW = Vec::W;
static_assert(Vec::W * Vec::NV <= kMaxTilePixels, "tile wider than the scratch layout allows");
static_assert(Vec::MR <= kMaxTilePixels, "tile wider than the scratch layout allows");

FK_INLINE int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }
FK_INLINE int64_t imax(int64_t a, int64_t b) { return a > b ? a : b; }

void zero_range(float* p, int64_t n) {
  for (int64_t k = 0; k < n; ++k) p[k] = 0.f;
}

// Where one band's scratch lives and how its pixels map into it.
struct Band {
  int64_t q0, q1;  // the band's flat pixels in its image
  int64_t lp;      // pixels per squeeze buffer
  float* buf;      // the three squeeze buffers, dx = 0 (bufL), 1 (centre), 2 (bufR)
  // Buffer pixel of flat image pixel q (valid for q0 - W - 1 <= q < q1 + W + 1).
  FK_INLINE int64_t idx(int64_t q, int64_t W) const { return kScratchGuard + q - (q0 - W); }
};

// Tap t = 3*dy + dx of the 3x3 reads buffer dx at pixel offset (dy-1)*W.
FK_INLINE int64_t tap_offset(int t, int64_t buf_stride, int64_t row) {
  return (t % 3) * buf_stride + (t / 3 - 1) * row;
}

// Stores one vector of squeeze output s[q .. q + VW) at `centre` (the centre
// buffer) and, shifted, into bufL (bufL[q + 1] = s[q]) and bufR (bufR[q - 1] =
// s[q]); only the first n lanes when n < VW, so that a partial tile never
// writes pixels it does not own (threads may share the buffers).
FK_INLINE void store_squeeze(const FireArgs& a, const Band& bd, float* centre, reg s, int64_t n) {
  const int64_t stride = a.S * bd.lp;
  if (n >= VW) {
    Vec::store(centre, s);
    Vec::store(centre - stride + 1, s);
    Vec::store(centre + stride - 1, s);
  } else if (n > 0) {
    Vec::store_first(centre, s, static_cast<int>(n));
    Vec::store_first(centre - stride + 1, s, static_cast<int>(n));
    Vec::store_first(centre + stride - 1, s, static_cast<int>(n));
  }
}

// Copies `valid` image pixels from t0 into tile[c * ld + l] for every input
// channel c, zero-filling lanes [valid, width): the NCHW kernels' view of a
// strided or channels-last input, or of a partial last tile (which must not be
// read past the input's end). Channels-last blocks go through VW x VW
// transposes.
void gather_tile(const FireArgs& a, const float* x_img, int64_t t0, int64_t valid, int64_t width,
                 float* tile, int64_t ld) {
  const int64_t W = a.W;
  for (int64_t c = 0; c < a.C; ++c) zero_range(tile + c * ld + valid, width - valid);
  int64_t l = 0, c_done = 0;
  if (a.x_uniform && a.x_sc == 1) {
    c_done = a.C - a.C % VW;
    for (; l + VW <= valid; l += VW)
      for (int64_t c = 0; c < c_done; c += VW)
        Vec::transpose(x_img + (t0 + l) * a.x_ps + c, a.x_ps, tile + c * ld + l, ld);
  }
  for (int64_t p = 0; p < valid; ++p) {
    const int64_t q = t0 + p;
    const float* src = x_img + (a.x_uniform ? q * a.x_ps : (q / W) * a.x_sh + (q % W) * a.x_sw);
    // Pixels before l have their first c_done channels from the transposes.
    for (int64_t c = p < l ? c_done : 0; c < a.C; ++c) tile[c * ld + p] = src[c * a.x_sc];
  }
}

#include "fire_dense_nchw.inc"
#include "fire_dense_nhwc.inc"
#include "fire_sparse_nchw.inc"

// Zero what the 3x3 must see as padding, in all three buffers: pixels off the
// image, the left neighbour of column 0 (bufL) and the right neighbour of
// column W-1 (bufR). at(d, q) is the start of the `n` floats (n_step apart)
// of buffer d at image pixel q.
template <typename At>
void zero_padding(const FireArgs& a, const Band& bd, int64_t n, int64_t n_step, At at) {
  const int64_t W = a.W, HW = a.H * a.W;
  const int64_t lo = bd.q0 - W, hi = bd.q1 + W;  // the pixels the expands read
  auto zero_pixel = [&](int d, int64_t q) {
    float* p = at(d, q);
    for (int64_t c = 0; c < n; ++c) p[c * n_step] = 0.f;
  };
  for (int d = 0; d < 3; ++d) {
    for (int64_t q = lo; q < imin(hi, 0); ++q) zero_pixel(d, q);
    for (int64_t q = imax(lo, HW); q < hi; ++q) zero_pixel(d, q);
    if (d == 1) continue;
    const int64_t col = (d == 0) ? 0 : W - 1;
    const int64_t start = imax(lo, 0);
    int64_t q = start - start % W + col;
    if (q < start) q += W;
    for (; q < imin(hi, HW); q += W) zero_pixel(d, q);
  }
}

// Moves `count` buffer pixels from index kScratchGuard + shift down to
// kScratchGuard, in all three squeeze buffers (`channels` channels each,
// `lp` pixels per buffer; channels-last [3][lp][channels] or NCHW
// [3][channels][lp]). The ranges overlap when shift < count.
void move_halo(float* buf, int64_t channels, int64_t lp, int64_t shift, int64_t count,
               bool nhwc) {
  for (int64_t d = 0; d < 3; ++d) {
    if (nhwc) {
      float* dst = buf + (d * lp + kScratchGuard) * channels;
      memmove(dst, dst + shift * channels, count * channels * sizeof(float));
    } else {
      for (int64_t c = 0; c < channels; ++c) {
        float* dst = buf + (d * channels + c) * lp + kScratchGuard;
        memmove(dst, dst + shift, count * sizeof(float));
      }
    }
  }
}

}  // namespace

void run(const FireArgs& a, const FireWork& work, float* scratch) {
  const FireScratch layout = fire_scratch_layout(a);
  // Biases padded with zeros (and zeros for absent ones), so that channel
  // tails and bias=False need no special case.
  const int64_t padded_sizes[3] = {(a.S + kChannelPad - 1) / kChannelPad * kChannelPad,
                                   (a.E1 + kChannelPad - 1) / kChannelPad * kChannelPad,
                                   (a.E3 + kChannelPad - 1) / kChannelPad * kChannelPad};
  float* b_s = scratch + layout.bias;
  float* b_e1 = b_s + padded_sizes[0];
  float* b_e3 = b_e1 + padded_sizes[1];
  // The concat's biases, for the sparse expands.
  float* b_cat = b_e3 + padded_sizes[2];
  if (work.phase != FirePhase::kPadding) {
    const float* biases[3] = {a.b_s, a.b_e1, a.b_e3};
    float* padded[3] = {b_s, b_e1, b_e3};
    const int64_t sizes[3] = {a.S, a.E1, a.E3};
    for (int k = 0; k < 3; ++k) {
      zero_range(padded[k], padded_sizes[k]);
      if (biases[k])
        for (int64_t c = 0; c < sizes[k]; ++c) padded[k][c] = biases[k][c];
    }
    for (int64_t c = 0; c < a.E1; ++c) b_cat[c] = b_e1[c];
    for (int64_t c = 0; c < a.E3; ++c) b_cat[a.E1 + c] = b_e3[c];
  }

  const int64_t HW = a.H * a.W, W = a.W, channels = a.E1 + a.E3;
  // The buffers' layout: channels-last [dx][pixel][Sp] for the dense
  // channels-last kernels, else NCHW [dx][S][pixel].
  const bool nhwc = a.channels_last && !a.sparse;
  // Output channels [c_begin, c_end) of the concat, split between the expands.
  auto expands = [&](const Band& bd, float* out_img, int64_t c_begin, int64_t c_end) {
    const int64_t e1_end = imin(c_end, a.E1), e3_begin = imax(c_begin, a.E1) - a.E1;
    if (a.sparse) {
      sparse::expand(a, bd, out_img, c_begin, c_end, scratch + layout.stage, b_cat);
    } else if (nhwc) {
      if (c_begin < e1_end) nhwc::expand(a, bd, out_img, false, 0, c_begin, e1_end, a.w_e1, b_e1);
      if (c_end > a.E1) nhwc::expand(a, bd, out_img, true, a.E1, e3_begin, c_end - a.E1, a.w_e3, b_e3);
    } else {
      if (c_begin < e1_end) nchw::expand(a, bd, out_img, false, 0, c_begin, e1_end, a.w_e1, b_e1);
      if (c_end > a.E1) nchw::expand(a, bd, out_img, true, a.E1, e3_begin, c_end - a.E1, a.w_e3, b_e3);
    }
  };
  auto squeeze = [&](const Band& bd, const float* x_img, int64_t qa, int64_t qb) {
    if (a.sparse)
      sparse::squeeze(a, bd, x_img, scratch + layout.tile, b_s, qa, qb);
    else if (nhwc)
      nhwc::squeeze(a, bd, x_img, b_s, qa, qb);
    else
      nchw::squeeze(a, bd, x_img, scratch + layout.tile, b_s, qa, qb);
  };
  auto padding = [&](const Band& bd) {
    if (nhwc)
      zero_padding(a, bd, a.Sp, 1, [&](int d, int64_t q) {
        return bd.buf + (d * bd.lp + bd.idx(q, W)) * a.Sp;
      });
    else
      zero_padding(a, bd, a.S, bd.lp, [&](int d, int64_t q) {
        return bd.buf + d * a.S * bd.lp + bd.idx(q, W);
      });
  };
  auto image_out = [&](int64_t n) { return a.out + n * channels * HW; };

  if (work.phase == FirePhase::kBands) {
    int64_t last = -1;  // the item whose squeeze the buffers hold
    for (int64_t item = work.begin; item < work.end; ++item) {
      const int64_t n = item / a.bands_per_image, b = item % a.bands_per_image;
      Band bd;
      bd.q0 = band_start(a, b);
      bd.q1 = band_start(a, b + 1);
      if (bd.q0 >= bd.q1) continue;
      bd.lp = layout.lp;
      bd.buf = scratch + layout.bufs;
      int64_t from = imax(0, bd.q0 - W - 1);
      if (item == last + 1 && bd.q0 > 0) {
        // The band above, just computed here, already holds this band's
        // top halo, buffer pixels [q0 - W, q0 + W): move them to where this
        // band keeps them instead of squeezing those pixels again (up to
        // 30 % of the squeeze, measured on the SqueezeNet layers). The
        // squeeze restarts at q0 + W - 1, whose shifted copy bufL[q0 + W]
        // is the first buffer pixel not moved.
        move_halo(bd.buf, nhwc ? a.Sp : a.S, bd.lp, bd.q0 - band_start(a, b - 1), 2 * W, nhwc);
        from = bd.q0 + W - 1;
      }
      squeeze(bd, a.x + n * a.x_sn, from, imin(HW, bd.q1 + W + 1));
      padding(bd);
      expands(bd, image_out(n), 0, channels);
      last = item;
    }
    return;
  }
  Band bd;  // the whole image, in the shared buffers
  bd.q0 = 0;
  bd.q1 = HW;
  bd.lp = layout.lp;
  bd.buf = work.shared;
  switch (work.phase) {
    case FirePhase::kSqueeze:
      squeeze(bd, a.x + work.n * a.x_sn, work.begin, work.end);
      break;
    case FirePhase::kPadding:
      padding(bd);
      break;
    case FirePhase::kExpand:
      expands(bd, image_out(work.n), work.begin, work.end);
      break;
    case FirePhase::kBands:
      break;
  }
}

}  // namespace FK_ISA_NAMESPACE
}  // namespace fire_kernels
