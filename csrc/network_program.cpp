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

namespace fire_kernels {

namespace {

struct KindInfo {
  const char* name;
  NetworkProgram::Kind kind;
  size_t tensors, ints, pool_ints;  // pool_ints: the optional fused max pool's
};

constexpr KindInfo kKinds[] = {
    {"stem", NetworkProgram::Kind::kStem, 2, 5, 0},
    {"fire", NetworkProgram::Kind::kFire, 6, 0, 3},
    {"fire_sparse", NetworkProgram::Kind::kFireSparse, 7, 5, 3},
    {"head", NetworkProgram::Kind::kHead, 2, 0, 0},
    {"head_sparse", NetworkProgram::Kind::kHeadSparse, 3, 2, 0},
};

const KindInfo& kind_info(const std::string& name) {
  for (const KindInfo& k : kKinds)
    if (name == k.name) return k;
  TORCH_CHECK_VALUE(false, "network program: unknown step kind '", name, "'");
}

// A step's tensor that its operator requires (not None).
const at::Tensor& required(const std::optional<at::Tensor>& t) {
  TORCH_CHECK_VALUE(t.has_value() && t->defined(), "network program: a required tensor is None");
  return *t;
}

// The operator a step runs, as the profiler names it.
const char* op_name(const NetworkProgram::Step& s) {
  switch (s.kind) {
    case NetworkProgram::Kind::kStem:
      return "fire_kernels::conv_relu_maxpool";
    case NetworkProgram::Kind::kFire:
      return s.ints.empty() ? "fire_kernels::fire" : "fire_kernels::maxpool_fire";
    case NetworkProgram::Kind::kFireSparse:
      return s.ints.size() == 5 ? "fire_kernels::fire_sparse" : "fire_kernels::maxpool_fire_sparse";
    case NetworkProgram::Kind::kHead:
      return "fire_kernels::conv1x1_relu_avgpool";
    case NetworkProgram::Kind::kHeadSparse:
      return "fire_kernels::conv1x1_relu_avgpool_sparse";
  }
  return "fire_kernels::unknown";
}

at::Tensor run_step(const NetworkProgram::Step& s, const at::Tensor& x) {
  // Seen by torch.profiler as the operator's own call would be (the input's
  // shape recorded only while a profiler wants it).
  RECORD_FUNCTION(op_name(s), std::vector<c10::IValue>({x}));
  const auto& t = s.tensors;
  const auto& i = s.ints;
  switch (s.kind) {
    case NetworkProgram::Kind::kStem:
      return conv_relu_maxpool_cpu(x, required(t[0]), t[1], i[0], i[1], i[2], i[3], i[4] != 0);
    case NetworkProgram::Kind::kFire:
      if (i.empty())
        return fire_cpu(x, required(t[0]), t[1], required(t[2]), t[3], required(t[4]), t[5]);
      return maxpool_fire_cpu(x, required(t[0]), t[1], required(t[2]), t[3], required(t[4]), t[5],
                              i[0], i[1], i[2] != 0);
    case NetworkProgram::Kind::kFireSparse:
      if (i.size() == 5)
        return fire_sparse_cpu(x, required(t[0]), required(t[1]), t[2], required(t[3]),
                               required(t[4]), t[5], t[6], i[0], i[1], i[2], i[3], i[4]);
      return maxpool_fire_sparse_cpu(x, required(t[0]), required(t[1]), t[2], required(t[3]),
                                     required(t[4]), t[5], t[6], i[0], i[1], i[2], i[3], i[4],
                                     i[5], i[6], i[7] != 0);
    case NetworkProgram::Kind::kHead:
      return conv1x1_relu_avgpool_cpu(x, required(t[0]), t[1]);
    case NetworkProgram::Kind::kHeadSparse:
      return conv1x1_relu_avgpool_sparse_cpu(x, required(t[0]), required(t[1]), t[2], i[0], i[1]);
  }
  TORCH_CHECK(false, "network program: unreachable step kind");
}

}  // namespace

NetworkProgram::NetworkProgram(
    const std::vector<std::tuple<std::string, std::vector<std::optional<at::Tensor>>,
                                 std::vector<int64_t>>>& steps,
    std::vector<at::Tensor> sources, int64_t channels, int64_t width, bool per_image)
    : sources_(std::move(sources)), channels_(channels), width_(width), per_image_(per_image) {
  for (const auto& [name, tensors, ints] : steps) {
    const KindInfo& k = kind_info(name);
    TORCH_CHECK_VALUE(tensors.size() == k.tensors, "network program: a '", name, "' step takes ",
                      k.tensors, " tensors, got ", tensors.size());
    TORCH_CHECK_VALUE(ints.size() == k.ints || (k.pool_ints && ints.size() == k.ints + k.pool_ints),
                      "network program: a '", name, "' step got ", ints.size(), " integers");
    steps_.push_back({k.kind, tensors, ints});
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
  if (!x.defined() || x.dim() != 4 || x.scalar_type() != at::kFloat || !x.device().is_cpu() ||
      x.size(1) != channels_ || x.size(3) != width_)
    return std::nullopt;
  if (!per_image_ || x.size(0) <= 1) return run_chain(x);
  at::Tensor out;
  std::once_flag made;
  // The caller's grad and inference modes and profiler, on every thread (the
  // pool's threads do not inherit them).
  const at::ThreadLocalState caller;
  at::parallel_for(0, x.size(0), 1, [&](int64_t begin, int64_t end) {
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
      .def(pybind11::init<const std::vector<std::tuple<
                              std::string, std::vector<std::optional<at::Tensor>>,
                              std::vector<int64_t>>>&,
                          std::vector<at::Tensor>, int64_t, int64_t, bool>(),
           pybind11::arg("steps"), pybind11::arg("sources"), pybind11::arg("channels"),
           pybind11::arg("width"), pybind11::arg("per_image") = true)
      .def("run", &NetworkProgram::run, pybind11::arg("x"),
           pybind11::call_guard<pybind11::gil_scoped_release>(),
           "The chain's output for x, or None where the program no longer holds.");
}

}  // namespace fire_kernels
