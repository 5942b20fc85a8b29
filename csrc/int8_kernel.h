// The int8 kernels (issue 21), the fused Fire, the stem and the classifier head: the data
// the operators (int8_ops.cpp) and the per-path kernels
// (int8_kernel_<path>.cpp) share.
//
// Like fire_kernel.h, only plain data and declarations: every kernel
// translation unit includes it before its `#pragma GCC target`.
//
// Arithmetic (fire_kernels/int8_reference.py, matched bit for bit): uint8
// activations with zero point 0 (every Fire tensor follows a ReLU), int8
// weights, int32 accumulators that start at the int32 bias, and one
// requantization per output,
//   out = clamp(round_half_even(float32(acc) * M[o]), 0, 255)   (uint8).
// The squeeze's output is requantized to uint8 and feeds both expands; both
// expands requantize to the Fire's one output scale, so the concat is uint8.
// The stem (conv k x k stride s, ReLU, max pool) requantizes to uint8, then pools.
// The head (1x1 conv, ReLU, global average pool) requantizes each pixel's
// outputs to uint8 too, sums them exactly in int32 and scales the sums once:
//   out[o] = float32(sum_p q[p][o]) * float32(s_out / (H*W)).
#pragma once

#include <cstdint>

namespace fire_kernels {

// Packed int8 weights of a conv (O, C, k, k), every path's one layout, the
// one that AVX-512 VNNI's vpdpbusd reads: panels of 16 output channels; in a
// panel, tap t = k*dy + dx, then channel quads (4 input channels), then the
// 16 channels' 4 weights of that quad:
//   [Op/16][k*k][C4/4][16][4],  Op = round_up(O, 16), C4 = round_up(C, 4),
// zero-padded. Biases (int32) and multipliers (float32) are padded to Op with
// zeros, so that a padded channel computes 0.
constexpr int64_t kInt8Panel = 16;
constexpr int64_t kInt8Quad = 4;
// The channel quads of `channels` channels (the last one zero-padded).
constexpr int64_t int8_quads(int64_t channels) { return (channels + kInt8Quad - 1) / kInt8Quad; }

struct Int8Conv {
  const int8_t* w;
  const int32_t* bias;
  const float* multiplier;
};

// A pruned int8 conv (O, C, k, k) in the sparse kernels' format: per output
// channel o, entries rows[o] .. rows[o+1], each a channel quad and tap that
// holds a nonzero weight (entry = quad << 4 | tap, tap = k*dy + dx), with the
// quad's 4 weights as one int32 (byte i: input channel 4*quad + i), and the
// unpadded int32 bias and float32 multipliers (O each). vpdpbusd reads 4 input
// channels at once, so a quad is skipped only when all 4 of its weights are
// zero (at 90 % unstructured sparsity, about 2 of 3 quads). The kernels read
// each entry's byte offset into the quad-major activations (quad * plane +
// the tap's pixel offset), which the operator works out once a call.
struct Int8Sparse {
  const int32_t* rows;
  const int32_t* offsets;
  const int32_t* values;
  const int32_t* bias;
  const float* multiplier;
};
constexpr int kInt8TapBits = 4;

// The most pixels of a sparse tile, on any path (Q::W * Q::SNV).
constexpr int64_t kInt8SparseMaxTile = 128;

// One int8 Fire forward. The input is uint8 channels-last with its pixels
// C4 bytes apart (the operator pads channels to a quad), the output uint8
// channels-last [N][H][W][E1 + E3]. With pool_kernel > 1 the Fire's input is
// the max pool of x (in_h x in_w pixels): pixel (y, x) the max over x's rows
// [y*stride, min(y*stride + kernel, in_h)) and the same columns, as FirePool
// (fire_kernel.h); uint8 max commutes with the monotonic quantization.
struct Int8FireArgs {
  int64_t N, C4, H, W;
  int64_t S, E1, E3;
  int64_t Sp;  // S rounded up to kInt8Panel: a squeeze buffer's pixel pitch
  int64_t pool_kernel, pool_stride, in_h, in_w;
  const uint8_t* x;
  Int8Conv squeeze, expand1x1, expand3x3;
  uint8_t* out;
  // Work item = (image, band of `band_rows` image rows); items = N * bands.
  int64_t band_rows, bands;
  // The sparse Fire (Int8Kernel::fire_sparse): the expands as one 3x3 conv of
  // E1 + E3 concat channels (the 1x1's weights at the centre tap), the bytes
  // from one channel quad's plane of the band buffer to the next
  // (int8_sparse_plane_bytes) and the padded pixels of a plane's row
  // (int8_sparse_pitch).
  Int8Sparse expand;
  int64_t plane, pitch;
};

// Maximum pixels of a register tile, on any path (AMX's tiles: 16).
constexpr int64_t kInt8MaxTile = 16;

// Per-thread scratch: one band's squeeze buffer, its rows plus a halo row above
// and below, each W + 2 pixels wide (a zero column on each side), with slack for
// the tiles that overrun the last pixel; then a tile's input pixels
// [kInt8MaxTile][C4] where they are not read in place (pooled; AMX: a band's
// last, partial tile).
int64_t int8_band_bytes(const Int8FireArgs& a);
int64_t int8_scratch_bytes(const Int8FireArgs& a);
// The sparse Fire's band buffer is quad-major, what vectors along pixels read:
// S4/4 planes, plane q holding channels 4q .. 4q+3 of every padded pixel of
// the band (4 bytes a pixel), with slack for the tiles that overrun the last.
// Its rows are int8_sparse_pitch(W) pixels: W + 2 (a zero column each side)
// rounded up to kInt8SparseAlign, so that every row, and every tile, starts on
// a 64-byte line. Three copies of the planes, each shifted by a pixel, make
// every tap's load aligned (int8_sparse_run.h); unaligned, they cost the
// sparse kernels a third of their speed (an AMD Zen 4: the 90 %-pruned Fires
// 1.2x the dense ones, aligned 1.6x).
constexpr int64_t kInt8SparseAlign = 16;
constexpr int kInt8SparseCopies = 3;
int64_t int8_sparse_pitch(int64_t W);
int64_t int8_sparse_plane_bytes(int64_t band_rows, int64_t W);

// Whether every pair of weights that AVX2's vpmaddubsw adds into int16
// (channels 0-1 and 2-3 of each quad: adjacent bytes of the packed layout)
// has |w0| + |w1| <= 128, so that no uint8 input can saturate it.
constexpr int kMaxPairMagnitude = 128;

// The classifier head of an int8 network: conv 1x1 (packed, C4 input channels),
// ReLU and global average pool of uint8 channels-last images [N][HW][C4], into
// float32 out[N][O]. Work item = (image, block of kInt8HeadBlock outputs).
constexpr int64_t kInt8HeadBlock = 64;
struct Int8HeadArgs {
  int64_t N, C4, HW, O;
  const uint8_t* x;
  Int8Conv conv;
  float scale;  // float32(s_out / HW)
  float* out;
  int64_t blocks;  // per image: ceil(O / kInt8HeadBlock)
  // The sparse head (Int8Kernel::head_sparse) reads x quad-major instead:
  // [N][C4/4][plane / 4][4], `plane` bytes from one quad's plane to the next
  // (HW rounded up to kInt8SparseMaxTile pixels), with the conv as `sparse`.
  Int8Sparse sparse;
  int64_t plane;
};

// A network's first layer in int8: conv k x k, stride s, no padding, from
// uint8 channels-last images [N][in_h][in_w][C4] (their zero point folded
// into the bias by the operator), ReLU (the requantization's clamp), then a
// max pool (pool_kernel 1: none) into uint8 [N][out_h][out_w][O]. Work item =
// (image, band of `band_rows` output rows): its conv rows go to per-thread
// scratch, [rows][conv_w][Op] bytes (int8_stem_scratch_bytes), then pooled.
// The image is uint8 channels-last with its pixels C bytes apart (unpadded), so
// that a window's row, k pixels, is k*C contiguous bytes: K of them (k*C
// rounded up to a quad) are one reduction, the bytes past the window weighted
// zero (SqueezeNet 1.0's 7x7 on RGB: 6 quads a row where a quad a tap took 7).
// The image has kInt8Quad bytes of slack after its last pixel.
struct Int8StemArgs {
  int64_t N, C, K, in_h, in_w;
  int64_t k, stride, conv_h, conv_w;
  int64_t O, Op;
  int64_t pool_kernel, pool_stride, out_h, out_w;
  const uint8_t* x;
  Int8Conv conv;  // packed by window row: [Op/16][k][K/4][16][4] (pack_int8_stem)
  uint8_t* out;
  int64_t band_rows, bands;
};
// The conv rows a band of `band_rows` output rows pools from.
inline int64_t int8_stem_conv_rows(const Int8StemArgs& a, int64_t band_rows) {
  return (band_rows - 1) * a.pool_stride + a.pool_kernel;
}
constexpr int64_t kInt8MaxStemTaps = 121;  // 11 x 11

// One path's kernels. fire, fire_sparse and stem do work items [begin, end)
// with `scratch` (int8_scratch_bytes(a), (int8_stem_conv_rows * conv_w +
// kInt8MaxTile) * Op bytes) exclusive to the calling thread; head and
// head_sparse their work items [begin, end).
// small_pairs: they are exact only for weights whose pairs are within
// kMaxPairMagnitude (kInt8Avx2Wide runs the others).
struct Int8Kernel {
  void (*fire)(const Int8FireArgs& a, int64_t begin, int64_t end, uint8_t* scratch);
  void (*fire_sparse)(const Int8FireArgs& a, int64_t begin, int64_t end, uint8_t* scratch);
  void (*head)(const Int8HeadArgs& a, int64_t begin, int64_t end);
  void (*head_sparse)(const Int8HeadArgs& a, int64_t begin, int64_t end);
  void (*stem)(const Int8StemArgs& a, int64_t begin, int64_t end, uint8_t* scratch);
  bool small_pairs;
};
extern const Int8Kernel kInt8Avx512Amx;
extern const Int8Kernel kInt8Avx512Vnni;
extern const Int8Kernel kInt8AvxVnni;
extern const Int8Kernel kInt8Avx2;
extern const Int8Kernel kInt8Avx2Wide;
extern const Int8Kernel kInt8Portable;

}  // namespace fire_kernels
