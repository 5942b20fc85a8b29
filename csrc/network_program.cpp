// NetworkProgram (network_program.h) and its Python binding.
#include "network_program.h"

#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ThreadLocalState.h>
#include <ATen/record_function.h>
#include <c10/util/Exception.h>
#include <torch/csrc/utils/pybind.h>

#include <mutex>
#include <utility>

#include "fire_ops.h"
#include "int8_ops.h"
#include "thread_pool.h"

namespace fire_kernels {

namespace {

struct KindInfo {
  const char* name;
  NetworkProgram::Kind kind;
  size_t tensors, ints, pool_ints, reals;  // pool_ints: the optional fused max pool's
  const char* op;  // as the profiler names it (a float Fire with a pool: pool_op)
  const char* pool_op;
};

using Kind = NetworkProgram::Kind;

constexpr KindInfo kKinds[] = {
    {"stem", Kind::kStem, 2, 5, 0, 0, "fire_kernels::conv_relu_maxpool", nullptr},
    {"fire", Kind::kFire, 6, 0, 3, 0, "fire_kernels::fire", "fire_kernels::maxpool_fire"},
    {"fire_sparse", Kind::kFireSparse, 7, 5, 3, 0, "fire_kernels::fire_sparse",
     "fire_kernels::maxpool_fire_sparse"},
    {"head", Kind::kHead, 2, 0, 0, 0, "fire_kernels::conv1x1_relu_avgpool", nullptr},
    {"head_sparse", Kind::kHeadSparse, 3, 2, 0, 0, "fire_kernels::conv1x1_relu_avgpool_sparse",
     nullptr},
    {"quantize", Kind::kQuantize, 0, 1, 0, 1, "fire_kernels::quantize_uint8", nullptr},
    {"dequantize", Kind::kDequantize, 0, 0, 0, 1, nullptr, nullptr},  // aten::mul: dispatched
    {"stem_int8", Kind::kStemInt8, 3, 7, 0, 1, "fire_kernels::stem_int8", nullptr},
    {"fire_int8", Kind::kFireInt8, 9, 6, 0, 0, "fire_kernels::fire_int8", nullptr},
    {"fire_int8_sparse", Kind::kFireInt8Sparse, 8, 6, 0, 0, "fire_kernels::fire_int8_sparse",
     nullptr},
    {"head_int8", Kind::kHeadInt8, 3, 1, 0, 1, "fire_kernels::head_int8", nullptr},
    {"head_int8_sparse", Kind::kHeadInt8Sparse, 5, 1, 0, 1, "fire_kernels::head_int8_sparse",
     nullptr},
};

const KindInfo& kind_info(const std::string& name) {
  for (const KindInfo& k : kKinds)
    if (name == k.name) return k;
  TORCH_CHECK_VALUE(false, "network program: unknown step kind '", name, "'");
}

const KindInfo& kind_info(Kind kind) {
  for (const KindInfo& k : kKinds)
    if (kind == k.kind) return k;
  TORCH_CHECK(false, "network program: unreachable step kind");
}

// A step's tensor that its operator requires (not None).
const at::Tensor& required(const std::optional<at::Tensor>& t) {
  TORCH_CHECK_VALUE(t.has_value() && t->defined(), "network program: a required tensor is None");
  return *t;
}

// The operator a step runs, as the profiler names it.
const char* op_name(const NetworkProgram::Step& s) {
  const KindInfo& k = kind_info(s.kind);
  return k.pool_op != nullptr && s.ints.size() == k.ints + k.pool_ints ? k.pool_op : k.op;
}

at::Tensor run_step(const NetworkProgram::Step& s, const at::Tensor& x) {
  if (s.kind == Kind::kDequantize) {  // through the dispatcher, which the profiler sees
    TORCH_CHECK_TYPE(x.scalar_type() == at::kByte,
                     "network program: dequantize expected uint8, got ", x.scalar_type());
    return x.mul(s.reals[0]);
  }
  // Seen by torch.profiler as the operator's own call would be (the input's
  // shape recorded only while a profiler wants it).
  RECORD_FUNCTION(op_name(s), std::vector<c10::IValue>({x}));
  const auto& t = s.tensors;
  const auto& i = s.ints;
  const auto& r = s.reals;
  switch (s.kind) {
    case Kind::kStem:
      return conv_relu_maxpool_cpu(x, required(t[0]), t[1], i[0], i[1], i[2], i[3], i[4] != 0);
    case Kind::kFire:
      if (i.empty())
        return fire_cpu(x, required(t[0]), t[1], required(t[2]), t[3], required(t[4]), t[5]);
      return maxpool_fire_cpu(x, required(t[0]), t[1], required(t[2]), t[3], required(t[4]), t[5],
                              i[0], i[1], i[2] != 0);
    case Kind::kFireSparse:
      if (i.size() == 5)
        return fire_sparse_cpu(x, required(t[0]), required(t[1]), t[2], required(t[3]),
                               required(t[4]), t[5], t[6], i[0], i[1], i[2], i[3], i[4]);
      return maxpool_fire_sparse_cpu(x, required(t[0]), required(t[1]), t[2], required(t[3]),
                                     required(t[4]), t[5], t[6], i[0], i[1], i[2], i[3], i[4],
                                     i[5], i[6], i[7] != 0);
    case Kind::kHead:
      return conv1x1_relu_avgpool_cpu(x, required(t[0]), t[1]);
    case Kind::kHeadSparse:
      return conv1x1_relu_avgpool_sparse_cpu(x, required(t[0]), required(t[1]), t[2], i[0], i[1]);
    case Kind::kQuantize:
      return quantize_uint8_cpu(x, r[0], i[0]);
    case Kind::kStemInt8:
      return stem_int8_cpu(x, required(t[0]), required(t[1]), required(t[2]), i[0], i[1], i[2],
                           r[0], i[3], i[4], i[5], i[6] != 0);
    case Kind::kFireInt8:
      return fire_int8_cpu(x, required(t[0]), required(t[1]), required(t[2]), required(t[3]),
                           required(t[4]), required(t[5]), required(t[6]), required(t[7]),
                           required(t[8]), i[0], i[1], i[2], i[3], i[4], i[5] != 0);
    case Kind::kFireInt8Sparse:
      return fire_int8_sparse_cpu(x, required(t[0]), required(t[1]), required(t[2]),
                                  required(t[3]), required(t[4]), required(t[5]), required(t[6]),
                                  required(t[7]), i[0], i[1], i[2], i[3], i[4], i[5] != 0);
    case Kind::kHeadInt8:
      return head_int8_cpu(x, required(t[0]), required(t[1]), required(t[2]), i[0], r[0]);
    case Kind::kHeadInt8Sparse:
      return head_int8_sparse_cpu(x, required(t[0]), required(t[1]), required(t[2]),
                                  required(t[3]), required(t[4]), i[0], r[0]);
    case Kind::kDequantize:
      break;
  }
  TORCH_CHECK(false, "network program: unreachable step kind");
}

}  // namespace

NetworkProgram::NetworkProgram(const std::vector<StepSpec>& steps,
                               std::vector<at::Tensor> sources, int64_t channels, int64_t width,
                               at::ScalarType dtype, bool per_image)
    : sources_(std::move(sources)),
      channels_(channels),
      width_(width),
      dtype_(dtype),
      per_image_(per_image) {
  TORCH_CHECK_VALUE(dtype == at::kFloat || dtype == at::kByte,
                    "network program: expected a float32 or uint8 input, got ", dtype);
  for (const auto& [name, tensors, ints, reals] : steps) {
    const KindInfo& k = kind_info(name);
    TORCH_CHECK_VALUE(tensors.size() == k.tensors, "network program: a '", name, "' step takes ",
                      k.tensors, " tensors, got ", tensors.size());
    TORCH_CHECK_VALUE(ints.size() == k.ints || (k.pool_ints && ints.size() == k.ints + k.pool_ints),
                      "network program: a '", name, "' step got ", ints.size(), " integers");
    TORCH_CHECK_VALUE(reals.size() == k.reals, "network program: a '", name, "' step takes ",
                      k.reals, " floats, got ", reals.size());
    steps_.push_back({k.kind, tensors, ints, reals});
  }
  for (const at::Tensor& s : sources_) {
    TORCH_CHECK_VALUE(s.defined() && !s.is_inference(),
                      "network program: its sources need version counters (no inference tensors)");
    versions_.push_back(s._version());
    data_.push_back(s.data_ptr());
  }
}

std::optional<at::Tensor> NetworkProgram::run(const at::Tensor& x) const {
  for (size_t k = 0; k < sources_.size(); ++k)
    if (sources_[k]._version() != versions_[k] || sources_[k].data_ptr() != data_[k])
      return std::nullopt;
  if (!x.defined() || x.dim() != 4 || x.scalar_type() != dtype_ || !x.device().is_cpu() ||
      x.size(1) != channels_ || x.size(3) != width_)
    return std::nullopt;
  if (!per_image_ || x.size(0) <= 1) return run_chain(x);
  at::Tensor out;
  std::once_flag made;
  // The caller's grad and inference modes and profiler, on every thread (the
  // pool's threads do not inherit them).
  const at::ThreadLocalState caller;
  parallel_for(0, x.size(0), 1, [&](int64_t begin, int64_t end) {
    const at::ThreadLocalStateGuard state(caller);
    for (int64_t n = begin; n < end; ++n) {
      const at::Tensor h = run_chain(x.narrow(0, n, 1));
      std::call_once(made, [&] {
        std::vector<int64_t> sizes = h.sizes().vec();
        sizes[0] = x.size(0);
        out = at::empty(sizes, h.options().memory_format(h.suggest_memory_format()));
      });
      out.narrow(0, n, 1).copy_(h);
    }
  });
  return out;
}

at::Tensor NetworkProgram::run_chain(const at::Tensor& x) const {
  at::Tensor h = x;
  for (const Step& s : steps_) h = run_step(s, h);
  return h;
}

void bind_network_program(pybind11::module_& m) {
  pybind11::class_<NetworkProgram>(m, "NetworkProgram",
                                   "A chain of fused layers run in one call (network_program.h).")
      .def(pybind11::init<const std::vector<NetworkProgram::StepSpec>&, std::vector<at::Tensor>,
                          int64_t, int64_t, at::ScalarType, bool>(),
           pybind11::arg("steps"), pybind11::arg("sources"), pybind11::arg("channels"),
           pybind11::arg("width"), pybind11::arg("dtype") = at::kFloat,
           pybind11::arg("per_image") = true)
      .def("run", &NetworkProgram::run, pybind11::arg("x"),
           pybind11::call_guard<pybind11::gil_scoped_release>(),
           "The chain's output for x, or None where the program no longer holds.");
}

}  // namespace fire_kernels
