// Picking a micro-kernel's tail tile at run time: one template instance per
// number of vectors, so that a partial tile keeps its accumulators in
// registers. In an anonymous namespace for the reason kernel_band.h gives.
#pragma once

#include <cstdint>

#include "inline.h"

namespace fire_kernels {
namespace {

// Runs F<n>::run(args...) for run-time 1 <= n <= MAX (MAX <= 4).
template <int MAX, template <int> class F, typename... Args>
FK_INLINE void dispatch_vectors(int64_t n, const Args&... args) {
  static_assert(MAX >= 1 && MAX <= 4, "extend dispatch_vectors");
  if constexpr (MAX >= 4)
    if (n == 4) return F<4>::run(args...);
  if constexpr (MAX >= 3)
    if (n == 3) return F<3>::run(args...);
  if constexpr (MAX >= 2)
    if (n == 2) return F<2>::run(args...);
  F<1>::run(args...);
}

}  // namespace
}  // namespace fire_kernels
