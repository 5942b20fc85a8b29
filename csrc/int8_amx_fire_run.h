// The int8 fused Fire on AMX tiles (int8_amx_tiles.h): the same math, band
// buffer and requantization as the vector kernel (int8_fire_run.h), with every
// dot product a tile multiply. Instantiated by int8_kernel_avx512_amx.cpp; in
// an anonymous namespace for the reason kernel_band.h gives.
//
// Tiling: the squeeze's A rows are the input's pixels (C4 bytes apart), 16
// image pixels a tile, their requantized bytes stored into the band buffer's
// padded pixels; the expands' A rows are the band buffer's padded pixels (Sp
// bytes apart) shifted by a tap's offset, 16 a tile, sweeping the band as one
// flat run like the vector kernel. The squeeze's last tile of a band and pooled
// inputs read a copy of their pixels (a tile loads 16 rows, the input may end
// sooner); the band buffer has kInt8MaxTile pixels of slack for the expands'.
#pragma once

#include "int8_amx_tiles.h"
#include "int8_fire_run.h"

namespace fire_kernels {
namespace {

template <class Q>
struct Int8AmxFire : Int8FireRun<Q>, Int8AmxTiles<Q> {
  using F = Int8FireRun<Q>;
  using X = Int8AmxTiles<Q>;
  using F::imin, F::imax;
  using X::TM, X::TN, X::NC, X::configure, X::tile, X::params;
  using typename X::Acc, typename X::Params;

  // The squeeze of image pixels [qa, qb) (whole rows) into the channels-last
  // band buffer, 16 pixels a tile; `copy` holds a tile's input pixels where
  // they cannot be read in place (pooled, or the band's last tile).
  static void squeeze_band(const Int8FireArgs& a, const uint8_t* x_img, uint8_t* buf,
                           uint8_t* copy, int64_t y0, int64_t qa, int64_t qb) {
    const int64_t Wp = a.W + 2, centre = 0;
    configure(a.C4);
    for (int64_t q = qa; q < qb; q += TM) {
      const int64_t valid = imin(TM, qb - q);
      const uint8_t* in = x_img + q * a.C4;
      if (a.pool_kernel > 1) {
        for (int64_t i = 0; i < valid; ++i) F::pool_pixel(a, x_img, q + i, copy + i * a.C4);
        in = copy;
      } else if (valid < TM) {
        memcpy(copy, in, valid * a.C4);
        in = copy;
      }
      for (int64_t j0 = 0; j0 < a.Sp; j0 += NC * TN) {
        const int64_t n = imin(NC, (a.Sp - j0) / TN);
        Params p;
        params(a.squeeze, j0, n, p);
        tile(n, in, a.C4, &centre, 1, a.C4, a.squeeze.w, j0, [&](const Acc& acc, auto panels) {
          // Image pixel (y, x) = q + m, stepped along (no division a pixel).
          int64_t y = q / a.W, x = q % a.W;
          for (int m = 0; m < valid; ++m) {
            uint8_t* dst = buf + ((y - y0 + 1) * Wp + x + 1) * a.Sp + j0;
            X::template requant_pixel<decltype(panels)::value>(acc, m, p, j0, dst,
                                                   [](int64_t) { return static_cast<int>(TN); });
            if (++x == a.W) x = 0, ++y;
          }
        });
      }
    }
  }

  // One expand (NT = 1: the 1x1, NT = 9: the 3x3) of the band's padded pixels
  // into output channels co0 + j, j < E, of the pixels inside the image. Where
  // a pixel's bytes are its S4 channels (Sp == S4), a 3x3 row's three taps are
  // 3 x S4 contiguous bytes, and so are their weights: one reduction a row.
  template <int NT>
  static void expand(const Int8FireArgs& a, const Int8Conv& conv, const uint8_t* buf,
                     uint8_t* out_img, int64_t y0, int64_t rows, int64_t E, int64_t co0) {
    const int64_t Wp = a.W + 2, S4 = int8_quads(a.S) * kInt8Quad, channels = a.E1 + a.E3;
    const int64_t p_begin = Wp + 1, p_end = rows * Wp + a.W + 1;
    const bool by_rows = NT == 9 && a.Sp == S4;
    const int64_t taps = by_rows ? 3 : NT, K = by_rows ? 3 * S4 : S4;
    int64_t off[NT];
    for (int t = 0; t < taps; ++t)
      off[t] = NT == 1 ? 0 : by_rows ? ((t - 1) * Wp - 1) * a.Sp : ((t / 3 - 1) * Wp + t % 3 - 1) * a.Sp;
    configure(K);
    for (int64_t j0 = 0; j0 < E; j0 += NC * TN) {
      const int64_t n = imin(NC, (E - j0 + TN - 1) / TN);
      Params p;
      params(conv, j0, n, p);
      for (int64_t p0 = p_begin; p0 < p_end; p0 += TM) {
        tile(n, buf + p0 * a.Sp, a.Sp, off, taps, K, conv.w, j0, [&](const Acc& acc, auto panels) {
          // Padded pixel (row, col) = p0 + m, stepped along.
          int64_t row = p0 / Wp, col = p0 % Wp;
          for (int m = 0; m < TM && p0 + m < p_end; ++m, ++col) {
            if (col == Wp) col = 0, ++row;
            if (col == 0 || col == Wp - 1) continue;  // a border column: padding
            uint8_t* dst = out_img + ((y0 + row - 1) * a.W + col - 1) * channels + co0 + j0;
            X::template requant_pixel<decltype(panels)::value>(
                acc, m, p, j0, dst, [E](int64_t j) { return static_cast<int>(imin(TN, E - j)); });
          }
        });
      }
    }
  }

  static void run(const Int8FireArgs& a, int64_t begin, int64_t end, uint8_t* scratch) {
    F::template run_bands<Int8AmxFire>(a, begin, end, scratch);
    AmxTiles::release();
  }
};

}  // namespace
}  // namespace fire_kernels
