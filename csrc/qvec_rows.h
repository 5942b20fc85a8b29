// What the 128-bit-lane transposes of qvec_avx2.h and qvec_avx512.h share:
// storing the rows they leave behind.
#pragma once

#include <stdint.h>
#include <string.h>

#include <utility>

#include "inline.h"

// The pixels of a vector of W that are stored: lanes [first, last), lane l's
// row at `at` + (l - first) * pitch (a run of one image row).
struct PixelSpan {
  uint8_t* at;
  int64_t pitch;
  int first, last;
};

// rows[m][j] (16 bytes) is pixel 4j + m's row, for W pixels; the first n < 16
// bytes of the span's pixels' rows go to their place + offset (whole rows go
// straight from the registers, store_lanes_at).
template <int W>
FK_INLINE void store_pixel_rows(const uint8_t (*rows)[W / 4][16], const PixelSpan& span,
                                int64_t offset, int n) {
  uint8_t* dst = span.at + offset;
  for (int l = span.first; l < span.last; ++l, dst += span.pitch)
    memcpy(dst, rows[l % 4][l / 4], n);
}

// Pixel L's 16 bytes, row<L>() (a 128-bit vector), stored at its place in the
// span + offset, for L < W: one unrolled store each.
template <class Row, int... L>
FK_INLINE void store_lanes_at(const PixelSpan& span, int64_t offset, Row row,
                              std::integer_sequence<int, L...>) {
  uint8_t* dst = span.at + offset;
  (
      [&] {
        if (L >= span.first && L < span.last) {
          const auto r = row.template operator()<L>();
          static_assert(sizeof r == 16, "a pixel's row is 16 bytes");
          memcpy(dst + (L - span.first) * span.pitch, &r, 16);
        }
      }(),
      ...);
}
