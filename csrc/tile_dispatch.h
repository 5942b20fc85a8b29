// Picking a micro-kernel's tail tile at run time: one template instance per
// number of vectors, so that a partial tile keeps its accumulators in
// registers. In an anonymous namespace for the reason kernel_band.h gives.
#pragma once

#include <cstdint>

#include "inline.h"

namespace fire_kernels {
namespace {

// Runs F<n>::run(args...) for run-time 1 <= n <= MAX.
template <int MAX, template <int> class F, typename... Args>
FK_INLINE void dispatch_vectors(int64_t n, const Args&... args) {
  static_assert(MAX >= 1, "a tile holds at least one vector");
  if constexpr (MAX > 1) {
    if (n == MAX) return F<MAX>::run(args...);
    dispatch_vectors<MAX - 1, F>(n, args...);
  } else {
    F<1>::run(args...);
  }
}

}  // namespace
}  // namespace fire_kernels
