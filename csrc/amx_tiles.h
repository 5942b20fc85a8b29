// AMX tile operations for the int8 AMX kernels (int8_amx_fire_run.h): the
// hardware's (AmxNative, under int8_kernel_avx512_amx.cpp's `#pragma GCC
// target`) and a scalar model of the same instructions (AmxEmulated: the
// emulated test build, so that the kernels' tiling runs on every machine).
//
// A tile is up to 16 rows of up to 64 bytes; a kernel configures each of the
// 8 tiles' shape once (configure), then loads rows `stride` bytes apart,
// multiplies and stores. tdpbusd C += A.B with A u8 [M][4K], B s8 [K][N][4]
// (each row of B holds N columns' 4 weights for one quad k), C int32 [M][N]:
//   C[m][n] += sum_{k, i < 4} A[m][4k + i] * B[k][n][i],
// M = A's rows, 4K = A's bytes a row = 4 x B's rows, N = B's bytes a row / 4.
#pragma once

#include <stdint.h>
#include <string.h>

#include "inline.h"

namespace fire_kernels {
namespace {

// The tile configuration ldtilecfg reads: palette 1, per tile its bytes a row
// and its rows (rows 0: the tile is unused).
struct alignas(64) AmxConfig {
  uint8_t palette = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};

  void shape(int tile, int rows_, int bytes) {
    rows[tile] = static_cast<uint8_t>(rows_);
    colsb[tile] = static_cast<uint16_t>(bytes);
  }
};
static_assert(sizeof(AmxConfig) == 64, "ldtilecfg reads 64 bytes");

#ifdef FK_EMULATE_AVX512

struct AmxEmulated {
  struct State {
    AmxConfig config;
    alignas(64) uint8_t tile[8][16][64];
  };
  static State& state() {
    thread_local State s;
    return s;
  }
  // Like ldtilecfg, zeroes every tile.
  static void configure(const AmxConfig& c) {
    state().config = c;
    memset(state().tile, 0, sizeof state().tile);
  }
  static void release() { configure(AmxConfig{}); }
  template <int T>
  static void zero() {
    memset(state().tile[T], 0, sizeof state().tile[T]);
  }
  template <int T>
  static void load(const void* src, int64_t stride) {
    const AmxConfig& c = state().config;
    for (int r = 0; r < c.rows[T]; ++r)
      memcpy(state().tile[T][r], static_cast<const uint8_t*>(src) + r * stride, c.colsb[T]);
  }
  template <int T>
  static void store(void* dst, int64_t stride) {
    const AmxConfig& c = state().config;
    for (int r = 0; r < c.rows[T]; ++r)
      memcpy(static_cast<uint8_t*>(dst) + r * stride, state().tile[T][r], c.colsb[T]);
  }
  template <int C, int A, int B>
  static void dpbusd() {
    State& s = state();
    const int M = s.config.rows[A], K = s.config.colsb[A] / 4, N = s.config.colsb[B] / 4;
    for (int m = 0; m < M; ++m)
      for (int n = 0; n < N; ++n) {
        int32_t acc;
        memcpy(&acc, &s.tile[C][m][4 * n], 4);
        for (int k = 0; k < K; ++k)
          for (int i = 0; i < 4; ++i)
            acc += static_cast<int32_t>(s.tile[A][m][4 * k + i]) *
                   static_cast<int8_t>(s.tile[B][k][4 * n + i]);
        memcpy(&s.tile[C][m][4 * n], &acc, 4);
      }
  }
};
using AmxTiles = AmxEmulated;

#else

// The instructions as inline asm: GCC's intrinsics paste their tile numbers
// into the asm text, so they take literals only, not template parameters.
// "memory": the loads and stores read and write memory the compiler cannot see.
struct AmxNative {
  FK_INLINE static void configure(const AmxConfig& c) { _tile_loadconfig(&c); }
  FK_INLINE static void release() { _tile_release(); }
  template <int T>
  FK_INLINE static void zero() {
    asm volatile("tilezero %%tmm%c0" ::"i"(T));
  }
  template <int T>
  FK_INLINE static void load(const void* src, int64_t stride) {
    asm volatile("tileloadd (%0,%1,1), %%tmm%c2" ::"r"(src), "r"(stride), "i"(T) : "memory");
  }
  template <int T>
  FK_INLINE static void store(void* dst, int64_t stride) {
    asm volatile("tilestored %%tmm%c2, (%0,%1,1)" ::"r"(dst), "r"(stride), "i"(T) : "memory");
  }
  template <int C, int A, int B>
  FK_INLINE static void dpbusd() {
    asm volatile("tdpbusd %%tmm%c2, %%tmm%c1, %%tmm%c0" ::"i"(C), "i"(A), "i"(B));
  }
};
using AmxTiles = AmxNative;

#endif

}  // namespace
}  // namespace fire_kernels
