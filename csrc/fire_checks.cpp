#include "fire_checks.h"

#include <c10/util/Exception.h>

#include <algorithm>
#include <array>
#include <limits>
#include <string>

namespace fire_kernels {

namespace {

// A dtype as Python prints it ("torch.float32"), so messages match validation.py's.
std::string py_dtype(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return "torch.float32";
    case at::kDouble: return "torch.float64";
    case at::kHalf: return "torch.float16";
    case at::kBFloat16: return "torch.bfloat16";
    case at::kByte: return "torch.uint8";
    case at::kChar: return "torch.int8";
    case at::kShort: return "torch.int16";
    case at::kInt: return "torch.int32";
    case at::kLong: return "torch.int64";
    case at::kBool: return "torch.bool";
    case at::kComplexFloat: return "torch.complex64";
    case at::kComplexDouble: return "torch.complex128";
    default: return std::string("torch.") + c10::toString(t);
  }
}

void check_input(const at::Tensor& x, const char* who) {
  TORCH_CHECK_TYPE(at::isFloatingType(x.scalar_type()), who,
                   " expected a floating-point input, got ", py_dtype(x.scalar_type()));
  TORCH_CHECK_VALUE(x.dim() == 4, who, " expected a 4-D input (N, C, H, W), got ", x.dim(),
                    "-D of shape ", x.sizes());
}

void check_channels(const char* who, int64_t C, int64_t S, int64_t E1, int64_t E3) {
  TORCH_CHECK_VALUE(std::min({C, S, E1, E3}) >= 1, who,
                    ": every convolution needs at least one channel; got C=", C, ", S=", S,
                    ", E1=", E1, ", E3=", E3);
}

// A tensor's expected shape (at most 4-D), formatted only into a failing
// check's message: building strings on every call cost a tenth of an
// operator call with its kernel skipped.
struct Expected {
  const char* name;
  const at::Tensor* tensor;  // null: an absent bias
  std::array<int64_t, 4> shape;
  size_t dims;

  at::IntArrayRef sizes() const { return {shape.data(), dims}; }
};

// validation.py's _check_tensors: each tensor of the given shape, on x's
// device, in x's dtype, in this order.
void check_tensors(const char* who, const at::Tensor& x,
                   std::initializer_list<Expected> expected) {
  for (const Expected& e : expected) {
    if (!e.tensor) continue;
    const at::Tensor& t = *e.tensor;
    TORCH_CHECK_VALUE(t.sizes().equals(e.sizes()), who, " expected ", e.name, " of shape ",
                      e.sizes(), ", got ", t.sizes());
    TORCH_CHECK(t.device() == x.device(), who, ": ", e.name, " is on ", t.device(),
                " but the input is on ", x.device());
    TORCH_CHECK_TYPE(t.scalar_type() == x.scalar_type(), who, ": ", e.name, " is ",
                     py_dtype(t.scalar_type()), " but the input is ", py_dtype(x.scalar_type()));
  }
}

Expected bias(const char* name, const std::optional<at::Tensor>& b, int64_t n) {
  return {name, b ? &*b : nullptr, {n}, 1};
}

// A conv weight on the input's device, in its dtype (validation.py's _check_weight).
void check_weight_like_input(const char* who, const at::Tensor& x, const at::Tensor& w) {
  TORCH_CHECK(w.device() == x.device(), who, ": weight is on ", w.device(),
              " but the input is on ", x.device());
  TORCH_CHECK_TYPE(w.scalar_type() == x.scalar_type(), who, ": weight is ",
                   py_dtype(w.scalar_type()), " but the input is ", py_dtype(x.scalar_type()));
}

// What only the CPU kernels need: CPU tensors, float32.
void check_cpu_float32(const at::Tensor& x, const char* who) {
  TORCH_CHECK(x.device().is_cpu(), who, ": the CPU kernel runs on CPU tensors; the input is on ",
              x.device());
  TORCH_CHECK_TYPE(x.scalar_type() == at::kFloat, who,
                   ": the CPU kernel runs float32; the input is ", py_dtype(x.scalar_type()));
}

}  // namespace

void check_fire_args(const at::Tensor& x, const at::Tensor& ws,
                     const std::optional<at::Tensor>& bs, const at::Tensor& we1,
                     const std::optional<at::Tensor>& be1, const at::Tensor& we3,
                     const std::optional<at::Tensor>& be3, const char* who) {
  if (ws.dim() != 4 || we1.dim() != 4 || we3.dim() != 4) {
    check_input(x, who);
    TORCH_CHECK_VALUE(false, who, " expected 4-D conv weights, got shapes ", ws.sizes(), ", ",
                      we1.sizes(), ", ", we3.sizes());
  }
  const int64_t S = ws.size(0), C = ws.size(1), E1 = we1.size(0), E3 = we3.size(0);
  check_input(x, who);
  TORCH_CHECK_VALUE(x.size(1) == C, who, " expected ", C, " input channels, got ", x.size(1));
  check_channels(who, C, S, E1, E3);
  check_tensors(who, x, {
      {"squeeze.weight", &ws, {S, C, 1, 1}, 4},
      {"expand1x1.weight", &we1, {E1, S, 1, 1}, 4},
      {"expand3x3.weight", &we3, {E3, S, 3, 3}, 4},
      bias("squeeze.bias", bs, S),
      bias("expand1x1.bias", be1, E1),
      bias("expand3x3.bias", be3, E3),
  });
  check_cpu_float32(x, who);
}

void check_pool_args(const at::Tensor& x, const PoolSpec& pool, const char* who) {
  if (pool.kernel == 1 && pool.stride == 1) return;  // no pool
  TORCH_CHECK_VALUE(pool.kernel >= 1 && pool.stride >= 1, who,
                    ": the pool's kernel and stride must be positive, got ", pool.kernel, " and ",
                    pool.stride);
  TORCH_CHECK_VALUE(pooled_size(x.size(2), pool) >= 1 && pooled_size(x.size(3), pool) >= 1, who,
                    ": the input's ", x.size(2), "x", x.size(3), " pixels are fewer than the pool's ",
                    pool.kernel, "x", pool.kernel, " window");
}

void check_sparse_args(const at::Tensor& x, const std::optional<at::Tensor>& bs,
                       const std::optional<at::Tensor>& be1,
                       const std::optional<at::Tensor>& be3, int64_t S, int64_t E1, int64_t E3,
                       int64_t block, int64_t width, const PoolSpec& pool, const char* who) {
  check_input(x, who);
  check_pool_args(x, pool, who);
  const int64_t input_width = pooled_size(x.size(3), pool);
  check_channels(who, x.size(1), S, E1, E3);
  TORCH_CHECK_VALUE(block == 1 || block == 4, who, ": block must be 1 or 4, got ", block);
  TORCH_CHECK_VALUE(width == input_width, who, ": the weights were packed for images ", width,
                    " wide, the input is ", input_width, " wide");
  check_tensors(who, x, {bias("squeeze.bias", bs, S), bias("expand1x1.bias", be1, E1),
                         bias("expand3x3.bias", be3, E3)});
  check_cpu_float32(x, who);
}

void check_sparse_part(const at::Tensor& values, const at::Tensor& index, int64_t groups,
                       int64_t block, const char* name) {
  TORCH_CHECK(index.device().is_cpu() && index.scalar_type() == at::kInt && index.dim() == 1 &&
                  index.is_contiguous(),
              "fire_sparse expected ", name, "_index to be a contiguous 1-D int32 CPU tensor");
  TORCH_CHECK(values.device().is_cpu() && values.scalar_type() == at::kFloat &&
                  values.dim() == 1 && values.is_contiguous(),
              "fire_sparse expected ", name, "_values to be a contiguous 1-D float32 CPU tensor");
  TORCH_CHECK(index.numel() >= groups + 1, "fire_sparse: ", name, "_index has ", index.numel(),
              " elements, fewer than the ", groups + 1, " row starts");
  const int32_t* rows = index.data_ptr<int32_t>();
  const int64_t entries = index.numel() - groups - 1;
  TORCH_CHECK(rows[0] == 0 && rows[groups] == entries, "fire_sparse: ", name,
              "_index row starts must run from 0 to its ", entries, " entries");
  for (int64_t g = 0; g < groups; ++g)
    TORCH_CHECK(rows[g] <= rows[g + 1], "fire_sparse: ", name, "_index row starts decrease");
  TORCH_CHECK(values.numel() == entries * block, "fire_sparse expected ", entries * block, " ",
              name, "_values (", entries, " entries x block ", block, "), got ", values.numel());
}

void check_positions(const at::Tensor& index, int64_t groups, int64_t lo, int64_t hi,
                     const char* name) {
  const int32_t* pos = index.data_ptr<int32_t>() + groups + 1;
  const int64_t entries = index.numel() - groups - 1;
  if (entries == 0) return;
  // A branch-free reduction the compiler vectorises (std::minmax_element does not):
  // this runs on every call, over every nonzero weight.
  int32_t mn = std::numeric_limits<int32_t>::max(), mx = std::numeric_limits<int32_t>::min();
  for (int64_t i = 0; i < entries; ++i) {
    mn = std::min(mn, pos[i]);
    mx = std::max(mx, pos[i]);
  }
  TORCH_CHECK(mn >= lo && mx <= hi, "fire_sparse: ", name, "_index holds positions outside [",
              lo, ", ", hi, "]: packed for another shape?");
}

void check_pack_args(const at::Tensor& ws, const at::Tensor& we1, const at::Tensor& we3,
                     int64_t block, int64_t width) {
  const char* who = "pack_sparse";
  TORCH_CHECK_VALUE(block == 1 || block == 4, who, ": block must be 1 or 4, got ", block);
  TORCH_CHECK_VALUE(width >= 1, who, ": width must be positive, got ", width);
  TORCH_CHECK_VALUE(ws.dim() == 4 && we1.dim() == 4 && we3.dim() == 4, who,
                    " expected 4-D conv weights, got shapes ", ws.sizes(), ", ", we1.sizes(), ", ",
                    we3.sizes());
  const int64_t S = ws.size(0), C = ws.size(1), E1 = we1.size(0), E3 = we3.size(0);
  const std::array<Expected, 3> weights = {{
      {"squeeze.weight", &ws, {S, C, 1, 1}, 4},
      {"expand1x1.weight", &we1, {E1, S, 1, 1}, 4},
      {"expand3x3.weight", &we3, {E3, S, 3, 3}, 4},
  }};
  for (const Expected& e : weights) {
    const at::Tensor& t = *e.tensor;
    TORCH_CHECK_VALUE(t.sizes().equals(e.sizes()), who, " expected ", e.name, " of shape ",
                      e.sizes(), ", got ", t.sizes());
    TORCH_CHECK(t.device().is_cpu(), who, ": ", e.name, " is on ", t.device(),
                "; the sparse kernel runs on the CPU");
    TORCH_CHECK_TYPE(t.scalar_type() == at::kFloat, who, ": ", e.name, " is ",
                     py_dtype(t.scalar_type()), "; the sparse kernel runs float32");
  }
}

void check_stem_args(const at::Tensor& x, const at::Tensor& w,
                     const std::optional<at::Tensor>& b, int64_t stride, int64_t padding,
                     const PoolSpec& pool) {
  const char* who = "conv_relu_maxpool";
  check_input(x, who);
  TORCH_CHECK_VALUE(w.dim() == 4 && w.size(2) == w.size(3) && w.size(0) >= 1, who,
                    " expected a square conv weight [O, C, k, k], got ", w.sizes());
  TORCH_CHECK_VALUE(w.size(1) == x.size(1), who, " expected ", w.size(1),
                    " input channels, got ", x.size(1));
  TORCH_CHECK_VALUE(stride >= 1 && padding >= 0, who,
                    ": stride must be positive and padding not negative, got ", stride, " and ",
                    padding);
  const int64_t k = w.size(2);
  const int64_t hc = conv_size(x.size(2), k, stride, padding);
  const int64_t wc = conv_size(x.size(3), k, stride, padding);
  TORCH_CHECK_VALUE(x.size(2) + 2 * padding >= k && x.size(3) + 2 * padding >= k, who,
                    ": the input's ", x.size(2), "x", x.size(3), " pixels (padded by ", padding,
                    ") are fewer than the conv's ", k, "x", k, " window");
  TORCH_CHECK_VALUE(pool.kernel >= 1 && pool.stride >= 1, who,
                    ": the pool's kernel and stride must be positive, got ", pool.kernel, " and ",
                    pool.stride);
  TORCH_CHECK_VALUE(pooled_size(hc, pool) >= 1 && pooled_size(wc, pool) >= 1, who,
                    ": the conv's ", hc, "x", wc, " output is smaller than the pool's ",
                    pool.kernel, "x", pool.kernel, " window");
  check_tensors(who, x, {bias("bias", b, w.size(0))});
  check_weight_like_input(who, x, w);
  check_cpu_float32(x, who);
}

void check_head_args(const at::Tensor& x, const at::Tensor& w,
                     const std::optional<at::Tensor>& b) {
  const char* who = "conv1x1_relu_avgpool";
  check_input(x, who);
  TORCH_CHECK_VALUE(w.dim() == 4 && w.size(2) == 1 && w.size(3) == 1 && w.size(0) >= 1, who,
                    " expected a 1x1 conv weight [O, C, 1, 1], got ", w.sizes());
  TORCH_CHECK_VALUE(w.size(1) == x.size(1), who, " expected ", w.size(1),
                    " input channels, got ", x.size(1));
  check_tensors(who, x, {bias("bias", b, w.size(0))});
  check_weight_like_input(who, x, w);
  check_cpu_float32(x, who);
}

void check_head_sparse_args(const at::Tensor& x, const std::optional<at::Tensor>& b,
                            int64_t out_channels, int64_t block) {
  const char* who = "conv1x1_relu_avgpool_sparse";
  check_input(x, who);
  TORCH_CHECK_VALUE(out_channels >= 1, who, ": out_channels must be positive, got ",
                    out_channels);
  TORCH_CHECK_VALUE(block == 1 || block == 4, who, ": block must be 1 or 4, got ", block);
  check_tensors(who, x, {bias("bias", b, out_channels)});
  check_cpu_float32(x, who);
}

void check_pack_conv1x1_args(const at::Tensor& w, int64_t block) {
  const char* who = "pack_sparse_conv1x1";
  TORCH_CHECK_VALUE(block == 1 || block == 4, who, ": block must be 1 or 4, got ", block);
  TORCH_CHECK_VALUE(w.dim() == 4 && w.size(2) == 1 && w.size(3) == 1, who,
                    " expected a 1x1 conv weight [O, C, 1, 1], got ", w.sizes());
  TORCH_CHECK(w.device().is_cpu(), who, ": weight is on ", w.device(),
              "; the sparse kernel runs on the CPU");
  TORCH_CHECK_TYPE(w.scalar_type() == at::kFloat, who, ": weight is ", py_dtype(w.scalar_type()),
                   "; the sparse kernel runs float32");
}

}  // namespace fire_kernels
