#pragma once

// Micro-kernel helpers must be inlined so the accumulators stay in registers.
#define FK_INLINE inline __attribute__((always_inline))
