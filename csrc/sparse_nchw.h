// Sparse micro-kernels of the Fire: a direct sparse convolution over the NCHW
// squeeze buffers, vectors along pixels (XNNPACK's SpMM layout), for the
// vector type Vec (vec_<isa>.h). See kernel_band.h for why everything is in an
// anonymous namespace.
//
// A tile is one group of B output channels (B = 1, or 4 sharing their nonzero
// positions) x NVB vectors of consecutive pixels. For each entry of the group
// (an input position and B weights) the tile loads NVB pixel vectors at that
// position and does B*NVB FMAs with the broadcast weights, so zero weights
// cost nothing. With B = 1 the entries alternate between two accumulator sets,
// so that enough FMAs are in flight to hide their latency. The 1x1 and 3x3
// expands are one conv (the 1x1 as the centre tap), whose entries are offsets
// into the three shifted squeeze buffers. The epilogue (bias, ReLU, stores
// straight into the concat) is the dense kernel's, plus a strided store for
// channels-last outputs.
#pragma once

#include "fire_kernel.h"
#include "kernel_band.h"

namespace fire_kernels {
namespace {

template <int N>
struct Block {
  static constexpr int value = N;
};

// Calls body(Block<B>{}) with the group size B as a compile-time constant.
template <typename Body>
FK_INLINE void with_block(int64_t block, Body body) {
  if (block == 4)
    body(Block<4>{});
  else
    body(Block<1>{});
}

template <class Vec>
struct SparseNchw {
  using reg = typename Vec::reg;
  static constexpr int VW = Vec::W;

  // Vectors of pixels per tile for groups of B channels.
  template <int B>
  static constexpr int tile_vectors() { return B == 1 ? Vec::SNV1 : Vec::SNV4; }
  static_assert(VW * Vec::SNV1 <= kMaxTilePixels && VW * Vec::SNV4 <= kMaxTilePixels,
                "tile wider than the scratch layout allows");
  static_assert(VW <= kChannelPad, "the channels-last stage holds kChannelPad channels");

  // acc[j][v] = sum over entries e of group g: values[e*B + j] * in[pos(e) + v*VW ..]
  // where pos(e) = positions[e] * pos_scale.
  template <int B, int NVB>
  FK_INLINE static void sparse_tile(const float* in, const int32_t* rows, const int32_t* positions,
                                    int64_t pos_scale, const float* values, int64_t g,
                                    reg (&acc)[B][NVB]) {
    reg acc2[B][NVB];
#pragma GCC unroll 4
    for (int j = 0; j < B; ++j)
#pragma GCC unroll 8
      for (int v = 0; v < NVB; ++v) acc[j][v] = acc2[j][v] = Vec::zero();
    int64_t e = rows[g];
    const int64_t end = rows[g + 1];
    if constexpr (B == 1) {
      for (; e + 1 < end; e += 2) {
        const float* p0 = in + positions[e] * pos_scale;
        const float* p1 = in + positions[e + 1] * pos_scale;
        const reg b0 = Vec::broadcast(values + e), b1 = Vec::broadcast(values + e + 1);
#pragma GCC unroll 8
        for (int v = 0; v < NVB; ++v) {
          acc[0][v] = Vec::fmadd(b0, Vec::load(p0 + v * VW), acc[0][v]);
          acc2[0][v] = Vec::fmadd(b1, Vec::load(p1 + v * VW), acc2[0][v]);
        }
      }
    }
    for (; e < end; ++e) {
      const float* p = in + positions[e] * pos_scale;
      reg xv[NVB];
#pragma GCC unroll 8
      for (int v = 0; v < NVB; ++v) xv[v] = Vec::load(p + v * VW);
#pragma GCC unroll 4
      for (int j = 0; j < B; ++j) {
        const reg b = Vec::broadcast(values + e * B + j);
#pragma GCC unroll 8
        for (int v = 0; v < NVB; ++v) acc[j][v] = Vec::fmadd(b, xv[v], acc[j][v]);
      }
    }
    if constexpr (B == 1) {
#pragma GCC unroll 8
      for (int v = 0; v < NVB; ++v) acc[0][v] = Vec::add(acc[0][v], acc2[0][v]);
    }
  }

  // Squeeze group g (channels g*B ..) + bias + ReLU of the `valid` <= NVB*VW
  // pixels from image pixel t0 (input rows `in`, `in_cs` apart), stored into the
  // three buffers like the dense NCHW squeeze.
  template <int B, int NVB>
  struct SqueezeTile {
    static void run(const FireArgs& a, const Band& bd, const float* in, int64_t in_cs, int64_t t0,
                    int64_t valid, int64_t g, const float* bias) {
      const FireSparse& sp = *a.sparse;
      reg acc[B][NVB];
      sparse_tile<B, NVB>(in, sp.s_rows, sp.s_chan, in_cs, sp.s_values, g, acc);
      float* centre = bd.buf + a.S * bd.lp + g * B * bd.lp + bd.idx(t0, a.W);
#pragma GCC unroll 4
      for (int j = 0; j < B; ++j, centre += bd.lp) {
        if (g * B + j >= a.S) break;
        store_squeeze_row<Vec>(a, bd, centre, acc[j], Vec::broadcast(bias + g * B + j), valid);
      }
    }
  };

  // Expand group g (concat channels co = g*B ..) + bias + ReLU for `valid` <=
  // NVB*VW band pixels from band offset p0, stored at dst + (co - co_base) *
  // dst_cs (pixels contiguous: the NCHW output, or a stage on its way to a
  // channels-last one). `bias` is the concat's [E1 + E3] biases.
  template <int B, int NVB>
  struct ExpandTile {
    static void run(const FireArgs& a, const Band& bd, float* dst, int64_t co_base,
                    int64_t dst_cs, int64_t g, const float* bias, int64_t p0, int64_t valid) {
      const FireSparse& sp = *a.sparse;
      const int64_t E = a.E1 + a.E3;
      reg acc[B][NVB];
      sparse_tile<B, NVB>(bd.buf + bd.idx(bd.q0 + p0, a.W), sp.e_rows, sp.e_offset, 1,
                          sp.e_values, g, acc);
#pragma GCC unroll 4
      for (int j = 0; j < B; ++j) {
        const int64_t co = g * B + j;
        if (co >= E) break;
        store_output_row<Vec>(dst + (co - co_base) * dst_cs, acc[j], Vec::broadcast(bias + co),
                              valid);
      }
    }
  };

  // Runs F<B, nvb>::run(args...) for a run-time 1 <= nvb <= tile_vectors<B>().
  template <template <int, int> class F, int B, typename... Args>
  FK_INLINE static void dispatch_nv(int64_t nvb, const Args&... args) {
    constexpr int NV = tile_vectors<B>();
    static_assert(NV <= 4, "extend dispatch_nv");
    if constexpr (NV >= 4)
      if (nvb == 4) return F<B, 4>::run(args...);
    if constexpr (NV >= 3)
      if (nvb == 3) return F<B, 3>::run(args...);
    if constexpr (NV >= 2)
      if (nvb == 2) return F<B, 2>::run(args...);
    F<B, 1>::run(args...);
  }

  // Squeeze + ReLU of image pixels [qa, qb) into the three buffers; `tile`
  // and `pooled`: input_tile's scratch and pooled rows.
  static void squeeze(const FireArgs& a, const Band& bd, const float* x_img, float* tile,
                      PooledRows& pooled, const float* bias, int64_t qa, int64_t qb) {
    with_block(a.sparse->block, [&](auto block) {
      constexpr int B = decltype(block)::value;
      constexpr int TP = VW * tile_vectors<B>();
      const int64_t groups = (a.S + B - 1) / B;
      for (int64_t t0 = qa; t0 < qb; t0 += TP) {
        const int64_t valid = imin(TP, qb - t0);
        const int64_t nvb = (valid + VW - 1) / VW;
        int64_t in_cs;
        const float* in =
            input_tile<Vec>(a, x_img, t0, valid, nvb * VW, tile, TP, pooled, &in_cs);
        for (int64_t g = 0; g < groups; ++g)
          dispatch_nv<SqueezeTile, B>(nvb, a, bd, in, in_cs, t0, valid, g, bias);
      }
    });
  }

  // Concat channels [c_begin, c_end) (c_begin a multiple of kChannelPad) for the
  // band. A channels-last output gets VW channels at a time through a stage, then
  // VW x VW transposes, so every store is a full vector.
  static void expand(const FireArgs& a, const Band& bd, float* out_img, int64_t c_begin,
                     int64_t c_end, float* stage, const float* bias) {
    const int64_t n_pix = bd.q1 - bd.q0, HW = a.H * a.W, E = a.E1 + a.E3;
    with_block(a.sparse->block, [&](auto block) {
      constexpr int B = decltype(block)::value;
      constexpr int TP = VW * tile_vectors<B>();
      // Pixel tiles outer, channels inner: a tile's squeeze rows (3 buffers x S
      // channels x TP pixels) stay in L1 while every output channel's nonzeros
      // stream past them; channels outer re-read the band's whole buffers from L2
      // for each channel, a 64-byte load per FMA.
      if (!a.channels_last) {
        for (int64_t p0 = 0; p0 < n_pix; p0 += TP) {
          const int64_t valid = imin(TP, n_pix - p0);
          for (int64_t g = c_begin / B; g * B < c_end; ++g)
            dispatch_nv<ExpandTile, B>((valid + VW - 1) / VW, a, bd, out_img + bd.q0 + p0,
                                       int64_t{0}, HW, g, bias, p0, valid);
        }
        return;
      }
      static_assert(VW % B == 0, "a channel set must hold whole groups");
      for (int64_t p0 = 0; p0 < n_pix; p0 += TP) {
        const int64_t valid = imin(TP, n_pix - p0);
        for (int64_t c0 = c_begin; c0 < c_end; c0 += VW) {
          const int64_t cn = imin(VW, c_end - c0);
          for (int64_t g = c0 / B; g * B < c0 + cn; ++g)
            dispatch_nv<ExpandTile, B>((valid + VW - 1) / VW, a, bd, stage, c0, int64_t{TP}, g,
                                       bias, p0, valid);
          // stage[c][l] -> out[(q + l) * E + c0 + c]
          float* dst = out_img + (bd.q0 + p0) * E + c0;
          int64_t l = 0;
          if (cn == VW)
            for (; l + VW <= valid; l += VW) Vec::transpose(stage + l, TP, dst + l * E, E);
          for (; l < valid; ++l)
            for (int64_t c = 0; c < cn; ++c) dst[l * E + c] = stage[c * TP + l];
        }
      }
    });
  }
};

}  // namespace
}  // namespace fire_kernels
