// The int8 kernels of one path (int8_kernel.h), instantiated by
// int8_kernel_<path>.cpp under that path's `#pragma GCC target`.
#pragma once

#include "int8_fire_run.h"
#include "int8_head_run.h"
#include "int8_sparse_run.h"
#include "int8_stem_run.h"

namespace fire_kernels {
namespace {

// The Int8Kernel of quantized vector type Q.
template <class Q>
constexpr Int8Kernel int8_kernel(bool small_pairs = false) {
  return {&Int8FireRun<Q>::run, &Int8SparseRun<Q>::fire, &Int8HeadRun<Q>::run,
          &Int8SparseRun<Q>::head, &Int8StemRun<Q>::run, small_pairs};
}

}  // namespace
}  // namespace fire_kernels
