#include "fire_kernel.h"

namespace fire_kernels {

namespace {
int64_t round_up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }
}  // namespace

FireScratch fire_scratch_layout(const FireArgs& a) {
  FireScratch s;
  // A band's squeeze spans band + 2 rows + 2 pixels of halo; the tiles that
  // cover it, and the shifted stores, overrun by less than two tiles.
  s.lp = round_up(kScratchGuard + a.band + 2 * a.W + 2 + 2 * kMaxTilePixels, 16);
  // Channel rows a multiple of 1 KiB apart would all map to the same L1 sets.
  if (!a.channels_last && s.lp % 256 == 0) s.lp += 16;
  const int64_t Sp = round_up(a.S, kChannelPad);
  const int64_t E1p = round_up(a.E1, kChannelPad), E3p = round_up(a.E3, kChannelPad);
  s.bufs = 0;
  s.tile = s.bufs + 3 * Sp * s.lp;
  s.bias = s.tile + (a.channels_last ? 0 : round_up(a.C * kMaxTilePixels, 16));
  s.total = s.bias + Sp + E1p + E3p;
  return s;
}

}  // namespace fire_kernels
