// The kernels of a network's layers around its Fires (fire_kernel.h): the data
// the operators (network_ops.cpp), the scheduler and the per-ISA kernels share.
//
// Like fire_kernel.h, only plain data and declarations: every kernel
// translation unit includes it before its `#pragma GCC target`.
#pragma once

#include <cstdint>

#include "fire_kernel.h"

namespace fire_kernels {

// A convolution (k x k, stride, zero padding; groups 1) + bias + ReLU + max
// pool: a network's stem (SqueezeNet's conv1 -> ReLU -> MaxPool2d). Each input
// row is copied once, zero-padded and channels last, into a ring of k rows;
// each conv row is then computed once into another ring (its im2col row, k
// contiguous runs of k*C floats read in place from the input ring, times the
// packed weights, on the channels-last micro-kernel), and the pool reads it
// there, down the window's rows first, then along its columns: the conv's
// output never reaches memory.
//   conv[cy][cx][o] = relu(b[o] + sum_{c,dy,dx} w[o][c][dy][dx]
//                               * x[c][cy*stride - pad + dy][cx*stride - pad + dx])
//   out[oy][ox][o]  = max over the pool window (oy*ps .. , ox*ps ..) of conv
struct StemArgs {
  int64_t N, C, H, W;  // input
  const float* x;
  int64_t x_sn, x_sc, x_sh, x_sw;
  int64_t O, k, stride, pad;  // the convolution
  int64_t Hc, Wc;             // its output
  FirePool pool;              // of the conv's output (kernel 1: none)
  int64_t Ho, Wo;             // the output
  const float* w;  // packed panels [Op/16][K][16], K = k*k*C (pack_weights.h)
  const float* b;  // [O] or null
  float* out;      // [N][Ho][Wo][O]: channels last
};

// A 1x1 convolution + bias + ReLU + global average pool (SqueezeNet's
// classifier: conv10 -> ReLU -> AdaptiveAvgPool2d(1)). The conv's output never
// reaches memory:
//   out[n][o] = (1 / HW) * sum_p relu(b[o] + sum_c w[o][c] * x[n][c][p])
// Dense: tiles of pixels x output channels (the channels-last micro-kernel),
// summed over pixels in registers. Sparse: each image transposed to [C][pixel]
// in scratch, then per group of output channels the sparse micro-kernel over
// its nonzero input channels (FireSparse's squeeze part: s_rows, s_chan,
// s_values over groups of O).
struct HeadArgs {
  int64_t N, C, HW, O;
  const float* x;
  int64_t x_sn, x_sc, x_ps;  // pixel p of image n, channel c at x + n*x_sn + p*x_ps + c*x_sc
  const float* w;            // dense: packed panels [Op/16][C][16]
  const FireSparse* sparse;  // or, non-null: the sparse weights
  const float* b;            // [O] or null
  float* out;                // [N][O]
};

// Scratch of the stem kernel (floats, 64-byte aligned).
struct StemScratch {
  int64_t bias;   // [Op]
  int64_t input;   // k input rows, zero-padded, channels last: [k][W + 2*pad][C]
  int64_t rows;    // pool.kernel conv rows: [pool.kernel][Wc][Op]
  int64_t colmax;  // the max down one pool window's conv rows: [Wc][Op]
  int64_t total;
};
StemScratch stem_scratch_layout(const StemArgs& a);

// Scratch of the head kernel: the padded bias [Op], then (sparse) the image
// transposed to [C][head_pitch(HW)].
int64_t head_pitch(int64_t HW);
int64_t head_scratch_floats(const HeadArgs& a);

// The kernels of one ISA for the layers around the Fires.
//   stem: output rows [oy0, oy1) of image n.
//   head: output channels [o0, o1) of image n; o0 a multiple of kChannelPad.
struct NetworkKernel {
  void (*stem)(const StemArgs& a, int64_t n, int64_t oy0, int64_t oy1, float* scratch);
  void (*head)(const HeadArgs& a, int64_t n, int64_t o0, int64_t o1, float* scratch);
};
extern const NetworkKernel kNetworkKernelAvx512;
extern const NetworkKernel kNetworkKernelAvx2;
extern const NetworkKernel kNetworkKernelPortable;

}  // namespace fire_kernels
