// The int8 classifier head of one path (conv 1x1 + ReLU + global average
// pool, int8_kernel.h), over a quantized vector type Q; instantiated beside
// the Fire kernel by int8_kernel_run.h.
//
// Math (per image): q[p][o] = requant(b[o] + sum_c w[o][c] * x[p][c]) in
// [0, 255] (the ReLU is the clamp at 0), sum[o] = sum_p q[p][o] exactly in
// int32, out[o] = float32(sum[o]) * scale. The 13x13x1000 map is never stored.
//
// Tiling: a work item is one image's block of kInt8HeadBlock output channels;
// its packed weights (64 x C bytes) stay in L1 while the item's pixel tiles
// sweep the image (L2), each tile's requantized outputs added into the block's
// sums.
#pragma once

#include "int8_tiles.h"

namespace fire_kernels {
namespace {

template <class Q>
struct Int8HeadRun : Int8Tiles<Q> {
  using T = Int8Tiles<Q>;
  using T::MR, T::NR, T::NRV, T::VW, T::imin, T::vectors_for;
  using acc_t = typename T::acc_t;
  static_assert(kInt8HeadBlock % NR == 0, "a block is whole tiles of channels");

  // sum[j0 - block start + j] += q of channels [j0, j0 + NRB*VW) over the
  // `valid` <= MR pixels `rows`.
  template <int NRB>
  struct Tile {
    static void run(const Int8HeadArgs& a, const uint8_t* const (&rows)[MR], int64_t valid,
                    int64_t j0, int32_t* sum) {
      acc_t acc[MR][NRB];
      const int64_t centre = 0;
      T::template conv_tile<NRB>(rows, &centre, 1, a.C4 / kInt8Quad, a.conv.w, kInt8Panel * a.C4,
                                 j0, acc);
      typename Q::rq p[NRB];
      T::params(a.conv, j0, p);
#pragma GCC unroll 8
      for (int i = 0; i < MR; ++i) {
        if (i >= valid) break;
#pragma GCC unroll 4
        for (int r = 0; r < NRB; ++r) Q::add_to(sum + r * VW, Q::requant(acc[i][r], p[r]));
      }
    }
  };

  static void run(const Int8HeadArgs& a, int64_t begin, int64_t end) {
    for (int64_t item = begin; item < end; ++item) {
      const int64_t n = item / a.blocks, b0 = item % a.blocks * kInt8HeadBlock;
      const int64_t b1 = imin(a.O, b0 + kInt8HeadBlock);
      const uint8_t* x_img = a.x + n * a.HW * a.C4;
      // Whole vectors: the lanes past O are padded channels, which sum zeros.
      int32_t sum[kInt8HeadBlock] = {};
      for (int64_t j0 = b0; j0 < b1; j0 += NR) {
        for (int64_t p = 0; p < a.HW; p += MR) {
          const int64_t valid = imin(MR, a.HW - p);
          const uint8_t* rows[MR];
          for (int i = 0; i < MR; ++i) rows[i] = x_img + (p + imin(i, valid - 1)) * a.C4;
          dispatch_vectors<NRV, Tile>(vectors_for(b1 - j0), a, rows, valid, j0, sum + (j0 - b0));
        }
      }
      for (int64_t j = b0; j < b1; ++j)
        a.out[n * a.O + j] = static_cast<float>(sum[j - b0]) * a.scale;
    }
  }
};

}  // namespace
}  // namespace fire_kernels
