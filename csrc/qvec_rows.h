// What the 128-bit-lane transposes of qvec_avx2.h and qvec_avx512.h share:
// storing the rows they leave behind.
#pragma once

#include <stdint.h>
#include <string.h>

#include "inline.h"

// rows[m][j] (16 bytes) is pixel 4j + m's row, for W pixels; the first n bytes
// of pixel l's row go to dst[l] + offset, pixels whose dst is null skipped.
template <int W>
FK_INLINE void store_pixel_rows(const uint8_t (*rows)[W / 4][16], uint8_t* const* dst,
                                int64_t offset, int n) {
  for (int l = 0; l < W; ++l)
    if (dst[l] != nullptr) {
      if (n == 16)
        memcpy(dst[l] + offset, rows[l % 4][l / 4], 16);  // one vector store
      else
        memcpy(dst[l] + offset, rows[l % 4][l / 4], n);
    }
}
