// The int8 classifier head (conv 1x1 + ReLU + global average pool, int8_kernel.h)
// on AMX tiles (int8_amx_tiles.h): the vector kernel's math and work items
// (int8_head_run.h), each a block of kInt8HeadBlock = 64 output channels, four
// accumulator tiles, over 16-pixel tiles of the image. Instantiated by
// int8_kernel_avx512_amx.cpp; in an anonymous namespace for the reason
// kernel_band.h gives.
//
// A tile loads 16 pixel rows, so where the image ends sooner the last tile
// starts 16 pixels before its end and adds only the pixels not yet summed;
// images of fewer than 16 pixels are copied into a zero-padded tile first.
#pragma once

#include <string.h>

#include <vector>

#include "int8_amx_tiles.h"

namespace fire_kernels {
namespace {

template <class Q>
struct Int8AmxHead : Int8AmxTiles<Q> {
  using X = Int8AmxTiles<Q>;
  using X::TM, X::TN, X::NC, X::configure, X::tile, X::params;
  using typename X::Acc, typename X::Params;
  static_assert(kInt8HeadBlock == NC * TN, "a work item is the accumulator tiles' channels");

  static int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }

  static void run(const Int8HeadArgs& a, int64_t begin, int64_t end) {
    thread_local std::vector<uint8_t> small;  // an image of fewer than TM pixels, padded
    if (a.HW < TM) small.assign(TM * a.C4, 0);
    const int64_t centre = 0;
    configure(a.C4);
    for (int64_t item = begin; item < end; ++item) {
      const int64_t n = item / a.blocks, b0 = item % a.blocks * kInt8HeadBlock;
      const int64_t b1 = imin(a.O, b0 + kInt8HeadBlock);
      const int64_t tiles = (b1 - b0 + TN - 1) / TN;
      const uint8_t* x_img = a.x + n * a.HW * a.C4;
      if (a.HW < TM) {
        memcpy(small.data(), x_img, a.HW * a.C4);
        x_img = small.data();
      }
      Params p;
      params(a.conv, b0, tiles, p);
      // Whole vectors: the lanes past O are padded channels, which sum zeros.
      int32_t sum[kInt8HeadBlock] = {};
      for (int64_t p0 = 0; p0 < a.HW; p0 += TM) {
        const int64_t start = a.HW < TM ? 0 : imin(p0, a.HW - TM);
        tile(tiles, x_img + start * a.C4, a.C4, &centre, 1, a.C4, a.conv.w, b0,
             [&](const Acc& acc, auto panels) {
               for (int64_t m = p0 - start; m < TM && start + m < a.HW; ++m)
#pragma GCC unroll 4
                 for (int c = 0; c < decltype(panels)::value; ++c)
                   Q::add_to(sum + c * TN, Q::requant(Q::load_lanes(acc[c][m]), p[c]));
             });
      }
      for (int64_t j = b0; j < b1; ++j)
        a.out[n * a.O + j] = static_cast<float>(sum[j - b0]) * a.scale;
    }
    AmxTiles::release();
  }
};

}  // namespace
}  // namespace fire_kernels
