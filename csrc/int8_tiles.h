// The register tiles every int8 kernel is made of (int8_fire_run.h,
// int8_head_run.h), over a quantized vector type Q (qvec_<path>.h): MR pixels
// x NRV vectors of Q::W output channels, int32 accumulators, 4-way dot
// products per channel quad. In an anonymous namespace for the reason
// kernel_band.h gives.
#pragma once

#include "inline.h"
#include "int8_kernel.h"
#include "tile_dispatch.h"

namespace fire_kernels {
namespace {

template <class Q>
struct Int8Tiles {
  static constexpr int VW = Q::W;
  static constexpr int MR = Q::MR;
  static constexpr int NRV = Q::NRV;
  static constexpr int NR = VW * NRV;
  using acc_t = typename Q::acc;
  static_assert(kInt8Panel % VW == 0, "a vector of weights must lie within one panel");
  static_assert(MR <= kInt8MaxTile, "the scratch layout holds tiles of kInt8MaxTile pixels");

  FK_INLINE static int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }
  FK_INLINE static int64_t imax(int64_t a, int64_t b) { return a > b ? a : b; }

  // acc[i][r] = sum_{t < taps} sum_{cq < quads} <rows[i] + off[t] + 4*cq, w_r[r]'s quad (t, cq)>:
  // tap t reads each pixel's bytes `off[t]` from its row pointer; vector r holds
  // output channels j0 + r*VW of the packed weights w ([taps][quads][16][4] per
  // panel), `w_panel` bytes from one panel of kInt8Panel channels to the next.
  template <int NRB>
  FK_INLINE static void conv_tile(const uint8_t* const (&rows)[MR], const int64_t* off,
                                  int64_t taps, int64_t quads, const int8_t* w, int64_t w_panel,
                                  int64_t j0, acc_t (&acc)[MR][NRB]) {
    const int8_t* w_r[NRB];
#pragma GCC unroll 4
    for (int r = 0; r < NRB; ++r) {
      const int64_t j = j0 + r * VW;
      w_r[r] = w + j / kInt8Panel * w_panel + j % kInt8Panel * kInt8Quad;
    }
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
      for (int r = 0; r < NRB; ++r) Q::zero(acc[i][r]);
    int64_t wo = 0;
    for (int64_t t = 0; t < taps; ++t) {
      const uint8_t* p[MR];
#pragma GCC unroll 8
      for (int i = 0; i < MR; ++i) p[i] = rows[i] + off[t];
      for (int64_t cq = 0; cq < quads; ++cq, wo += kInt8Panel * kInt8Quad) {
        typename Q::wt wv[NRB];
#pragma GCC unroll 4
        for (int r = 0; r < NRB; ++r) wv[r] = Q::load_weights(w_r[r] + wo);
#pragma GCC unroll 8
        for (int i = 0; i < MR; ++i) {
          const typename Q::act b = Q::broadcast(p[i] + cq * kInt8Quad);
#pragma GCC unroll 4
          for (int r = 0; r < NRB; ++r) Q::dot(acc[i][r], b, wv[r]);
        }
      }
    }
  }

  // The requantization parameters of vectors r < NRB, output channels j0 + r*VW
  // of `conv`: loaded once per tile (the byte stores that follow may alias them).
  template <int NRB>
  FK_INLINE static void params(const Int8Conv& conv, int64_t j0, typename Q::rq (&p)[NRB]) {
#pragma GCC unroll 4
    for (int r = 0; r < NRB; ++r) {
      const int64_t j = j0 + r * VW;
      p[r] = Q::params(conv.bias + j, conv.multiplier + j);
    }
  }

  FK_INLINE static int64_t vectors_for(int64_t channels) {
    return imin(NRV, (channels + VW - 1) / VW);
  }

};

}  // namespace
}  // namespace fire_kernels
