// The fused Fire kernels (dense and sparse): the data that the operators
// (fire_ops.cpp), the scheduler (fire_scheduler.cpp) and the per-ISA kernels
// (fire_kernel_<isa>.cpp) share, and the tiling constants they agree on.
//
// This header holds only plain data, constants and declarations. Every
// kernel translation unit includes it *before* its `#pragma GCC target`, so
// that its few inline functions are compiled for the baseline ISA and no
// AVX-512 instantiation of them can leak into code that runs on any CPU.
#pragma once

#include <cstdint>

namespace fire_kernels {

// n rounded up to a multiple of m.
constexpr int64_t round_up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

// Packed channel counts are multiples of this (the widest vector, 16 floats),
// so every vector load of packed weights or padded biases stays inside them.
constexpr int64_t kChannelPad = 16;
// Upper bounds on the micro-kernel tiles of every ISA, so that one scratch
// layout serves them all.
constexpr int kMaxTilePixels = 64;
// Rows in front of a squeeze buffer: the shifted stores reach one before.
constexpr int64_t kScratchGuard = 16;
// Threads split a shared squeeze at multiples of this many pixels, a multiple
// of the dense kernels' tile widths (16, 48), so that only the last tile is
// partial.
constexpr int64_t kSharedSplitAlign = 48;

// Sparse weights (see pack_sparse.cpp). Output channels go in groups of
// `block` (1, or 4 sharing their nonzero positions); each group lists its
// entries: an input position and `block` weights (zero-padded).
//   squeeze: groups over the S squeeze channels; an entry's position is an
//     input channel c.
//   expands: groups over the E1 + E3 channels of the concat, the 1x1 expand
//     being the centre tap of a 3x3; an entry's position is its offset in the
//     NCHW squeeze buffers, (dx*S + c)*lp + (dy-1)*W for tap (dy, dx), valid
//     for one image width W and lp = squeeze_row_pitch(max_band_pixels(S, W), W).
struct FireSparse {
  int64_t block;
  const int32_t* s_rows;   // [groups + 1]: group g's entries are [s_rows[g], s_rows[g+1])
  const int32_t* s_chan;   // [entries]
  const float* s_values;   // [entries][block]
  const int32_t* e_rows;   // [groups + 1]
  const int32_t* e_offset; // [entries]
  const float* e_values;   // [entries][block]
};

// Max pooling fused into the squeeze's read of the input (SqueezeNet's
// MaxPool2d -> Fire): the Fire's input pixel (y, x) is the max over the raw
// input's rows [y*stride, min(y*stride + kernel, in_h)) and the same columns
// (no padding; ceil-mode windows are clipped at the edge). kernel == 1: none.
struct FirePool {
  int64_t kernel, stride;
  int64_t in_h, in_w;  // the raw input's size
};

// One Fire forward, float32. Strides are in elements. Bias pointers may be
// null (bias=False convolutions).
struct FireArgs {
  int64_t N, C, H, W;  // the Fire's input (after pooling)
  int64_t S, E1, E3;   // squeeze, expand 1x1 and expand 3x3 channels

  // The raw input (before pooling, if any).
  const float* x;
  int64_t x_sn, x_sc, x_sh, x_sw;
  // Pixel q = y*W + x sits at x + q*x_ps (x_sh == W*x_sw, or a single row or
  // column); never with pooling.
  bool x_uniform;
  int64_t x_ps;
  FirePool pool;

  // The dense kernels' weights, packed for the family the input's memory
  // format selects (pack_weights.h), in blocks of `w_block` output channels:
  // NCHW [S/B][C][B], [E1/B][S][B], [E3/B][9][S][B] with B = Vec::CO of the
  // kernel's ISA; channels last [Sp/16][C][16], [E1p/16][S][16],
  // [E3p/16][S][9][16]; tap t = 3*dy + dx. Zero-padded to whole blocks.
  const float* w_s;
  const float* w_e1;
  const float* w_e3;
  int64_t w_block;
  const float* b_s;   // [S] or null
  const float* b_e1;  // [E1] or null
  const float* b_e3;  // [E3] or null

  // Channels-last kernels: the output is [N][H][W][E1 + E3]. Sp: S rounded up
  // to kChannelPad, the channels of a squeeze buffer's pixel.
  bool channels_last;
  int64_t Sp;

  // Non-null: the sparse kernels, which read only these (not w_*);
  // they keep NCHW squeeze buffers whatever the memory format.
  const FireSparse* sparse;

  // NCHW: [N][E1 + E3][H][W] contiguous; channels last: [N][H][W][E1 + E3].
  float* out;

  // Work decomposition (fire_scheduler.cpp): each image's H*W pixels, taken in
  // row-major order, are cut into `bands_per_image` bands (band_start) of at
  // most `band` pixels, each a whole number of `band_unit` pixels (the
  // micro-kernels' pixel tile) but the image's last.
  int64_t band;
  int64_t bands_per_image;
  int64_t band_unit;
};

// First flat pixel of band b (0 <= b <= bands_per_image) of an image: the
// image's tiles of band_unit pixels dealt out as evenly as possible, so that
// no band but the last ends in a partial tile (a band of 183 pixels cost 12
// tiles of 16; the 729 pixels of a 27x27 image fit in 46, not 4 x 12).
// band_start(a, bands_per_image) == H*W; bands can be empty.
inline int64_t band_start(const FireArgs& a, int64_t b) {
  const int64_t HW = a.H * a.W;
  const int64_t units = (HW + a.band_unit - 1) / a.band_unit;
  const int64_t q = a.band_unit * (b * units / a.bands_per_image);
  return q < HW ? q : HW;
}

// Pixels per band: bounded so that a band's squeeze buffers stay in L2.
int64_t max_band_pixels(int64_t S, int64_t W);
// Pixels per channel row of a squeeze buffer for bands of up to `band` pixels
// of images W wide: the band, two halo rows and slack for tile overruns.
int64_t squeeze_row_pitch(int64_t band, int64_t W);

// Whether the kernels pool whole rows of the raw input at a time (PooledRows in
// kernel_band.h): with pooling, when the input's rows are contiguous (NCHW) and
// the NCHW or sparse kernels run.
inline bool pools_rows(const FireArgs& a) {
  return a.pool.kernel > 1 && a.x_sw == 1 && a.x_sc != 1 && !(a.channels_last && !a.sparse);
}

// Per-thread scratch of the kernel, in floats from a 64-byte aligned base.
struct FireScratch {
  int64_t lp;     // pixels (rows) per squeeze buffer
  int64_t bufs;   // 3 squeeze buffers: NCHW [3][S][lp], channels last [3][lp][Sp]
  int64_t tile;   // gathered input tile [C][kMaxTilePixels] (NCHW and sparse kernels)
  int64_t pooled; // with pooling: pooled input pixels [kMaxTilePixels][C]; or, where
                  // pools_rows, whole pooled rows [C][pooled_pitch] (pooled_rows of
                  // them) then one input row's window maxes (`rowmax`)
  int64_t pooled_pitch, pooled_rows, rowmax;
  int64_t stage;  // [kChannelPad][kMaxTilePixels]: sparse output on its way to channels last
  int64_t bias;   // biases padded with zeros: [Sp], [E1p], [E3p], then [E1 + E3] (concat)
  int64_t total;
};
FireScratch fire_scratch_layout(const FireArgs& a);

// What one call of the per-ISA kernel does.
//   kBands:   work items [begin, end), item = image * bands_per_image + band:
//             each its own squeeze (with halo) into per-thread scratch, then
//             both expands. The default: threads never share data.
//   kSqueeze, kPadding, kExpand: the three steps of one image `n` computed as
//             a single band whose squeeze buffers (`shared`) all threads use,
//             for when there are fewer bands than threads (one small image):
//             the squeeze of pixels [begin, end), then the padding zeros (one
//             thread), then the expands of output channels [begin, end) of the
//             concat.
enum class FirePhase { kBands, kSqueeze, kPadding, kExpand };
struct FireWork {
  FirePhase phase;
  int64_t begin, end;
  int64_t n;
  float* shared;  // 3 squeeze buffers laid out as fire_scratch_layout(a) with band = H*W
};

// The kernel of one ISA. run's `scratch`: fire_scratch_layout(a).total
// floats, 64-byte aligned, exclusive to the calling thread. nchw_block: the
// output channels of its NCHW micro-kernel tiles (Vec::CO), the w_block its
// NCHW weights must be packed in. nchw_pixels, nhwc_pixels: the pixels of a
// dense NCHW / channels-last tile, the band_unit for that kernel.
struct FireKernel {
  void (*run)(const FireArgs& a, const FireWork& work, float* scratch);
  int64_t nchw_block;
  int64_t nchw_pixels;
  int64_t nhwc_pixels;
};
extern const FireKernel kFireKernelAvx512;
extern const FireKernel kFireKernelAvx2;
extern const FireKernel kFireKernelPortable;

}  // namespace fire_kernels
