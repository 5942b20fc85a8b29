// The int8 fused Fire kernel of one path, written once over a quantized
// vector type Q (qvec_avx512.h, qvec_avx2.h, qvec_portable.h) and
// instantiated by int8_kernel_<path>.cpp under that path's `#pragma GCC
// target`; in an anonymous namespace for the reason kernel_band.h gives.
//
// Math (int8_kernel.h; per image, channels last, zero points 0):
//   s[q][c]  = requant_s(b_s[c] + sum_k w_s[c][k] * x[q][k])                      squeeze
//   o1[q][e] = requant_o(b_1[e] + sum_c w_1[e][c] * s[q][c])                       expand 1x1
//   o3[q][e] = requant_o(b_3[e] + sum_{c,dy,dx} w_3[e][dy][dx][c] * s[q + (dy-1, dx-1)][c])
//   out[q] = cat(o1[q], o3[q]); requant(acc) = clamp(rint(float(acc) * M), 0, 255).
//
// Tiling:
//   * Work item = one band of image rows [y0, y1). Its squeeze, rows
//     [y0 - 1, y1 + 1) clipped to the image, goes to per-thread scratch laid
//     out as a zero-bordered image: (rows + 2) rows of W + 2 pixels, Sp bytes
//     each, the image pixel (y, x) at padded pixel (y - y0 + 1)*(W + 2) + x + 1;
//     rows off the image and the two border columns are zeros, the 3x3's
//     padding. Then a 3x3 tap is a plain offset, ((dy-1)*(W + 2) + dx - 1)
//     pixels, and the expands sweep the band's padded pixels as one flat run:
//     full tiles even on 13x13 images, at the price of computing the two
//     border columns (not stored).
//   * Register tile: MR pixels x NRV vectors of Q::W output channels. Per tap
//     and channel quad, NRV weight vectors are loaded and each pixel's 4 bytes
//     broadcast into MR*NRV 4-way dot products (vpdpbusd, or its AVX2 and
//     portable equivalents), int32 accumulators; the epilogue adds the bias,
//     requantizes and stores bytes (the squeeze into scratch, the expands into
//     their slice of the concat).
//   * Expands loop over channel vectors outside and pixel tiles inside, so a
//     panel's weights stay in L1 while its tiles sweep the band's squeeze.
#pragma once

#include <string.h>

#include "int8_tiles.h"

namespace fire_kernels {
namespace {

template <class Q>
struct Int8FireRun : Int8Tiles<Q> {
  using T = Int8Tiles<Q>;
  using T::MR, T::NR, T::NRV, T::VW, T::imax, T::imin, T::vectors_for;
  using acc_t = typename T::acc_t;

  // Squeeze channels [cs0, cs0 + NRB*VW) of the `valid` <= MR input pixels
  // `rows`, requantized into the band buffer's pixels `dst`: channels last
  // (QM false), or quad-major (the sparse Fire's: channel c at dst + c/4 *
  // a.plane + c%4, the padded channels past S4 not stored).
  template <bool QM>
  struct Squeeze {
    template <int NRB>
    struct Tile {
      static void run(const Int8FireArgs& a, const uint8_t* const (&rows)[MR],
                      uint8_t* const (&dst)[MR], int64_t valid, int64_t cs0) {
        acc_t acc[MR][NRB];
        const int64_t centre = 0;
        T::template conv_tile<NRB>(rows, &centre, 1, a.C4 / kInt8Quad, a.squeeze.w,
                                   kInt8Panel * a.C4, cs0, acc);
        typename Q::rq p[NRB];
        T::params(a.squeeze, cs0, p);
        const int64_t quads = int8_quads(a.S);
#pragma GCC unroll 8
        for (int i = 0; i < MR; ++i) {
          if (i >= valid) break;
#pragma GCC unroll 4
          for (int r = 0; r < NRB; ++r) {
            const int64_t c = cs0 + r * VW;
            if constexpr (QM) {
              alignas(64) uint8_t bytes[VW];
              Q::store_requant(bytes, acc[i][r], p[r], VW);
              for (int64_t k = 0; k < VW / kInt8Quad && c / kInt8Quad + k < quads; ++k)
                memcpy(dst[i] + (c / kInt8Quad + k) * a.plane, bytes + k * kInt8Quad, kInt8Quad);
            } else {
              Q::store_requant(dst[i] + c, acc[i][r], p[r], VW);
            }
          }
        }
      }
    };
  };

  // One expand (NT = 1: the 1x1, NT = 9: the 3x3): channels [j0, min(j0 +
  // NRB*VW, E)) of MR padded pixels from p0 of the band buffer, stored into
  // output channels co0 + j of the pixels inside the image.
  template <int NT>
  struct Expand {
    template <int NRB>
    struct Tile {
      static void run(const Int8FireArgs& a, const Int8Conv& conv, const int64_t* off,
                      const uint8_t* buf, uint8_t* out_img, int64_t y0, int64_t p0,
                      int64_t p_end, int64_t j0, int64_t E, int64_t co0) {
        const int64_t Wp = a.W + 2, S4 = int8_quads(a.S) * kInt8Quad;
        const uint8_t* rows[MR];
#pragma GCC unroll 8
        for (int i = 0; i < MR; ++i) rows[i] = buf + (p0 + i) * a.Sp;
        acc_t acc[MR][NRB];
        T::template conv_tile<NRB>(rows, off, NT, S4 / kInt8Quad, conv.w, kInt8Panel * NT * S4,
                                   j0, acc);
        const int64_t channels = a.E1 + a.E3;
        typename Q::rq params[NRB];
        T::params(conv, j0, params);
#pragma GCC unroll 8
        for (int i = 0; i < MR; ++i) {
          const int64_t p = p0 + i;
          if (p >= p_end) break;
          const int64_t col = p % Wp;
          if (col == 0 || col == Wp - 1) continue;  // a border column: padding
          uint8_t* dst = out_img + ((y0 + p / Wp - 1) * a.W + col - 1) * channels + co0;
#pragma GCC unroll 4
          for (int r = 0; r < NRB; ++r) {
            const int64_t j = j0 + r * VW;
            Q::store_requant(dst + j, acc[i][r], params[r], static_cast<int>(imin(VW, E - j)));
          }
        }
      }
    };
  };

  // dst[c] = max of the pooled input pixel q's window (c < C4).
  static void pool_pixel(const Int8FireArgs& a, const uint8_t* x_img, int64_t q,
                         uint8_t* __restrict dst) {
    const int64_t y0 = q / a.W * a.pool_stride, x0 = q % a.W * a.pool_stride;
    const int64_t y1 = imin(y0 + a.pool_kernel, a.in_h), x1 = imin(x0 + a.pool_kernel, a.in_w);
    const int n = static_cast<int>(a.C4);
    memcpy(dst, x_img + (y0 * a.in_w + x0) * a.C4, n);
    for (int64_t y = y0; y < y1; ++y)
      for (int64_t x = y == y0 ? x0 + 1 : x0; x < x1; ++x) {
        const uint8_t* __restrict src = x_img + (y * a.in_w + x) * a.C4;
        for (int c = 0; c < n; ++c) dst[c] = dst[c] > src[c] ? dst[c] : src[c];
      }
  }

  // The squeeze of image pixels [qa, qb) (whole rows) into the band buffer
  // (layout: Squeeze<QM>); with pooling, each tile's input pixels are pooled
  // into `pooled` first.
  template <bool QM>
  static void squeeze(const Int8FireArgs& a, const uint8_t* x_img, uint8_t* buf, uint8_t* pooled,
                      int64_t y0, int64_t qa, int64_t qb) {
    const int64_t Wp = QM ? a.pitch : a.W + 2;
    for (int64_t q = qa; q < qb; q += MR) {
      const int64_t valid = imin(MR, qb - q);
      // Pixels past the valid ones repeat the last valid one: computed, not stored.
      const uint8_t* rows[MR];
      uint8_t* dst[MR];
      for (int i = 0; i < MR; ++i) {
        const int64_t qi = q + imin(i, valid - 1);
        if (a.pool_kernel > 1) {
          if (i < valid) pool_pixel(a, x_img, qi, pooled + i * a.C4);
          rows[i] = pooled + imin(i, valid - 1) * a.C4;
        } else {
          rows[i] = x_img + qi * a.C4;
        }
        dst[i] = buf + ((qi / a.W - y0 + 1) * Wp + qi % a.W + 1) * (QM ? kInt8Quad : a.Sp);
      }
      for (int64_t cs0 = 0; cs0 < a.Sp; cs0 += NR)
        dispatch_vectors<NRV, Squeeze<QM>::template Tile>(vectors_for(a.Sp - cs0), a, rows, dst,
                                                          valid, cs0);
    }
  }

  template <int NT>
  static void expand(const Int8FireArgs& a, const Int8Conv& conv, const uint8_t* buf,
                     uint8_t* out_img, int64_t y0, int64_t rows, int64_t E, int64_t co0) {
    const int64_t Wp = a.W + 2;
    // The band's first and one past its last image pixel, padded.
    const int64_t p_begin = Wp + 1, p_end = rows * Wp + a.W + 1;
    // Tap t = 3*dy + dx of the 3x3 reads padded pixel (dy - 1, dx - 1) away.
    int64_t off[NT];
    for (int t = 0; t < NT; ++t) off[t] = NT == 1 ? 0 : ((t / 3 - 1) * Wp + t % 3 - 1) * a.Sp;
    for (int64_t j0 = 0; j0 < E; j0 += NR) {
      const int64_t nrb = vectors_for(E - j0);
      for (int64_t p0 = p_begin; p0 < p_end; p0 += MR)
        dispatch_vectors<NRV, Expand<NT>::template Tile>(nrb, a, conv, off, buf, out_img, y0, p0,
                                                         p_end, j0, E, co0);
    }
  }

  // The band buffer's padding: halo rows off the image, and both border columns.
  static void clear_padding(const Int8FireArgs& a, uint8_t* buf, int64_t y0, int64_t rows) {
    const int64_t Wp = a.W + 2;
    for (int64_t r = 0; r < rows + 2; ++r) {
      uint8_t* row = buf + r * Wp * a.Sp;
      const int64_t y = y0 - 1 + r;
      if (y < 0 || y >= a.H) {
        memset(row, 0, Wp * a.Sp);
      } else {
        memset(row, 0, a.Sp);
        memset(row + (Wp - 1) * a.Sp, 0, a.Sp);
      }
    }
  }

  // Work items [begin, end) of kernel K (this one, or int8_amx_fire_run.h's): per
  // band, the padding, K's squeeze of the band's rows and halo, K's expands.
  template <class K>
  static void run_bands(const Int8FireArgs& a, int64_t begin, int64_t end, uint8_t* scratch) {
    const int64_t HW = a.H * a.W, channels = a.E1 + a.E3;
    for (int64_t item = begin; item < end; ++item) {
      const int64_t n = item / a.bands, y0 = item % a.bands * a.band_rows;
      const int64_t y1 = imin(a.H, y0 + a.band_rows);
      if (y0 >= y1) continue;
      const int64_t rows = y1 - y0;
      clear_padding(a, scratch, y0, rows);
      K::squeeze_band(a, a.x + n * a.in_h * a.in_w * a.C4, scratch,
                      scratch + int8_band_bytes(a), y0, imax(0, y0 - 1) * a.W,
                      imin(a.H, y1 + 1) * a.W);
      uint8_t* out_img = a.out + n * HW * channels;
      K::template expand<1>(a, a.expand1x1, scratch, out_img, y0, rows, a.E1, 0);
      K::template expand<9>(a, a.expand3x3, scratch, out_img, y0, rows, a.E3, a.E1);
    }
  }

  static void squeeze_band(const Int8FireArgs& a, const uint8_t* x_img, uint8_t* buf,
                           uint8_t* pooled, int64_t y0, int64_t qa, int64_t qb) {
    squeeze<false>(a, x_img, buf, pooled, y0, qa, qb);
  }

  static void run(const Int8FireArgs& a, int64_t begin, int64_t end, uint8_t* scratch) {
    run_bands<Int8FireRun>(a, begin, end, scratch);
  }
};

}  // namespace
}  // namespace fire_kernels
