// The sparse int8 kernels of one path, the Fire and the classifier head, over
// a quantized vector type Q (qvec_<path>.h); instantiated by
// int8_kernel_run.h. In an anonymous namespace for the reason kernel_band.h
// gives.
//
// Math: the dense kernels' (int8_fire_run.h, int8_head_run.h), bit for bit;
// only the zero weights are skipped.
//
// Layout: vectors along pixels (XNNPACK's SpMM layout), so that a weight is a
// broadcast and a zero one costs nothing. vpdpbusd adds 4 products a lane, so
// a lane holds one pixel's 4 channels of a channel quad, and the activations
// are read quad-major: plane q holds channels 4q .. 4q+3 of every pixel, 4
// bytes a pixel. Entry e of output channel o (Int8Sparse) is one nonzero quad
// (and tap): its 4 weights broadcast, one dot per pixel vector. A quad is
// skipped only when all 4 weights are zero, and a sparse dot needs its own
// load: where that pays, per path, is int8_ops.INT8_SPARSE_MAX_WORK_DENSITY.
//
// Tiling:
//   * Fire: the squeeze runs dense (its input is the previous layer's
//     channels-last output) but stores its requantized bytes into a quad-major
//     band buffer, zero-bordered as the dense kernel's (int8_fire_run.h), its
//     rows int8_sparse_pitch pixels (a multiple of 16), so a 3x3 tap's row is
//     an offset of whole 64-byte lines. Its column is a copy of the band: copy
//     dx holds at pixel p the band's pixel p + dx - 1, so every tap's load of a
//     tile's pixels is aligned. The expands are one 3x3 conv of
//     E1 + E3 concat channels. A tile is SNV vectors of band pixels x 16 concat
//     channels: each channel's entries stream past the tile's pixels (in L1),
//     alternating between two accumulator sets so that 2*SNV dots are in
//     flight; its outputs are requantized, 4 channels packed into each pixel's
//     int32 and the 4 int32 transposed into each pixel's 16 bytes of the concat.
//   * Head: the operator hands the image quad-major; a work item is one
//     image's block of kInt8HeadBlock output channels, its pixel tiles outer,
//     each channel's requantized outputs summed over the tile's valid pixels.
#pragma once

#include <string.h>

#include "int8_fire_run.h"
#include "qvec_rows.h"

namespace fire_kernels {
namespace {

template <class Q>
struct Int8SparseRun : Int8Tiles<Q> {
  using T = Int8Tiles<Q>;
  using T::VW, T::imax, T::imin;
  using acc_t = typename T::acc_t;
  using ivec = typename Q::ivec;
  static constexpr int SNV = Q::SNV;
  static constexpr int TP = VW * SNV;  // pixels a tile
  static_assert(TP <= kInt8SparseMaxTile, "the operators pad planes for kInt8SparseMaxTile");
  static_assert(kInt8SparseAlign % VW == 0, "a vector lies within one row of the band buffer");
  static constexpr int64_t kGroup = 16;  // concat channels a Fire tile: 16 bytes a pixel

  // acc[v] = sum over output channel o's entries e of the dot of pixel vector v
  // at in + sp.offsets[e] with e's 4 weights.
  template <int NV>
  FK_INLINE static void sparse_dot(const uint8_t* in, const Int8Sparse& sp, int64_t o,
                                   acc_t (&acc)[NV]) {
    // Two accumulator sets, even and odd entries: a dot's latency is hidden
    // behind 2*NV independent chains.
    acc_t acc2[NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) Q::zero(acc[v]), Q::zero(acc2[v]);
    const auto at = [&](int64_t e) { return in + sp.offsets[e]; };
    int64_t e = sp.rows[o];
    const int64_t end = sp.rows[o + 1];
    for (; e + 1 < end; e += 2) {
      const uint8_t *p0 = at(e), *p1 = at(e + 1);
      const typename Q::qwt w0 = Q::broadcast_quad(sp.values + e);
      const typename Q::qwt w1 = Q::broadcast_quad(sp.values + e + 1);
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) {
        Q::dot_px(acc[v], Q::load_pixels(p0 + v * VW * kInt8Quad), w0);
        Q::dot_px(acc2[v], Q::load_pixels(p1 + v * VW * kInt8Quad), w1);
      }
    }
    if (e < end) {
      const uint8_t* p0 = at(e);
      const typename Q::qwt w0 = Q::broadcast_quad(sp.values + e);
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) Q::dot_px(acc[v], Q::load_pixels(p0 + v * VW * kInt8Quad), w0);
    }
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) Q::add(acc[v], acc2[v]);
  }

  // lanes[i] = output channel o of the NV*VW pixels from `in`, requantized.
  // Not inlined: on its own, GCC keeps the accumulators in place across the
  // entries loop (inlined into a tile, it copied each one in and out every
  // entry).
  template <int NV>
  __attribute__((noinline)) static void channel(const uint8_t* in, const Int8Sparse& sp,
                                                int64_t o, int32_t* lanes) {
    acc_t acc[NV];
    sparse_dot<NV>(in, sp, o, acc);
    const typename Q::rq p = Q::params1(sp.bias[o], sp.multiplier[o]);
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) Q::store_lanes(lanes + v * VW, Q::requant(acc[v], p));
  }

  // ---- Fire ----

  // Concat channels [g*16, g*16 + 16) of the band's padded pixels [p0, p0 +
  // NV*VW), stored into the concat for those of vector v's span[v].
  template <int NV>
  struct ExpandTile {
    static void run(const Int8FireArgs& a, const uint8_t* buf, int64_t p0,
                    const PixelSpan* span, int64_t g) {
      const Int8Sparse& sp = a.expand;
      const int64_t E = a.E1 + a.E3, c0 = g * kGroup;
      // lanes[c][i]: concat channel c0 + c of pixel p0 + i, requantized.
      alignas(64) int32_t lanes[kGroup][NV * VW];
      for (int64_t c = 0; c < kGroup; ++c) {
        if (c0 + c < E)
          channel<NV>(buf + p0 * kInt8Quad, sp, c0 + c, lanes[c]);
        else
          memset(lanes[c], 0, sizeof lanes[c]);  // past the concat
      }
      // Each pixel's 16 bytes: 4 channels packed into each of 4 int32, then
      // transposed from vectors of pixels into the pixels' rows of the concat.
      const int n = static_cast<int>(imin(kGroup, E - c0));
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) {
        if (span[v].first == span[v].last) continue;  // all padding
        ivec q[kGroup / kInt8Quad];
#pragma GCC unroll 4
        for (int64_t k = 0; k < kGroup / kInt8Quad; ++k) {
          const int32_t(*l)[NV * VW] = lanes + k * kInt8Quad;
          q[k] = Q::pack4(Q::load_lanes(l[0] + v * VW), Q::load_lanes(l[1] + v * VW),
                          Q::load_lanes(l[2] + v * VW), Q::load_lanes(l[3] + v * VW));
        }
        Q::store_pixel_quads(q[0], q[1], q[2], q[3], span[v], c0, n);
      }
    }
  };

  static void fire(const Int8FireArgs& a, int64_t begin, int64_t end, uint8_t* scratch) {
    using Dense = Int8FireRun<Q>;
    const int64_t Wa = a.pitch, HW = a.H * a.W, E = a.E1 + a.E3;
    const int64_t copy = int8_quads(a.S) * a.plane;  // bytes of one copy of the band
    // The copies for tap columns 0, 1, 2 one after another, on a 64-byte line.
    uint8_t* const copies = reinterpret_cast<uint8_t*>(
        (reinterpret_cast<uintptr_t>(scratch) + 63) & ~static_cast<uintptr_t>(63));
    uint8_t* const band = copies + copy;
    uint8_t* pooled = scratch + int8_band_bytes(a);
    for (int64_t item = begin; item < end; ++item) {
      const int64_t n = item / a.bands, y0 = item % a.bands * a.band_rows;
      const int64_t y1 = imin(a.H, y0 + a.band_rows);
      if (y0 >= y1) continue;
      const int64_t rows = y1 - y0;
      // Zero but where the squeeze stores: the halo rows off the image, the
      // border columns and the row padding.
      memset(band, 0, copy);
      Dense::template squeeze<true>(a, a.x + n * a.in_h * a.in_w * a.C4, band, pooled, y0,
                                    y0 > 0 ? (y0 - 1) * a.W : 0, imin(a.H, y1 + 1) * a.W);
      memset(copies, 0, kInt8Quad);
      memcpy(copies + kInt8Quad, band, copy - kInt8Quad);
      memcpy(band + copy, band + kInt8Quad, copy - kInt8Quad);
      memset(band + 2 * copy - kInt8Quad, 0, kInt8Quad);
      uint8_t* out_img = a.out + n * HW * E;
      // From the first padded row's start, so that every tile starts on a line.
      const int64_t p_begin = Wa, p_end = rows * Wa + a.W + 1;
      // Pixel tiles outer: a tile's 3 rows of every plane stay in L1 while the
      // channels' entries stream past.
      for (int64_t p0 = p_begin; p0 < p_end; p0 += TP) {
        const int64_t nv = imin(SNV, (p_end - p0 + VW - 1) / VW);
        // Where each vector's pixels go in the concat: a vector lies within one
        // padded row (Wa is a multiple of VW); its lanes on the row's image
        // columns [1, W], and before p_end, are stored.
        PixelSpan span[SNV];
        for (int64_t v = 0; v < nv; ++v) {
          const int64_t p = p0 + v * VW, row = p / Wa, col = p % Wa;
          const int64_t first = imax(col, 1);
          const int64_t last = imin(imin(col + VW, a.W + 1), p_end - row * Wa);
          span[v] = last > first ? PixelSpan{out_img + ((y0 + row - 1) * a.W + first - 1) * E, E,
                                             static_cast<int>(first - col),
                                             static_cast<int>(last - col)}
                                 : PixelSpan{nullptr, E, 0, 0};
        }
        const PixelSpan* spans = span;
        for (int64_t g = 0; g * kGroup < E; ++g)
          dispatch_vectors<SNV, ExpandTile>(nv, a, band, p0, spans, g);
      }
    }
  }

  // ---- Head ----

  // sum[o - b0] += requantized outputs of channels [b0, b1) over the `valid`
  // <= NV*VW pixels of the quad-major image from `in`.
  template <int NV>
  struct HeadTile {
    static void run(const Int8HeadArgs& a, const uint8_t* in, int64_t b0, int64_t b1,
                    int64_t valid, int32_t* sum) {
      for (int64_t o = b0; o < b1; ++o) {
        acc_t acc[NV];
        sparse_dot<NV>(in, a.sparse, o, acc);
        const typename Q::rq p = Q::params1(a.sparse.bias[o], a.sparse.multiplier[o]);
        alignas(64) int32_t lanes[VW] = {};
#pragma GCC unroll 8
        for (int v = 0; v < NV; ++v) {
          const ivec q = Q::requant(acc[v], p);
          if ((v + 1) * VW <= valid) {
            Q::add_to(lanes, q);
          } else {  // the last vector: its lanes past the image are not pixels
            alignas(64) int32_t part[VW];
            Q::store_lanes(part, q);
            for (int64_t l = 0; l < valid - v * VW; ++l) lanes[l] += part[l];
          }
        }
        int32_t s = 0;
        for (int l = 0; l < VW; ++l) s += lanes[l];
        sum[o - b0] += s;
      }
    }
  };

  static void head(const Int8HeadArgs& a, int64_t begin, int64_t end) {
    const int64_t quads = a.C4 / kInt8Quad;
    for (int64_t item = begin; item < end; ++item) {
      const int64_t n = item / a.blocks, b0 = item % a.blocks * kInt8HeadBlock;
      const int64_t b1 = imin(a.O, b0 + kInt8HeadBlock);
      const uint8_t* img = a.x + n * quads * a.plane;
      int32_t sum[kInt8HeadBlock] = {};
      for (int64_t p0 = 0; p0 < a.HW; p0 += TP) {
        const int64_t valid = imin(TP, a.HW - p0);
        int32_t* sums = sum;
        dispatch_vectors<SNV, HeadTile>((valid + VW - 1) / VW, a, img + p0 * kInt8Quad, b0, b1,
                                        valid, sums);
      }
      for (int64_t j = b0; j < b1; ++j)
        a.out[n * a.O + j] = static_cast<float>(sum[j - b0]) * a.scale;
    }
  }
};

}  // namespace
}  // namespace fire_kernels
