// The CPU kernels of the int8 operators (int8_ops.h; schemas in fire_kernels/int8_ops.py):
// pack_int8 (a conv's int8 weights, int32 bias and float32 multipliers in the
// kernels' layout, int8_kernel.h), fire_int8 (the fused int8 Fire), head_int8
// (the classifier: conv 1x1, ReLU, global average pool) and quantize_uint8 (a
// float tensor to uint8, zero point 0).
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/sum.h>
#include <torch/library.h>

#include <emmintrin.h>

#include <algorithm>
#include <cstring>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <vector>

#include "fire_checks.h"
#include "fire_kernel.h"
#include "int8_kernel.h"
#include "int8_ops.h"
#include "int8_paths.h"
#include "thread_pool.h"

namespace fire_kernels {

namespace {

// The largest reduction a kernel accumulates: 255 * 127 * K products plus a
// bias within +-2**30 (int8_reference.quantize_bias) must fit int32.
constexpr int64_t kMaxReduction = 33000;

// Band buffers up to about this size (L2 on every CPU the kernels target).
constexpr int64_t kBandBytes = 512 * 1024;

void check_packed(const at::Tensor& w, const at::Tensor& bias, const at::Tensor& multiplier,
                  int64_t O, int64_t K4, int64_t taps, const char* who, const char* name) {
  const int64_t Op = round_up(O, kInt8Panel);
  TORCH_CHECK_VALUE(w.scalar_type() == at::kChar && w.dim() == 1 && w.numel() == Op * taps * K4 &&
                        w.is_contiguous(),
                    who, ": ", name, " expected packed int8 weights of ", Op * taps * K4,
                    " elements (pack_int8), got ", w.scalar_type(), " ", w.sizes());
  TORCH_CHECK_VALUE(bias.scalar_type() == at::kInt && bias.dim() == 1 && bias.numel() == Op &&
                        bias.is_contiguous(),
                    who, ": ", name, " expected a packed int32 bias of ", Op,
                    " elements, got ", bias.scalar_type(), " ", bias.sizes());
  TORCH_CHECK_VALUE(multiplier.scalar_type() == at::kFloat && multiplier.dim() == 1 &&
                        multiplier.numel() == Op && multiplier.is_contiguous(),
                    who, ": ", name, " expected packed float32 multipliers of ", Op,
                    " elements, got ", multiplier.scalar_type(), " ", multiplier.sizes());
  TORCH_CHECK_VALUE(w.device().is_cpu() && bias.device().is_cpu() && multiplier.device().is_cpu(),
                    who, ": ", name, " expected CPU tensors");
}

Int8Conv bind(const at::Tensor& w, const at::Tensor& bias, const at::Tensor& multiplier) {
  return {w.data_ptr<int8_t>(), bias.data_ptr<int32_t>(), multiplier.data_ptr<float>()};
}

// offsets[i] = the byte offset of entry i of a sparse K x K conv (K = 1 or 3)
// into quad-major activations: quad * plane + (dy - K/2) * row_bytes + (dx -
// K/2) * column_bytes, tap = K*dy + dx; nonzero return: some entry lies outside
// `quads` quads and K*K taps. Branch-free 32-bit arithmetic (t / 3 as t * 11 >>
// 5 for t < 16), so that it vectorizes: it runs every call.
template <int K>
int32_t entry_offsets(const int32_t* entries, int64_t n, int32_t quads, int32_t plane,
                      int32_t row_bytes, int32_t column_bytes, int32_t* offsets) {
  const int32_t tap_mask = (1 << kInt8TapBits) - 1;
  int32_t outside = 0;
  for (int64_t i = 0; i < n; ++i) {
    const int32_t e = entries[i], quad = e >> kInt8TapBits, tap = e & tap_mask;
    const int32_t dy = K == 3 ? (tap * 11) >> 5 : 0, dx = tap - K * dy;
    outside |= (e < 0) | (quad >= quads) | (tap >= K * K);
    // Unsigned, then wrapped back: an entry outside (rejected) must not overflow.
    offsets[i] = static_cast<int32_t>(static_cast<uint32_t>(quad) * static_cast<uint32_t>(plane) +
                                      static_cast<uint32_t>((dy - K / 2) * row_bytes +
                                                            (dx - K / 2) * column_bytes));
  }
  return outside;
}

// A sparse conv of O output channels over `quads` channel quads, K x K taps
// (Int8Sparse, int8_kernel.h; fire_kernels.int8_ops.pack_int8_sparse),
// checked, with its entries' byte offsets into activations whose quad planes
// lie `plane` bytes apart, rows `row_bytes` and a tap's columns `column_bytes`
// (entry_offsets) in `offsets`: every entry inside them, so that no read leaves
// the activations.
Int8Sparse sparse_conv(const at::Tensor& rows, const at::Tensor& entries,
                       const at::Tensor& values, const at::Tensor& bias,
                       const at::Tensor& multiplier, int64_t O, int64_t quads, int K,
                       int64_t plane, int64_t row_bytes, int64_t column_bytes,
                       std::vector<int32_t>& offsets, const char* who) {
  for (const at::Tensor* t : {&rows, &entries, &values, &bias})
    TORCH_CHECK_VALUE(t->scalar_type() == at::kInt && t->dim() == 1 && t->is_contiguous() &&
                          t->device().is_cpu(),
                      who, ": expected the sparse conv's rows, entries, values and bias as "
                      "contiguous 1-D int32 CPU tensors (pack_int8_sparse), got ",
                      t->scalar_type(), " ", t->sizes());
  TORCH_CHECK_VALUE(multiplier.scalar_type() == at::kFloat && multiplier.dim() == 1 &&
                        multiplier.is_contiguous() && multiplier.device().is_cpu(),
                    who, ": expected contiguous 1-D float32 CPU multipliers, got ",
                    multiplier.scalar_type(), " ", multiplier.sizes());
  TORCH_CHECK_VALUE(rows.numel() == O + 1 && bias.numel() == O && multiplier.numel() == O,
                    who, ": expected ", O + 1, " row starts, ", O, " biases and multipliers, got ",
                    rows.numel(), ", ", bias.numel(), " and ", multiplier.numel());
  const int32_t* r = rows.data_ptr<int32_t>();
  const int64_t n = entries.numel();
  TORCH_CHECK_VALUE(values.numel() == n && r[0] == 0 && r[O] == n, who,
                    ": the sparse conv's rows, entries and values do not agree (", n,
                    " entries, ", values.numel(), " values, rows from ", r[0], " to ", r[O], ")");
  bool ordered = true;
  for (int64_t o = 0; o < O; ++o) ordered &= r[o] <= r[o + 1];
  TORCH_CHECK_VALUE(ordered, who, ": the sparse conv's row starts decrease");
  TORCH_CHECK_VALUE((quads + 1) * plane + K / 2 * column_bytes <=
                        std::numeric_limits<int32_t>::max(),
                    who,
                    ": the activations are too large for the sparse kernel's 32-bit offsets");
  offsets.resize(n);
  const int32_t* e = entries.data_ptr<int32_t>();
  const auto q = static_cast<int32_t>(quads), p = static_cast<int32_t>(plane);
  const auto rb = static_cast<int32_t>(row_bytes);
  const auto cb = static_cast<int32_t>(column_bytes);
  const int32_t outside = K == 3 ? entry_offsets<3>(e, n, q, p, rb, cb, offsets.data())
                                 : entry_offsets<1>(e, n, q, p, rb, cb, offsets.data());
  TORCH_CHECK_VALUE(!outside, who, ": the sparse conv has entries outside its ", quads,
                    " channel quads and ", K * K, " taps");
  return {r, offsets.data(), values.data_ptr<int32_t>(), bias.data_ptr<int32_t>(),
          multiplier.data_ptr<float>()};
}

// x as the kernels read it: channels last, pixels C4 bytes apart (a zero-padded
// copy unless x already is so).
at::Tensor kernel_input(const at::Tensor& x, int64_t C4) {
  if (x.size(1) == C4 && x.is_contiguous(at::MemoryFormat::ChannelsLast)) return x;
  at::Tensor padded =
      at::zeros({x.size(0), x.size(2), x.size(3), C4}, x.options());  // NHWC
  padded.narrow(3, 0, x.size(1)).copy_(x.permute({0, 2, 3, 1}));
  return padded;
}

// Whether every adjacent pair of weights (packed int8 weights, or a sparse
// conv's int32 quads) is within kMaxPairMagnitude.
bool small_pairs(const at::Tensor& weights) {
  const int8_t* w = static_cast<const int8_t*>(weights.const_data_ptr());
  const int64_t n = weights.nbytes();  // a multiple of 4
  bool fits = true;
  for (int64_t i = 0; i < n; i += 2) {
    const int magnitude = (w[i] < 0 ? -w[i] : w[i]) + (w[i + 1] < 0 ? -w[i + 1] : w[i + 1]);
    fits &= magnitude <= kMaxPairMagnitude;
  }
  return fits;
}

// int8_reference.quantize_activation(x, scale, zp): x / scale, rounded half to
// even (cvtps2dq in the default rounding mode), plus zp, clamped to [0, 255],
// NaN to 0. The clamp is taken on the float, to [-zp, 255 - zp], before the
// conversion (which turns out-of-range values into INT_MIN); maxps returns its
// second operand, -zp, for a NaN. SSE2, which every x86-64 CPU has: GCC does
// not vectorize the plain loop (it cannot turn NaN-aware comparisons into
// maxps/minps).
struct Quantizer {
  __m128 scale, lo, hi;
  __m128i zp;
  Quantizer(float s, int z)
      : scale(_mm_set1_ps(s)),
        lo(_mm_set1_ps(static_cast<float>(-z))),
        hi(_mm_set1_ps(static_cast<float>(255 - z))),
        zp(_mm_set1_epi32(z)) {}
  // Four floats at p as int32 lanes in [0, 255].
  __m128i four(const float* p) const {
    const __m128 f = _mm_min_ps(_mm_max_ps(_mm_div_ps(_mm_loadu_ps(p), scale), lo), hi);
    return _mm_add_epi32(_mm_cvtps_epi32(f), zp);
  }
  uint8_t one(float v) const {
    const __m128 f = _mm_min_ss(_mm_max_ss(_mm_div_ss(_mm_set_ss(v), scale), lo), hi);
    return static_cast<uint8_t>(_mm_cvtss_si32(f) + _mm_cvtsi128_si32(zp));
  }
};

// dst[i] = the quantized src[i], i < n.
void quantize_range(const float* src, uint8_t* dst, int64_t n, const Quantizer& q) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m128i a = _mm_packs_epi32(q.four(src + i), q.four(src + i + 4));
    const __m128i b = _mm_packs_epi32(q.four(src + i + 8), q.four(src + i + 12));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), _mm_packus_epi16(a, b));
  }
  for (; i < n; ++i) dst[i] = q.one(src[i]);
}

// The stem's image layout (Int8StemArgs): uint8 [N][H][W][C] and kInt8Quad
// zero bytes of slack, flat; its first N*H*W*C bytes are the pixels.
at::Tensor stem_image(const at::Tensor& x) {
  const int64_t n = x.size(0) * x.size(1) * x.size(2) * x.size(3);
  at::Tensor out = at::empty({n + kInt8Quad}, x.options().dtype(at::kByte));
  out.narrow(0, n, kInt8Quad).zero_();
  return out;
}

// The float image x (N, C, H, W), any strides, quantized straight into the
// stem's layout (stem_image). An image of up to 4 channels with unit-stride
// rows goes four pixels a step, a pixel's channels interleaved into a 32-bit
// lane whose 4 bytes are stored C bytes after the last pixel's (the last of a
// row one at a time: rows are threads' own).
at::Tensor quantize_image(const at::Tensor& x, const Quantizer& q) {
  const int64_t C = x.size(1), H = x.size(2), W = x.size(3);
  at::Tensor out = stem_image(x);
  const float* src = x.data_ptr<float>();
  uint8_t* dst = out.data_ptr<uint8_t>();
  const int64_t sn = x.stride(0), sc = x.stride(1), sh = x.stride(2), sw = x.stride(3);
  const bool fours = C <= kInt8Quad && sw == 1;
  parallel_for(0, x.size(0) * H, 1, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const float* in = src + row / H * sn + row % H * sh;
      uint8_t* o = dst + row * W * C;
      int64_t px = 0;
      for (; fours && (px + 3) * C + kInt8Quad <= W * C; px += 4) {
        __m128i pixels = _mm_setzero_si128();
        for (int64_t c = 0; c < C; ++c)
          pixels = _mm_or_si128(pixels, _mm_slli_epi32(q.four(in + c * sc + px), 8 * c));
        alignas(16) uint8_t lanes[16];
        _mm_store_si128(reinterpret_cast<__m128i*>(lanes), pixels);
        for (int i = 0; i < 4; ++i) memcpy(o + (px + i) * C, lanes + i * kInt8Quad, kInt8Quad);
      }
      for (; px < W; ++px)
        for (int64_t c = 0; c < C; ++c) o[px * C + c] = q.one(in[c * sc + px * sw]);
    }
  });
  return out;
}

// The current path's kernels, or the exact AVX2 ones where they would saturate
// on these packed weights.
const Int8Kernel& kernel_for(std::initializer_list<const at::Tensor*> weights) {
  const Int8Kernel& chosen = current_int8_kernel();
  if (!chosen.small_pairs) return chosen;
  for (const at::Tensor* w : weights)
    if (!small_pairs(*w)) return kInt8Avx2Wide;
  return chosen;
}

// Work items of N images of `rows` rows: bands of *band_rows rows, *bands an
// image. At least `min_bands` (what keeps a band's scratch in L2), and as many
// items as it takes for every thread to get the same number (a third band on
// two threads would leave one idle half the time), within one row a band.
void split_rows(int64_t N, int64_t rows, int64_t min_bands, int64_t* band_rows, int64_t* bands) {
  const int64_t threads = at::get_num_threads();
  int64_t b = std::max(min_bands, N >= threads ? 1 : (threads + N - 1) / N);
  while ((N * b) % threads != 0 && b < rows) ++b;
  b = std::min(b, std::max<int64_t>(rows, 1));
  *band_rows = (rows + b - 1) / b;
  *bands = (rows + *band_rows - 1) / *band_rows;
}

// This thread's scratch of at least `bytes` bytes, kept between calls.
uint8_t* thread_scratch(int64_t bytes) {
  thread_local std::vector<uint8_t> scratch;
  if (static_cast<int64_t>(scratch.size()) < bytes) scratch.resize(bytes);
  return scratch.data();
}

}  // namespace

int64_t int8_band_bytes(const Int8FireArgs& a) {
  // Sparse: quad-major, its copies and a line's slack to align them.
  if (a.plane > 0) return kInt8SparseCopies * int8_quads(a.S) * a.plane + 64;
  return ((a.band_rows + 2) * (a.W + 2) + kInt8MaxTile) * a.Sp;
}

int64_t int8_sparse_pitch(int64_t W) { return round_up(W + 2, kInt8SparseAlign); }

int64_t int8_sparse_plane_bytes(int64_t band_rows, int64_t W) {
  return ((band_rows + 2) * int8_sparse_pitch(W) + kInt8SparseMaxTile) * kInt8Quad;
}

int64_t int8_scratch_bytes(const Int8FireArgs& a) {
  return int8_band_bytes(a) + kInt8MaxTile * a.C4;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> pack_int8_cpu(const at::Tensor& weight,
                                                             const at::Tensor& bias,
                                                             const at::Tensor& multiplier) {
  TORCH_CHECK_VALUE(weight.dim() == 4 && weight.size(2) == weight.size(3) &&
                        weight.size(2) >= 1 && weight.size(2) * weight.size(3) <= kInt8MaxStemTaps,
                    "pack_int8: expected a square conv weight (O, C, k, k), k <= 11, got ",
                    weight.sizes());
  TORCH_CHECK_TYPE(weight.scalar_type() == at::kChar, "pack_int8: expected int8 weights, got ",
                   weight.scalar_type());
  const int64_t O = weight.size(0), C = weight.size(1), taps = weight.size(2) * weight.size(3);
  TORCH_CHECK_VALUE(bias.scalar_type() == at::kInt && bias.dim() == 1 && bias.numel() == O,
                    "pack_int8: expected an int32 bias of ", O, " elements, got ",
                    bias.scalar_type(), " ", bias.sizes());
  TORCH_CHECK_VALUE(multiplier.scalar_type() == at::kFloat && multiplier.dim() == 1 &&
                        multiplier.numel() == O,
                    "pack_int8: expected float32 multipliers of ", O, " elements, got ",
                    multiplier.scalar_type(), " ", multiplier.sizes());
  const int64_t Op = round_up(O, kInt8Panel), C4 = round_up(C, kInt8Quad);
  at::Tensor packed = at::zeros({Op * taps * C4}, weight.options());
  // [Op/16][taps][C4/4][16][4] from (O, C, k, k): element (o, c, t) lands at
  // (((o/16*taps + t)*C4/4 + c/4)*16 + o%16)*4 + c%4.
  const at::Tensor w = weight.contiguous();
  const int8_t* src = w.data_ptr<int8_t>();
  int8_t* dst = packed.data_ptr<int8_t>();
  for (int64_t o = 0; o < O; ++o)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t t = 0; t < taps; ++t)
        dst[(((o / kInt8Panel * taps + t) * (C4 / kInt8Quad) + c / kInt8Quad) * kInt8Panel +
             o % kInt8Panel) * kInt8Quad + c % kInt8Quad] = src[(o * C + c) * taps + t];
  at::Tensor b = at::zeros({Op}, bias.options());
  b.narrow(0, 0, O).copy_(bias);
  at::Tensor m = at::zeros({Op}, multiplier.options());
  m.narrow(0, 0, O).copy_(multiplier);
  return {packed, b, m};
}

namespace {

// What the dense and the sparse Fire share: the input's and the squeeze's
// checks, the output, and the arguments but the expands'.
void check_uint8_input(const at::Tensor& x, const char* who) {
  TORCH_CHECK_TYPE(x.scalar_type() == at::kByte, who, ": expected a uint8 input, got ",
                   x.scalar_type());
  TORCH_CHECK_VALUE(x.dim() == 4, who, ": expected a 4-D input (N, C, H, W), got ", x.dim(),
                    "-D");
  TORCH_CHECK_VALUE(x.device().is_cpu(), who, ": expected a CPU input");
}

struct FireCall {
  at::Tensor out, xk;
  Int8FireArgs a{};
};

FireCall fire_call(const at::Tensor& x, const at::Tensor& squeeze, const at::Tensor& squeeze_bias,
                   const at::Tensor& squeeze_multiplier, int64_t S, int64_t E1, int64_t E3,
                   int64_t pool_kernel, int64_t pool_stride, bool pool_ceil_mode,
                   const char* who) {
  check_uint8_input(x, who);
  const PoolSpec pool{pool_kernel, pool_stride, pool_ceil_mode};
  check_pool_args(x, pool, who);
  const int64_t N = x.size(0), C = x.size(1);
  const int64_t H = pooled_size(x.size(2), pool), W = pooled_size(x.size(3), pool);
  TORCH_CHECK_VALUE(C >= 1 && S >= 1 && E1 >= 1 && E3 >= 1, who,
                    ": expected positive channel counts, got C=", C, " S=", S, " E1=", E1,
                    " E3=", E3);
  const int64_t C4 = round_up(C, kInt8Quad), S4 = round_up(S, kInt8Quad);
  TORCH_CHECK_VALUE(C4 <= kMaxReduction && 9 * S4 <= kMaxReduction, who,
                    ": reductions of more than ", kMaxReduction,
                    " products could overflow the int32 accumulators (C=", C, ", S=", S, ")");
  check_packed(squeeze, squeeze_bias, squeeze_multiplier, S, C4, 1, who, "squeeze");
  FireCall f;
  f.out = at::empty({N, E1 + E3, H, W}, x.options(), at::MemoryFormat::ChannelsLast);
  if (f.out.numel() == 0) return f;
  f.xk = kernel_input(x, C4);
  Int8FireArgs& a = f.a;
  a.N = N, a.C4 = C4, a.H = H, a.W = W, a.S = S, a.E1 = E1, a.E3 = E3;
  a.Sp = round_up(S, kInt8Panel);
  a.pool_kernel = pool_kernel, a.pool_stride = pool_stride;
  a.in_h = x.size(2), a.in_w = x.size(3);
  a.x = f.xk.data_ptr<uint8_t>();
  a.squeeze = bind(squeeze, squeeze_bias, squeeze_multiplier);
  a.out = f.out.data_ptr<uint8_t>();
  split_rows(N, H, (H + 2) * (W + 2) * a.Sp / kBandBytes + 1, &a.band_rows, &a.bands);
  return f;
}

// Runs the Fire kernel `fire` over f's work items.
void run_fire(const FireCall& f,
              void (*fire)(const Int8FireArgs&, int64_t, int64_t, uint8_t*)) {
  const int64_t scratch_bytes = int8_scratch_bytes(f.a);
  parallel_for(0, f.a.N * f.a.bands, 1, [&](int64_t begin, int64_t end) {
    fire(f.a, begin, end, thread_scratch(scratch_bytes));
  });
}

}  // namespace

at::Tensor fire_int8_cpu(const at::Tensor& x, const at::Tensor& squeeze,
                         const at::Tensor& squeeze_bias, const at::Tensor& squeeze_multiplier,
                         const at::Tensor& expand1x1, const at::Tensor& expand1x1_bias,
                         const at::Tensor& expand1x1_multiplier, const at::Tensor& expand3x3,
                         const at::Tensor& expand3x3_bias,
                         const at::Tensor& expand3x3_multiplier, int64_t squeeze_channels,
                         int64_t expand1x1_channels, int64_t expand3x3_channels,
                         int64_t pool_kernel, int64_t pool_stride, bool pool_ceil_mode) {
  const int64_t S = squeeze_channels, E1 = expand1x1_channels, E3 = expand3x3_channels;
  FireCall f = fire_call(x, squeeze, squeeze_bias, squeeze_multiplier, S, E1, E3, pool_kernel,
                         pool_stride, pool_ceil_mode, "fire_int8");
  const int64_t S4 = round_up(S, kInt8Quad);
  check_packed(expand1x1, expand1x1_bias, expand1x1_multiplier, E1, S4, 1, "fire_int8",
               "expand1x1");
  check_packed(expand3x3, expand3x3_bias, expand3x3_multiplier, E3, S4, 9, "fire_int8",
               "expand3x3");
  if (f.out.numel() == 0) return f.out;
  f.a.expand1x1 = bind(expand1x1, expand1x1_bias, expand1x1_multiplier);
  f.a.expand3x3 = bind(expand3x3, expand3x3_bias, expand3x3_multiplier);
  run_fire(f, kernel_for({&squeeze, &expand1x1, &expand3x3}).fire);
  return f.out;
}

at::Tensor fire_int8_sparse_cpu(const at::Tensor& x, const at::Tensor& squeeze,
                                const at::Tensor& squeeze_bias,
                                const at::Tensor& squeeze_multiplier,
                                const at::Tensor& expand_rows, const at::Tensor& expand_entries,
                                const at::Tensor& expand_values, const at::Tensor& expand_bias,
                                const at::Tensor& expand_multiplier, int64_t squeeze_channels,
                                int64_t expand1x1_channels, int64_t expand3x3_channels,
                                int64_t pool_kernel, int64_t pool_stride, bool pool_ceil_mode) {
  const int64_t S = squeeze_channels, E1 = expand1x1_channels, E3 = expand3x3_channels;
  FireCall f = fire_call(x, squeeze, squeeze_bias, squeeze_multiplier, S, E1, E3, pool_kernel,
                         pool_stride, pool_ceil_mode, "fire_int8_sparse");
  // The expands read the band's quad-major squeeze, rows of `pitch` padded
  // pixels; a tap's column is the next copy of the band (int8_sparse_run.h).
  f.a.plane = int8_sparse_plane_bytes(f.a.band_rows, f.a.W);
  f.a.pitch = int8_sparse_pitch(f.a.W);
  const int64_t quads = int8_quads(S);
  // Kept between calls: a network runs each sparse layer once an image.
  thread_local std::vector<int32_t> offsets;
  f.a.expand = sparse_conv(expand_rows, expand_entries, expand_values, expand_bias,
                           expand_multiplier, E1 + E3, quads, 3, f.a.plane,
                           f.a.pitch * kInt8Quad, quads * f.a.plane, offsets,
                           "fire_int8_sparse");
  if (f.out.numel() == 0) return f.out;
  run_fire(f, kernel_for({&squeeze, &expand_values}).fire_sparse);
  return f.out;
}

namespace {

// What the dense and the sparse head share: the input's checks, the output and
// the arguments but the conv's. out is empty (N = 0): nothing to run.
struct HeadCall {
  at::Tensor out, xk;
  Int8HeadArgs a{};
};

HeadCall head_call(const at::Tensor& x, int64_t out_channels, double output_scale,
                   const char* who) {
  check_uint8_input(x, who);
  const int64_t N = x.size(0), C = x.size(1), HW = x.size(2) * x.size(3), O = out_channels;
  TORCH_CHECK_VALUE(C >= 1 && O >= 1, who, ": expected positive channel counts, got C=", C,
                    " O=", O);
  TORCH_CHECK_VALUE(HW >= 1, who, ": expected a non-empty image, got ", x.size(2), "x",
                    x.size(3));
  TORCH_CHECK_VALUE(output_scale > 0.0, who, ": expected a positive output scale, got ",
                    output_scale);
  const int64_t C4 = round_up(C, kInt8Quad);
  TORCH_CHECK_VALUE(C4 <= kMaxReduction && 255 * HW < (int64_t{1} << 24), who,
                    ": too many input channels (", C, ") or pixels (", HW,
                    ") for exact int32 accumulators and float32 sums");
  HeadCall h;
  h.out = at::empty({N, O, 1, 1}, x.options().dtype(at::kFloat));
  Int8HeadArgs& a = h.a;
  a.N = N, a.C4 = C4, a.HW = HW, a.O = O;
  a.scale = static_cast<float>(output_scale / static_cast<double>(HW));
  a.out = h.out.data_ptr<float>();
  a.blocks = (O + kInt8HeadBlock - 1) / kInt8HeadBlock;
  if (N > 0) h.xk = kernel_input(x, C4);
  return h;
}

// x (the kernels' channels-last input, N images of HW pixels, C4 bytes each)
// quad-major, as the sparse head reads it: [N][C4/4][plane / 4][4], the
// pixels past HW zero.
at::Tensor quad_major(const at::Tensor& xk, int64_t N, int64_t HW, int64_t C4, int64_t plane) {
  const int64_t quads = C4 / kInt8Quad, pitch = plane / kInt8Quad;
  at::Tensor out = at::empty({N * quads * plane}, xk.options());
  const uint32_t* src = reinterpret_cast<const uint32_t*>(xk.const_data_ptr<uint8_t>());
  uint32_t* dst = reinterpret_cast<uint32_t*>(out.data_ptr<uint8_t>());
  parallel_for(0, N * quads, 1, [&](int64_t begin, int64_t end) {
    for (int64_t item = begin; item < end; ++item) {
      const int64_t n = item / quads, q = item % quads;
      const uint32_t* in = src + n * HW * quads + q;
      uint32_t* o = dst + item * pitch;
      for (int64_t p = 0; p < HW; ++p) o[p] = in[p * quads];
      std::fill(o + HW, o + pitch, 0u);  // only the padding: every other byte is written
    }
  });
  return out;
}

}  // namespace

at::Tensor head_int8_cpu(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                         const at::Tensor& multiplier, int64_t out_channels,
                         double output_scale) {
  HeadCall h = head_call(x, out_channels, output_scale, "head_int8");
  check_packed(weight, bias, multiplier, out_channels, h.a.C4, 1, "head_int8", "weight");
  if (h.a.N == 0) return h.out;
  h.a.x = h.xk.data_ptr<uint8_t>();
  h.a.conv = bind(weight, bias, multiplier);
  const Int8Kernel& kernel = kernel_for({&weight});
  parallel_for(0, h.a.N * h.a.blocks, 1,
                   [&](int64_t begin, int64_t end) { kernel.head(h.a, begin, end); });
  return h.out;
}

at::Tensor head_int8_sparse_cpu(const at::Tensor& x, const at::Tensor& rows,
                                const at::Tensor& entries, const at::Tensor& values,
                                const at::Tensor& bias, const at::Tensor& multiplier,
                                int64_t out_channels, double output_scale) {
  HeadCall h = head_call(x, out_channels, output_scale, "head_int8_sparse");
  Int8HeadArgs& a = h.a;
  a.plane = round_up(a.HW, kInt8SparseMaxTile) * kInt8Quad;
  thread_local std::vector<int32_t> offsets;  // kept between calls, as fire_int8_sparse's
  a.sparse = sparse_conv(rows, entries, values, bias, multiplier, out_channels, a.C4 / kInt8Quad,
                         1, a.plane, 0, 0, offsets, "head_int8_sparse");
  if (a.N == 0) return h.out;
  const at::Tensor xq = quad_major(h.xk, a.N, a.HW, a.C4, a.plane);
  a.x = xq.data_ptr<uint8_t>();
  const Int8Kernel& kernel = kernel_for({&values});
  parallel_for(0, a.N * a.blocks, 1,
                   [&](int64_t begin, int64_t end) { kernel.head_sparse(a, begin, end); });
  return h.out;
}

at::Tensor stem_int8_cpu(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                         const at::Tensor& multiplier, int64_t out_channels, int64_t kernel,
                         int64_t stride, double input_scale, int64_t input_zero_point,
                         int64_t pool_kernel, int64_t pool_stride, bool pool_ceil_mode) {
  TORCH_CHECK_TYPE(x.scalar_type() == at::kByte || x.scalar_type() == at::kFloat,
                   "stem_int8: expected a float32 or uint8 input, got ", x.scalar_type());
  TORCH_CHECK_VALUE(input_scale > 0.0 && input_scale < std::numeric_limits<float>::infinity(),
                    "stem_int8: expected a positive finite input scale, got ", input_scale);
  TORCH_CHECK_VALUE(x.dim() == 4, "stem_int8: expected a 4-D input (N, C, H, W), got ", x.dim(),
                    "-D");
  TORCH_CHECK_VALUE(x.device().is_cpu(), "stem_int8: expected a CPU input");
  const int64_t N = x.size(0), C = x.size(1), O = out_channels, k = kernel;
  TORCH_CHECK_VALUE(C >= 1 && O >= 1, "stem_int8: expected positive channel counts, got C=", C,
                    " O=", O);
  TORCH_CHECK_VALUE(k >= 1 && k * k <= kInt8MaxStemTaps && stride >= 1,
                    "stem_int8: expected a kernel of 1 to 11 and a positive stride, got ", k,
                    " and ", stride);
  TORCH_CHECK_VALUE(x.size(2) >= k && x.size(3) >= k, "stem_int8: the ", k, "x", k,
                    " kernel does not fit the ", x.size(2), "x", x.size(3), " input");
  TORCH_CHECK_VALUE(input_zero_point >= 0 && input_zero_point <= 255,
                    "stem_int8: expected a zero point in [0, 255], got ", input_zero_point);
  const int64_t K = round_up(k * C, kInt8Quad), Op = round_up(O, kInt8Panel);
  TORCH_CHECK_VALUE(k * K <= kMaxReduction, "stem_int8: reductions of more than ",
                    kMaxReduction, " products could overflow the int32 accumulators");
  check_packed(weight, bias, multiplier, O, K, k, "stem_int8", "weight");
  Int8StemArgs a{};
  a.N = N, a.C = C, a.K = K, a.in_h = x.size(2), a.in_w = x.size(3);
  a.k = k, a.stride = stride;
  a.conv_h = (a.in_h - k) / stride + 1, a.conv_w = (a.in_w - k) / stride + 1;
  a.O = O, a.Op = Op;
  const PoolSpec pool{pool_kernel, pool_stride, pool_ceil_mode};
  TORCH_CHECK_VALUE(pool_kernel >= 1 && pool_stride >= 1 && pool_kernel <= a.conv_h &&
                        pool_kernel <= a.conv_w,
                    "stem_int8: the ", pool_kernel, "x", pool_kernel, " pool does not fit the ",
                    a.conv_h, "x", a.conv_w, " conv output");
  a.pool_kernel = pool_kernel, a.pool_stride = pool_stride;
  a.out_h = pooled_size(a.conv_h, pool), a.out_w = pooled_size(a.conv_w, pool);
  at::Tensor out = at::empty({N, O, a.out_h, a.out_w}, x.options().dtype(at::kByte),
                             at::MemoryFormat::ChannelsLast);
  if (N == 0) return out;
  at::Tensor xk;
  if (x.scalar_type() == at::kFloat) {
    xk = quantize_image(x, Quantizer(static_cast<float>(input_scale),
                                     static_cast<int>(input_zero_point)));
  } else {
    xk = stem_image(x);
    xk.narrow(0, 0, xk.numel() - kInt8Quad)
        .view({N, x.size(2), x.size(3), C})
        .copy_(x.permute({0, 2, 3, 1}));
  }
  // The input's zero point folded into the bias: sum_k w (x - zp) = sum_k w x - zp sum_k w,
  // exact without padding (the slack past a window's row weighs zero). Packed
  // weight i belongs to output channel i / (k * K * 16) * 16 + i / 4 % 16.
  std::vector<int32_t> folded(bias.data_ptr<int32_t>(), bias.data_ptr<int32_t>() + Op);
  const int8_t* w = weight.data_ptr<int8_t>();
  const int64_t panel_bytes = k * K * kInt8Panel;
  for (int64_t i = 0; i < weight.numel(); ++i)
    folded[i / panel_bytes * kInt8Panel + i / kInt8Quad % kInt8Panel] -=
        static_cast<int32_t>(input_zero_point) * w[i];
  a.x = xk.data_ptr<uint8_t>();
  a.conv = {w, folded.data(), multiplier.data_ptr<float>()};
  a.out = out.data_ptr<uint8_t>();
  const int64_t fit = std::max<int64_t>(
      1, (kBandBytes / (a.conv_w * Op) - pool_kernel) / pool_stride + 1);
  split_rows(N, a.out_h, (a.out_h + fit - 1) / fit, &a.band_rows, &a.bands);
  const Int8Kernel& kernels = kernel_for({&weight});
  const int64_t scratch_bytes = int8_stem_conv_rows(a, a.band_rows) * a.conv_w * Op;
  parallel_for(0, N * a.bands, 1, [&](int64_t begin, int64_t end) {
    kernels.stem(a, begin, end, thread_scratch(scratch_bytes));
  });
  return out;
}

at::Tensor quantize_uint8_cpu(const at::Tensor& x, double scale, int64_t zero_point) {
  TORCH_CHECK_TYPE(x.scalar_type() == at::kFloat, "quantize_uint8: expected a float32 input, got ",
                   x.scalar_type());
  TORCH_CHECK_VALUE(x.device().is_cpu(), "quantize_uint8: expected a CPU input");
  TORCH_CHECK_VALUE(scale > 0.0 && scale < std::numeric_limits<float>::infinity(),
                    "quantize_uint8: expected a positive finite scale, got ", scale);
  TORCH_CHECK_VALUE(zero_point >= 0 && zero_point <= 255,
                    "quantize_uint8: expected a zero point in [0, 255], got ", zero_point);
  const at::MemoryFormat format = x.suggest_memory_format();
  const at::Tensor xc = x.contiguous(format);
  at::Tensor out = at::empty(x.sizes(), x.options().dtype(at::kByte), format);
  const float* src = xc.data_ptr<float>();
  uint8_t* dst = out.data_ptr<uint8_t>();
  const Quantizer q(static_cast<float>(scale), static_cast<int>(zero_point));
  parallel_for(0, xc.numel(), 1 << 16, [&](int64_t begin, int64_t end) {
    quantize_range(src + begin, dst + begin, end - begin, q);
  });
  return out;
}

TORCH_LIBRARY_IMPL(fire_kernels, CPU, m) {
  m.impl("pack_int8", &pack_int8_cpu);
  m.impl("fire_int8", &fire_int8_cpu);
  m.impl("fire_int8_sparse", &fire_int8_sparse_cpu);
  m.impl("head_int8", &head_int8_cpu);
  m.impl("head_int8_sparse", &head_int8_sparse_cpu);
  m.impl("stem_int8", &stem_int8_cpu);
  m.impl("quantize_uint8", &quantize_uint8_cpu);
}

}  // namespace fire_kernels
