// The int8 stem of one path (conv k x k stride s + ReLU + max pool,
// int8_kernel.h), over a quantized vector type Q; instantiated by
// int8_kernel_run.h.
//
// Math (per image): c[y][x][o] = requant(b'[o] + sum_{dy,dx,ch} w[o][dy][dx][ch] *
// in[y*s + dy][x*s + dx][ch]), b' the bias less the input's zero point times
// the weights' sum (exact: no padding); out[py][px] = max over the pool's
// window of c (clipped at the edge in ceil mode).
//
// Tiling: an item is a band of output rows. Its conv rows are computed into
// scratch, MR pixels along a row per tile, each window row dy one "tap" of K/4
// quads (int8_kernel.h: k pixels of C bytes side by side) at dy*in_w*C bytes
// from the window's corner; then the band's output pixels take their window
// maxima from scratch, a vector of bytes at a time.
#pragma once

#include <string.h>

#include "int8_tiles.h"

namespace fire_kernels {
namespace {

template <class Q>
struct Int8StemRun : Int8Tiles<Q> {
  using T = Int8Tiles<Q>;
  using T::MR, T::NR, T::NRV, T::VW, T::imin, T::vectors_for;
  using acc_t = typename T::acc_t;

  // Channels [j0, j0 + NRB*VW) of the `valid` <= MR conv pixels whose windows
  // start at `rows`, stored at dst[i] (a conv row in scratch).
  template <int NRB>
  struct Tile {
    static void run(const Int8StemArgs& a, const int64_t* off, const uint8_t* const (&rows)[MR],
                    uint8_t* dst, int64_t valid, int64_t j0) {
      acc_t acc[MR][NRB];
      T::template conv_tile<NRB>(rows, off, a.k, a.K / kInt8Quad, a.conv.w,
                                 kInt8Panel * a.k * a.K, j0, acc);
      typename Q::rq p[NRB];
      T::params(a.conv, j0, p);
#pragma GCC unroll 8
      for (int i = 0; i < MR; ++i) {
        if (i >= valid) break;
#pragma GCC unroll 4
        for (int r = 0; r < NRB; ++r)
          Q::store_requant(dst + i * a.Op + j0 + r * VW, acc[i][r], p[r], VW);
      }
    }
  };

  // Conv row cy of image x_img into `row` ([conv_w][Op] bytes).
  static void conv_row(const Int8StemArgs& a, const int64_t* off, const uint8_t* x_img,
                       int64_t cy, uint8_t* row) {
    const uint8_t* top = x_img + cy * a.stride * a.in_w * a.C;
    for (int64_t cx = 0; cx < a.conv_w; cx += MR) {
      const int64_t valid = imin(MR, a.conv_w - cx);
      const uint8_t* rows[MR];
      for (int i = 0; i < MR; ++i) rows[i] = top + (cx + imin(i, valid - 1)) * a.stride * a.C;
      for (int64_t j0 = 0; j0 < a.Op; j0 += NR)
        dispatch_vectors<NRV, Tile>(vectors_for(a.Op - j0), a, off, rows, row + cx * a.Op, valid,
                                    j0);
    }
  }

  // dst[o] = max over the window's conv pixels (o < O); conv row r of the band
  // at scratch + r * conv_w * Op.
  static void pool_pixel(const Int8StemArgs& a, const uint8_t* scratch, int64_t r0, int64_t r1,
                         int64_t x0, int64_t x1, uint8_t* __restrict dst) {
    const int n = static_cast<int>(a.O);
    memcpy(dst, scratch + (r0 * a.conv_w + x0) * a.Op, n);
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t x = r == r0 ? x0 + 1 : x0; x < x1; ++x) {
        const uint8_t* __restrict src = scratch + (r * a.conv_w + x) * a.Op;
        for (int c = 0; c < n; ++c) dst[c] = dst[c] > src[c] ? dst[c] : src[c];
      }
  }

  // Work items [begin, end): each band's conv rows by conv_row(x_img, cy, row)
  // into scratch, then pooled.
  template <class ConvRow>
  static void bands(const Int8StemArgs& a, int64_t begin, int64_t end, uint8_t* scratch,
                    ConvRow conv_row) {
    const int64_t ps = a.pool_stride, pk = a.pool_kernel;
    for (int64_t item = begin; item < end; ++item) {
      const int64_t n = item / a.bands, py0 = item % a.bands * a.band_rows;
      const int64_t py1 = imin(a.out_h, py0 + a.band_rows);
      if (py0 >= py1) continue;
      const int64_t cy0 = py0 * ps, cy1 = imin(a.conv_h, (py1 - 1) * ps + pk);
      const uint8_t* x_img = a.x + n * a.in_h * a.in_w * a.C;
      for (int64_t cy = cy0; cy < cy1; ++cy)
        conv_row(x_img, cy, scratch + (cy - cy0) * a.conv_w * a.Op);
      uint8_t* out_img = a.out + n * a.out_h * a.out_w * a.O;
      for (int64_t py = py0; py < py1; ++py)
        for (int64_t px = 0; px < a.out_w; ++px)
          pool_pixel(a, scratch, py * ps - cy0, imin(a.conv_h, py * ps + pk) - cy0, px * ps,
                     imin(a.conv_w, px * ps + pk), out_img + (py * a.out_w + px) * a.O);
    }
  }

  static void run(const Int8StemArgs& a, int64_t begin, int64_t end, uint8_t* scratch) {
    int64_t off[kInt8MaxStemTaps];
    for (int64_t dy = 0; dy < a.k; ++dy) off[dy] = dy * a.in_w * a.C;
    bands(a, begin, end, scratch, [&](const uint8_t* x_img, int64_t cy, uint8_t* row) {
      conv_row(a, off, x_img, cy, row);
    });
  }
};

}  // namespace
}  // namespace fire_kernels
