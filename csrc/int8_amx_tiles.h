// The tile multiplies of the int8 AMX kernels (int8_amx_fire_run.h,
// int8_amx_head_run.h) on amx_tiles.h's tiles, with the AVX-512 VNNI vector
// type Q for the requantization; in an anonymous namespace for the reason
// kernel_band.h gives.
//
// A tile multiply takes 16 pixels x one 64-byte step of a reduction (16
// channel quads of one tap) against one packed panel's 16 output channels for
// that step, which is the packed layout as it is ([Op/16][taps][C4/4][16][4]:
// a step's quads are 64-byte rows, 64 bytes apart). So A is 16 pixels' bytes,
// rows one pixel apart, and up to 4 accumulator tiles make 16 pixels x 64
// output channels, reducing over every tap and step; the rest of a reduction
// that is no multiple of 64 bytes goes through a second A/B shape configured
// for it. A multiply costs about the same whatever its depth (5.6-5.9 ns at
// 64, 32 and 16 bytes, a scratch loop on a Sapphire Rapids Xeon), so shallow
// reductions use the tiles partly. The accumulators are stored as int32 rows
// for the vector epilogue.
#pragma once

#include <type_traits>

#include "amx_tiles.h"
#include "int8_kernel.h"

namespace fire_kernels {
namespace {

template <class Q>
struct Int8AmxTiles {
  static constexpr int TM = 16;   // pixels of a tile
  static constexpr int TK = 64;   // bytes of a reduction step (16 quads)
  static constexpr int TN = 16;   // output channels of an accumulator tile
  static constexpr int NC = 4;    // accumulator tiles: tiles 0 .. NC-1
  static constexpr int kA = 4, kB = 5, kARest = 6, kBRest = 7;
  static_assert(TN == kInt8Panel && TN == Q::W, "a tile's channels are one panel, one vector");
  static_assert(TM <= kInt8MaxTile, "the scratch holds tiles of kInt8MaxTile pixels");

  using Acc = int32_t[NC][TM][TN];
  using Params = typename Q::rq[NC];

  // The tiles' shapes for reductions of K bytes a tap.
  static void configure(int64_t K) {
    AmxConfig c;
    for (int t = 0; t < NC; ++t) c.shape(t, TM, TN * 4);
    c.shape(kA, TM, TK);
    c.shape(kB, TK / 4, TN * 4);
    const int rest = static_cast<int>(K % TK);
    if (rest > 0) {
      c.shape(kARest, TM, rest);
      c.shape(kBRest, rest / 4, TN * 4);
    }
    AmxTiles::configure(c);
  }

  // Accumulators c < N += tile A times one step's B of panel c (at w + c*w_panel).
  template <int c, int N, int A, int B>
  FK_INLINE static void panels(const int8_t* w, int64_t w_panel) {
    if constexpr (c < N) {
      AmxTiles::template load<B>(w + c * w_panel, TN * 4);
      AmxTiles::template dpbusd<c, A, B>();
      panels<c + 1, N, A, B>(w, w_panel);
    }
  }

  // acc[c][m][n] = sum over taps t and bytes k < K of
  //   a[m*a_stride + off[t] + k] * weight(channel j0 + 16c + n, tap t, byte k)
  // for c < N, the weights packed [Op/16][taps][K/4][16][4].
  template <int N>
  static void conv(const uint8_t* a, int64_t a_stride, const int64_t* off, int64_t taps,
                   int64_t K, const int8_t* w, int64_t j0, Acc& acc) {
    const int64_t w_panel = kInt8Panel * taps * K;
    const int8_t* wj = w + j0 / kInt8Panel * w_panel;
    zero<0, N>();
    for (int64_t t = 0; t < taps; ++t) {
      const uint8_t* at = a + off[t];
      const int8_t* wt = wj + t * K * kInt8Panel;
      int64_t k = 0;
      for (; k + TK <= K; k += TK) {
        AmxTiles::template load<kA>(at + k, a_stride);
        panels<0, N, kA, kB>(wt + k * kInt8Panel, w_panel);
      }
      if (k < K) {
        AmxTiles::template load<kARest>(at + k, a_stride);
        panels<0, N, kARest, kBRest>(wt + k * kInt8Panel, w_panel);
      }
    }
    store<0, N>(acc);
  }

  template <int c, int N>
  FK_INLINE static void zero() {
    if constexpr (c < N) {
      AmxTiles::template zero<c>();
      zero<c + 1, N>();
    }
  }
  template <int c, int N>
  FK_INLINE static void store(Acc& acc) {
    if constexpr (c < N) {
      AmxTiles::template store<c>(acc[c], TN * 4);
      store<c + 1, N>(acc);
    }
  }

  template <int N>
  using Panels = std::integral_constant<int, N>;

  // conv<N> for a run-time 1 <= n <= NC, then epilogue(acc, Panels<N>{}): N a
  // compile-time constant there, so that its loops over the panels unroll into
  // independent requantizations.
  template <class Epilogue>
  static void tile(int64_t n, const uint8_t* a, int64_t a_stride, const int64_t* off,
                   int64_t taps, int64_t K, const int8_t* w, int64_t j0, Epilogue epilogue) {
    alignas(64) Acc acc;
    switch (n) {
      case 4:
        conv<4>(a, a_stride, off, taps, K, w, j0, acc);
        return epilogue(acc, Panels<4>{});
      case 3:
        conv<3>(a, a_stride, off, taps, K, w, j0, acc);
        return epilogue(acc, Panels<3>{});
      case 2:
        conv<2>(a, a_stride, off, taps, K, w, j0, acc);
        return epilogue(acc, Panels<2>{});
      default:
        conv<1>(a, a_stride, off, taps, K, w, j0, acc);
        return epilogue(acc, Panels<1>{});
    }
  }

  // Pixel m's requantized channels j0 + 16c + n (c < N, n < count(c)) at dst + 16c + n.
  template <int N, class Count>
  FK_INLINE static void requant_pixel(const Acc& acc, int m, const Params& p, int64_t j0,
                                      uint8_t* dst, Count count) {
#pragma GCC unroll 4
    for (int c = 0; c < N; ++c)
      Q::store_requant(dst + c * TN, Q::load_lanes(acc[c][m]), p[c], count(j0 + c * TN));
  }

  static void params(const Int8Conv& conv, int64_t j0, int64_t N, Params& p) {
    for (int64_t c = 0; c < N; ++c)
      p[c] = Q::params(conv.bias + j0 + c * TN, conv.multiplier + j0 + c * TN);
  }
};

}  // namespace
}  // namespace fire_kernels
