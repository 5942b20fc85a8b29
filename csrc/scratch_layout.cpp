// How a band's work is sized and where its scratch lives (fire_kernel.h).
#include <algorithm>

#include "fire_kernel.h"
#include "network_kernel.h"

namespace fire_kernels {

namespace {

// The three squeeze buffers of a band should stay well inside L2 (512 KiB per
// core on the machines we tune for), next to the weights that stream through.
constexpr int64_t kSqueezeBufferBytes = 192 * 1024;
// A band holds at least one full tile of every ISA, even where the L2 budget
// above cannot hold its squeeze (many squeeze channels, very wide images).
constexpr int64_t kMinBandPixels = kMaxTilePixels;
// Pooled rows of an NCHW input kept at a time (PooledRows), at most: 256 KiB.
constexpr int64_t kPooledRowsFloats = 64 * 1024;
// Buffer rows start on cache lines (16 floats).
constexpr int64_t kCacheLineFloats = 16;
// Rows a multiple of this many floats (1 KiB) apart would all map to the same
// L1 sets.
constexpr int64_t kL1AliasingFloats = 256;

}  // namespace

int64_t max_band_pixels(int64_t S, int64_t W) {
  const int64_t per_pixel = 3 * S * static_cast<int64_t>(sizeof(float));
  return std::max<int64_t>(kMinBandPixels, kSqueezeBufferBytes / per_pixel - 2 * W);
}

int64_t squeeze_row_pitch(int64_t band, int64_t W) {
  // A band's squeeze spans band + 2 rows + 2 pixels of halo; the tiles that
  // cover it, and the shifted stores, overrun by less than two tiles.
  int64_t lp = round_up(kScratchGuard + band + 2 * W + 2 + 2 * kMaxTilePixels, kCacheLineFloats);
  if (lp % kL1AliasingFloats == 0) lp += kCacheLineFloats;
  return lp;
}

FireScratch fire_scratch_layout(const FireArgs& a) {
  FireScratch s;
  // The sparse kernels' weights hold offsets into the buffers, computed for
  // the largest band; every band of the call uses that pitch.
  s.lp = squeeze_row_pitch(a.sparse ? max_band_pixels(a.S, a.W) : a.band, a.W);
  const int64_t Sp = round_up(a.S, kChannelPad);
  const int64_t E1p = round_up(a.E1, kChannelPad), E3p = round_up(a.E3, kChannelPad);
  const bool nhwc = a.channels_last && !a.sparse;
  s.bufs = 0;
  s.tile = s.bufs + 3 * Sp * s.lp;
  s.pooled = s.tile + (nhwc ? 0 : round_up(a.C * kMaxTilePixels, kCacheLineFloats));
  s.pooled_pitch = s.pooled_rows = 0;
  s.rowmax = s.pooled;
  if (pools_rows(a)) {
    // Enough rows for any tile (kMaxTilePixels from any pixel), more while they
    // fit the budget, the whole image at most. Rows are written in whole vectors:
    // the last one overruns by less than one.
    s.pooled_rows = std::min(a.H, std::max(kMaxTilePixels / a.W + 2,
                                           kPooledRowsFloats / std::max<int64_t>(1, a.C * a.W)));
    s.pooled_pitch = round_up(s.pooled_rows * a.W + kChannelPad, kCacheLineFloats);
    s.rowmax = s.pooled + a.C * s.pooled_pitch;
    const int64_t span = round_up(a.W, kChannelPad) * a.pool.stride + a.pool.kernel;
    s.stage = s.rowmax + round_up(std::max(span, a.pool.in_w) + kChannelPad, kCacheLineFloats);
  } else {
    s.stage = s.pooled + (a.pool.kernel > 1 ? round_up(a.C * kMaxTilePixels, kCacheLineFloats) : 0);
  }
  s.bias = s.stage + (a.sparse ? kChannelPad * kMaxTilePixels : 0);
  s.total = s.bias + Sp + E1p + E3p + round_up(a.E1 + a.E3, kCacheLineFloats);
  return s;
}

StemScratch stem_scratch_layout(const StemArgs& a) {
  StemScratch s;
  const int64_t Op = round_up(a.O, kChannelPad);
  s.bias = 0;
  s.input = round_up(s.bias + Op, kCacheLineFloats);
  s.rows = round_up(s.input + a.k * (a.W + 2 * a.pad) * a.C, kCacheLineFloats);
  s.colmax = s.rows + a.pool.kernel * a.Wc * Op;
  s.total = s.colmax + a.Wc * Op;
  return s;
}

int64_t head_pitch(int64_t HW) { return round_up(HW, kMaxTilePixels); }

int64_t head_scratch_floats(const HeadArgs& a) {
  return round_up(a.O, kChannelPad) + (a.sparse ? a.C * head_pitch(a.HW) : 0);
}

}  // namespace fire_kernels
