// A network program: a chain of fused layers (stem, Fires dense or sparse,
// head; float32 or int8) run in one call from Python, each by its operator's
// CPU kernel (fire_ops.h, int8_ops.h) without the dispatcher or Python between
// the layers. Built by
// fire_kernels.network.FusedSequential from its children's weight plans; it
// keeps the tensors those plans were made from (their versions and data) and
// declines to run (returns nullopt) once any of them changed, or for an input
// unlike the one it was built for, so that Python makes the plans afresh.
#pragma once

#include <ATen/core/Tensor.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

namespace fire_kernels {

class NetworkProgram {
 public:
  enum class Kind {
    kStem, kFire, kFireSparse, kHead, kHeadSparse,
    kQuantize, kDequantize, kStemInt8, kFireInt8, kFireInt8Sparse, kHeadInt8, kHeadInt8Sparse
  };
  struct Step {
    Kind kind;
    std::vector<std::optional<at::Tensor>> tensors;  // the operator's tensor arguments, in order
    std::vector<int64_t> ints;                        // then its integer (and bool) ones
    std::vector<double> reals;                        // then its float ones
  };
  using StepSpec = std::tuple<std::string, std::vector<std::optional<at::Tensor>>,
                              std::vector<int64_t>, std::vector<double>>;

  // `steps`: (kind, tensors, ints, reals), the arguments of a kind's operator
  // after the input, in the schema's order within each of the three lists:
  //   "stem"             conv_relu_maxpool
  //   "fire"             fire, or maxpool_fire with the pool's 3 ints
  //   "fire_sparse"      fire_sparse, or maxpool_fire_sparse
  //   "head"             conv1x1_relu_avgpool
  //   "head_sparse"      conv1x1_relu_avgpool_sparse
  //   "quantize"         quantize_uint8 (reals: scale; ints: zero point)
  //   "dequantize"       a uint8 tensor times reals[0], to float32 (as Python's
  //                      `q * scale` computes it)
  //   "stem_int8", "fire_int8", "fire_int8_sparse", "head_int8",
  //   "head_int8_sparse" the int8 operators of those names.
  // `sources`: what the steps' tensors were computed from. The input: on the
  // CPU, 4-D, of `dtype` (float32, or uint8 for a chain that starts with an int8
  // step), with `channels` channels and `width` columns. `per_image`: run the
  // chain image by image (see run).
  NetworkProgram(const std::vector<StepSpec>& steps, std::vector<at::Tensor> sources,
                 int64_t channels, int64_t width, at::ScalarType dtype, bool per_image);

  // The chain's output for x, or nullopt where the program no longer holds
  // (a source changed) or was not built for inputs like x. With per_image, the
  // images of a batch are dealt out to the threads, and each thread runs the
  // whole chain on its images one by one, alone (the kernels see they are in a
  // parallel region and do not split their work): an image's activations stay
  // in its core's caches from one layer to the next, instead of each layer
  // writing the whole batch's (tens of MB at batch 16) for the next to read
  // back from memory, and the threads never wait for each other between layers.
  std::optional<at::Tensor> run(const at::Tensor& x) const;

 private:
  at::Tensor run_chain(const at::Tensor& x) const;

  std::vector<Step> steps_;
  std::vector<at::Tensor> sources_;
  std::vector<int64_t> versions_;
  std::vector<const void*> data_;
  int64_t channels_, width_;
  at::ScalarType dtype_;
  bool per_image_;
};

// Adds NetworkProgram to the extension's Python module.
void bind_network_program(pybind11::module_& m);

}  // namespace fire_kernels
