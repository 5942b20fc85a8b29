// The Python module fire_kernels._C. Loading it registers the CPU kernels
// (TORCH_LIBRARY_IMPL in fire_ops.cpp and pack_sparse.cpp); the functions here report and choose
// the vector ISA they run with.
#include <torch/extension.h>

#include "cpu_features.h"
#include "pack_weights.h"

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "fire_kernels CPU kernels (registered as torch.ops.fire_kernels.*)";
  m.def("available_isas", &fire_kernels::available_isas,
        "The vector ISAs this CPU can run, best first.");
  m.def("current_isa", [] { return std::string(fire_kernels::isa_name(fire_kernels::current_isa())); },
        "The vector ISA the CPU kernels use now.");
  m.def("set_isa", &fire_kernels::set_isa, pybind11::arg("name"),
        "Forces the kernels' vector ISA ('auto', 'avx512', 'avx2' or 'portable').");
  m.def("clear_pack_cache", &fire_kernels::clear_pack_cache,
        "Empties the cache of the dense kernels' packed weights.");
}
