// What every per-ISA Fire kernel shares: a band's scratch and how its pixels
// map into it, the squeeze's three shifted stores, gathering an input tile,
// the padding zeros, and moving a halo between consecutive bands.
//
// Templates over the vector type (vec_<isa>.h), instantiated by each kernel
// translation unit under its `#pragma GCC target`. Everything here is in an
// anonymous namespace, so every translation unit keeps its own copy compiled
// for its own ISA (no shared inline instance can carry AVX-512 code into the
// portable kernel). For the same reason only intrinsics and these helpers are
// used, no std:: templates.
#pragma once

#include <string.h>

#include "fire_kernel.h"
#include "inline.h"

namespace fire_kernels {
namespace {

FK_INLINE int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }
FK_INLINE int64_t imax(int64_t a, int64_t b) { return a > b ? a : b; }

// max(m, v), NaN if either is (torch's max pooling; Vec::max_nan's lanes).
FK_INLINE float max_nan(float m, float v) { return (m != m || m > v) ? m : v; }

FK_INLINE void zero_range(float* p, int64_t n) {
  for (int64_t k = 0; k < n; ++k) p[k] = 0.f;
}

// Where one band's scratch lives and how its pixels map into it.
struct Band {
  int64_t q0, q1;  // the band's flat pixels in its image
  int64_t lp;      // pixels per squeeze buffer
  float* buf;      // the three squeeze buffers, dx = 0 (bufL), 1 (centre), 2 (bufR)
  // Buffer pixel of flat image pixel q (valid for q0 - W - 1 <= q < q1 + W + 1).
  FK_INLINE int64_t idx(int64_t q, int64_t W) const { return kScratchGuard + q - (q0 - W); }
};

// Tap t = 3*dy + dx of the 3x3 reads buffer dx at pixel offset (dy-1)*W.
FK_INLINE int64_t tap_offset(int t, int64_t buf_stride, int64_t row) {
  return (t % 3) * buf_stride + (t / 3 - 1) * row;
}

// Stores one vector of squeeze output s[q .. q + Vec::W) at `centre` (the
// centre buffer, NCHW) and, shifted, into bufL (bufL[q + 1] = s[q]) and bufR
// (bufR[q - 1] = s[q]); only the first n lanes when n < Vec::W, so that a
// partial tile never writes pixels it does not own (threads may share the
// buffers).
template <class Vec>
FK_INLINE void store_squeeze(const FireArgs& a, const Band& bd, float* centre,
                             typename Vec::reg s, int64_t n) {
  const int64_t stride = a.S * bd.lp;
  if (n >= Vec::W) {
    Vec::store(centre, s);
    Vec::store(centre - stride + 1, s);
    Vec::store(centre + stride - 1, s);
  } else if (n > 0) {
    Vec::store_first(centre, s, static_cast<int>(n));
    Vec::store_first(centre - stride + 1, s, static_cast<int>(n));
    Vec::store_first(centre + stride - 1, s, static_cast<int>(n));
  }
}

// The epilogue of one channel of a tile vectorised along pixels: stores the
// squeeze relu(acc[v] + b) of the `valid` pixels from `centre` into the three
// buffers (store_squeeze).
template <class Vec, int NVB>
FK_INLINE void store_squeeze_row(const FireArgs& a, const Band& bd, float* centre,
                                 const typename Vec::reg (&acc)[NVB], typename Vec::reg b,
                                 int64_t valid) {
#pragma GCC unroll 8
  for (int v = 0; v < NVB; ++v)
    store_squeeze<Vec>(a, bd, centre + v * Vec::W, Vec::relu(Vec::add(acc[v], b)),
                       valid - v * Vec::W);
}

// The same for an output channel: relu(acc[v] + b) stored at dst for the
// `valid` pixels from there (whole vectors, then the first lanes of the last).
template <class Vec, int NVB>
FK_INLINE void store_output_row(float* dst, const typename Vec::reg (&acc)[NVB],
                                typename Vec::reg b, int64_t valid) {
#pragma GCC unroll 8
  for (int v = 0; v < NVB; ++v) {
    const typename Vec::reg o = Vec::relu(Vec::add(acc[v], b));
    const int64_t n = valid - v * Vec::W;
    if (n >= Vec::W)
      Vec::store(dst + v * Vec::W, o);
    else if (n > 0)
      Vec::store_first(dst + v * Vec::W, o, static_cast<int>(n));
  }
}

// Where pixel q = y*W + x of an image lies and how its channels are laid out:
// the input of a Fire, or its pooled pixels gathered into scratch.
struct PixelSource {
  const float* base;
  int64_t sc, sh, sw;  // strides of a channel, a row, a column
  int64_t W;
  // Pixel q at base + q*ps (instead of (q / W)*sh + (q % W)*sw).
  bool uniform;
  int64_t ps;
  FK_INLINE const float* pixel(int64_t q) const {
    return base + (uniform ? q * ps : (q / W) * sh + (q % W) * sw);
  }
};

// The raw input of image x_img (without pooling: the Fire's input).
FK_INLINE PixelSource input_source(const FireArgs& a, const float* x_img) {
  return {x_img, a.x_sc, a.x_sh, a.x_sw, a.W, a.x_uniform, a.x_ps};
}

// `count` pooled pixels from q (FirePool), their C channels contiguous at
// dst + i * ld: each the max over its window of the raw input (NaN if any is).
template <class Vec>
void pool_pixels(const FireArgs& a, const float* x_img, int64_t q, int64_t count, float* dst,
                 int64_t ld) {
  constexpr int VW = Vec::W;
  const FirePool& p = a.pool;
  const int64_t C = a.C, c_vec = a.x_sc == 1 ? C - C % VW : 0;
  for (int64_t i = 0; i < count; ++i, ++q) {
    const int64_t y0 = (q / a.W) * p.stride, x0 = (q % a.W) * p.stride;
    const int64_t y1 = imin(y0 + p.kernel, p.in_h), x1 = imin(x0 + p.kernel, p.in_w);
    const float* first = x_img + y0 * a.x_sh + x0 * a.x_sw;
    float* d = dst + i * ld;
    for (int64_t c = 0; c < c_vec; c += VW) {
      typename Vec::reg m = Vec::load(first + c);
      for (int64_t y = y0; y < y1; ++y)
        for (int64_t x = x0; x < x1; ++x)
          m = Vec::max_nan(m, Vec::load(x_img + y * a.x_sh + x * a.x_sw + c));
      Vec::store(d + c, m);
    }
    for (int64_t c = c_vec; c < C; ++c) {
      float m = first[c * a.x_sc];
      for (int64_t y = y0; y < y1; ++y)
        for (int64_t x = x0; x < x1; ++x) {
          const float v = x_img[y * a.x_sh + x * a.x_sw + c * a.x_sc];
          m = max_nan(m, v);
        }
      d[c] = m;
    }
  }
}

// Max over a pooling window's `n` values from p, NaN if any is (torch's max
// pooling).
FK_INLINE float window_max(const float* p, int64_t n) {
  float m = p[0];
  for (int64_t j = 1; j < n; ++j) m = max_nan(m, p[j]);
  return m;
}

// out[i] = the max of row[i*2 .. i*2 + K) for i < n, n a multiple of Vec::W
// (K = 2 or 3: stride-2 windows, SqueezeNet's 3/2).
template <class Vec, int K>
FK_INLINE void stride2_window_maxes(const float* row, int64_t n, float* out) {
  for (int64_t i = 0; i < n; i += Vec::W) {
    const float* p = row + 2 * i;
    typename Vec::reg m = Vec::max_nan(Vec::even(p), Vec::odd(p));
    if constexpr (K == 3) m = Vec::max_nan(m, Vec::even(p + 2));
    Vec::store(out + i, m);
  }
}

// The pooled input of a Fire whose raw input has contiguous rows (NCHW), kept
// a few whole pooled rows at a time for the squeeze's tiles: rows [first,
// first + count) of the pooled image at buf[c * pitch + (q - first*W)] for
// pooled pixel q. Pooling whole rows lets each channel's windows be max'ed
// with vectors along the row (the window's input rows first, into `rowmax`,
// then the window's columns); pooling a tile's pixels one by one reads each
// window element of each channel with a scalar load (several times slower).
struct PooledRows {
  float* buf;
  float* rowmax;  // one input row's vertical maxes, -inf past the input's width
  int64_t pitch, capacity;
  int64_t first, count;
};

// Makes rows [r, min(r + capacity, H)) the ones `pr` holds.
template <class Vec>
void pool_rows(const FireArgs& a, const float* x_img, int64_t r, PooledRows& pr) {
  constexpr int VW = Vec::W;
  const FirePool& p = a.pool;
  // The vectorised window loops run on whole vectors of outputs: the lanes past
  // W read -inf (to rowmax[n*stride + kernel]) and land in the next row
  // (rewritten after) or the slack.
  const int64_t n = round_up(a.W, VW);
  for (int64_t x = p.in_w; x < n * p.stride + p.kernel; ++x) pr.rowmax[x] = -__builtin_inff();
  pr.first = r;
  pr.count = imin(pr.capacity, a.H - r);
  for (int64_t c = 0; c < a.C; ++c) {
    for (int64_t oy = r; oy < r + pr.count; ++oy) {
      const int64_t y0 = oy * p.stride, rows = imin(y0 + p.kernel, p.in_h) - y0;
      const float* src = x_img + c * a.x_sc + y0 * a.x_sh;
      if (p.in_w >= VW) {
        // Whole vectors, the last one overlapping its predecessor (not a scalar tail).
        for (int64_t x0 = 0; x0 < p.in_w; x0 += VW) {
          const int64_t x = imin(x0, p.in_w - VW);
          typename Vec::reg m = Vec::load(src + x);
          if (rows == 3) {
            m = Vec::max_nan(Vec::max_nan(m, Vec::load(src + a.x_sh + x)),
                             Vec::load(src + 2 * a.x_sh + x));
          } else {
            for (int64_t k = 1; k < rows; ++k)
              m = Vec::max_nan(m, Vec::load(src + k * a.x_sh + x));
          }
          Vec::store(pr.rowmax + x, m);
        }
      } else {
        for (int64_t x = 0; x < p.in_w; ++x) {
          float m = src[x];
          for (int64_t k = 1; k < rows; ++k) {
            const float v = src[k * a.x_sh + x];
            m = max_nan(m, v);
          }
          pr.rowmax[x] = m;
        }
      }
      float* out = pr.buf + c * pr.pitch + (oy - r) * a.W;
      if (p.kernel == 3 && p.stride == 2)
        stride2_window_maxes<Vec, 3>(pr.rowmax, n, out);
      else if (p.kernel == 2 && p.stride == 2)
        stride2_window_maxes<Vec, 2>(pr.rowmax, n, out);
      else
        for (int64_t i = 0; i < a.W; ++i)
          out[i] = window_max(pr.rowmax + i * p.stride, imin(p.kernel, p.in_w - i * p.stride));
    }
  }
}

// Copies `valid` pixels from t0 of `src` into tile[c * ld + l] for every one of
// the C channels, zero-filling lanes [valid, width): the NCHW kernels' view of
// a strided, channels-last or pooled input, or of a partial last tile (which
// must not be read past the input's end). Channels-contiguous blocks go
// through Vec::W x Vec::W transposes.
template <class Vec>
void gather_tile(const PixelSource& src, int64_t C, int64_t t0, int64_t valid, int64_t width,
                 float* tile, int64_t ld) {
  constexpr int VW = Vec::W;
  for (int64_t c = 0; c < C; ++c) zero_range(tile + c * ld + valid, width - valid);
  if (src.uniform && src.ps == 1) {
    // Pixels contiguous within a channel (NCHW): one run per channel, not a
    // strided scalar copy per pixel (a partial last tile of a 13x13 map with
    // 512 channels took a tenth of a sparse Fire's time that way).
    for (int64_t c = 0; c < C; ++c)
      memcpy(tile + c * ld, src.pixel(t0) + c * src.sc, valid * sizeof(float));
    return;
  }
  int64_t l = 0, c_done = 0;
  if (src.uniform && src.sc == 1) {
    c_done = C - C % VW;
    for (; l + VW <= valid; l += VW)
      for (int64_t c = 0; c < c_done; c += VW)
        Vec::transpose(src.pixel(t0 + l) + c, src.ps, tile + c * ld + l, ld);
  }
  for (int64_t p = 0; p < valid; ++p) {
    const float* px = src.pixel(t0 + p);
    // Pixels before l have their first c_done channels from the transposes.
    for (int64_t c = p < l ? c_done : 0; c < C; ++c) tile[c * ld + p] = px[c * src.sc];
  }
}

// The NCHW kernels' input tile: pixels [t0, t0 + valid) of image x_img, C
// channels `ld` floats apart, zero-filled to `width` lanes, gathered (pooled
// first, with pooling) into `tile`; or, where the input (or the pooled rows
// `pr` hold) already has that layout and the tile is whole, the input itself.
// Returns the tile's start and sets its channel stride.
template <class Vec>
const float* input_tile(const FireArgs& a, const float* x_img, int64_t t0, int64_t valid,
                        int64_t width, float* tile, int64_t ld, PooledRows& pr,
                        int64_t* channel_stride) {
  if (pools_rows(a)) {
    const int64_t last_row = (t0 + valid - 1) / a.W;
    if (t0 / a.W < pr.first || last_row >= pr.first + pr.count)
      pool_rows<Vec>(a, x_img, t0 / a.W, pr);
    const float* at = pr.buf + t0 - pr.first * a.W;
    if (valid == width) {
      *channel_stride = pr.pitch;
      return at;
    }
    gather_tile<Vec>({at, pr.pitch, 0, 0, a.W, true, 1}, a.C, 0, valid, width, tile, ld);
  } else if (a.pool.kernel > 1) {
    pool_pixels<Vec>(a, x_img, t0, valid, pr.buf, a.C);
    gather_tile<Vec>({pr.buf, 1, 0, 0, a.W, true, a.C}, a.C, 0, valid, width, tile, ld);
  } else if (a.x_uniform && a.x_ps == 1 && valid == width) {
    *channel_stride = a.x_sc;
    return x_img + t0;
  } else {
    gather_tile<Vec>(input_source(a, x_img), a.C, t0, valid, width, tile, ld);
  }
  *channel_stride = ld;
  return tile;
}

// Zeros what the 3x3 must see as padding, in all three buffers: pixels off the
// image, the left neighbour of column 0 (bufL) and the right neighbour of
// column W-1 (bufR). at(d, q) is the start of the `n` floats (n_step apart)
// of buffer d at image pixel q.
template <typename At>
void zero_padding(const FireArgs& a, const Band& bd, int64_t n, int64_t n_step, At at) {
  const int64_t W = a.W, HW = a.H * a.W;
  const int64_t lo = bd.q0 - W, hi = bd.q1 + W;  // the pixels the expands read
  auto zero_pixel = [&](int d, int64_t q) {
    float* p = at(d, q);
    for (int64_t c = 0; c < n; ++c) p[c * n_step] = 0.f;
  };
  for (int d = 0; d < 3; ++d) {
    for (int64_t q = lo; q < imin(hi, 0); ++q) zero_pixel(d, q);
    for (int64_t q = imax(lo, HW); q < hi; ++q) zero_pixel(d, q);
    if (d == 1) continue;
    const int64_t col = (d == 0) ? 0 : W - 1;
    const int64_t start = imax(lo, 0);
    int64_t q = start - start % W + col;
    if (q < start) q += W;
    for (; q < imin(hi, HW); q += W) zero_pixel(d, q);
  }
}

// Moves `count` buffer pixels from index kScratchGuard + shift down to
// kScratchGuard, in all three squeeze buffers (`channels` channels each,
// `lp` pixels per buffer; channels-last [3][lp][channels] or NCHW
// [3][channels][lp]). The ranges overlap when shift < count.
inline void move_halo(float* buf, int64_t channels, int64_t lp, int64_t shift, int64_t count,
                      bool nhwc) {
  for (int64_t d = 0; d < 3; ++d) {
    if (nhwc) {
      float* dst = buf + (d * lp + kScratchGuard) * channels;
      memmove(dst, dst + shift * channels, count * channels * sizeof(float));
    } else {
      for (int64_t c = 0; c < channels; ++c) {
        float* dst = buf + (d * channels + c) * lp + kScratchGuard;
        memmove(dst, dst + shift, count * sizeof(float));
      }
    }
  }
}

}  // namespace
}  // namespace fire_kernels
