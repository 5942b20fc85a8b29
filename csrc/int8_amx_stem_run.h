// The int8 stem (conv k x k stride s + ReLU + max pool, int8_kernel.h) on AMX
// tiles (int8_amx_tiles.h): the vector kernel's math, bands and pooling
// (int8_stem_run.h), its conv rows made by tile multiplies. Instantiated by
// int8_kernel_avx512_amx.cpp; in an anonymous namespace for the reason
// kernel_band.h gives.
//
// Tiling: 16 conv pixels along a row a tile. For one kernel row dy, a conv
// pixel's window is k input pixels side by side, K contiguous bytes (k*C
// rounded up to a quad: 24 for SqueezeNet 1.0's 7x7 on RGB), and the next conv
// pixel's starts s*C bytes on: A's rows. The weights are packed by window row
// ([Op/16][k][K/4][16][4]), so the conv is a reduction of k rows of K bytes. A
// row's last tile starts 16 pixels before its end (recomputing a few pixels) so
// that no tile reads past the image; rows of fewer than 16 conv pixels run the
// vector kernel.
#pragma once

#include "int8_amx_tiles.h"
#include "int8_stem_run.h"

namespace fire_kernels {
namespace {

template <class Q>
struct Int8AmxStem : Int8StemRun<Q>, Int8AmxTiles<Q> {
  using V = Int8StemRun<Q>;
  using X = Int8AmxTiles<Q>;
  using V::imin;
  using X::TM, X::TN, X::NC, X::configure, X::tile, X::params;
  using typename X::Acc, typename X::Params;

  static void run(const Int8StemArgs& a, int64_t begin, int64_t end, uint8_t* scratch) {
    if (a.conv_w < TM) return V::run(a, begin, end, scratch);
    int64_t off[kInt8MaxStemTaps];
    for (int64_t dy = 0; dy < a.k; ++dy) off[dy] = dy * a.in_w * a.C;
    const int64_t K = a.K;
    configure(K);
    V::bands(a, begin, end, scratch, [&](const uint8_t* x_img, int64_t cy, uint8_t* row) {
      const uint8_t* top = x_img + cy * a.stride * a.in_w * a.C;
      for (int64_t j0 = 0; j0 < a.Op; j0 += NC * TN) {
        const int64_t n = imin(NC, (a.Op - j0) / TN);
        Params p;
        params(a.conv, j0, n, p);
        for (int64_t cx = 0; cx < a.conv_w; cx += TM) {
          const int64_t start = imin(cx, a.conv_w - TM);
          tile(n, top + start * a.stride * a.C, a.stride * a.C, off, a.k, K, a.conv.w, j0,
               [&](const Acc& acc, auto panels) {
                 for (int m = static_cast<int>(cx - start); m < TM; ++m)
                   X::template requant_pixel<decltype(panels)::value>(
                       acc, m, p, j0, row + (start + m) * a.Op + j0,
                       [](int64_t) { return static_cast<int>(TN); });
               });
        }
      }
    });
    AmxTiles::release();
  }
};

}  // namespace
}  // namespace fire_kernels
