// The Python module fire_kernels._C. Loading it registers the CPU kernels
// (TORCH_LIBRARY_IMPL in fire_ops.cpp, network_ops.cpp and pack_sparse.cpp);
// the functions here report and choose the vector ISA they run with.
//
// Plain pybind11, not <torch/extension.h>: torch's whole C++ API took most of
// a build's time to compile here. Only network_program.cpp, which binds
// tensors, includes torch's pybind11 type casters.
#include <c10/util/Exception.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>

#include "activation_cache.h"
#include "cpu_features.h"
#include "fire_scheduler.h"
#include "int8_paths.h"
#include "network_program.h"
#include "pack_weights.h"

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "fire_kernels CPU kernels (registered as torch.ops.fire_kernels.*)";
  // c10 errors (an unknown ISA; an operator's checks inside a network program)
  // as the Python exceptions torch's own bindings raise for them, with their
  // message, without the C++ backtrace. Local: a global
  // translator would also catch the errors of torch's operators, ours among
  // them, and turn their ValueErrors and TypeErrors into RuntimeErrors.
  pybind11::register_local_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const c10::ValueError& e) {
      PyErr_SetString(PyExc_ValueError, e.what_without_backtrace());
    } catch (const c10::TypeError& e) {
      PyErr_SetString(PyExc_TypeError, e.what_without_backtrace());
    } catch (const c10::IndexError& e) {
      PyErr_SetString(PyExc_IndexError, e.what_without_backtrace());
    } catch (const c10::Error& e) {
      PyErr_SetString(PyExc_RuntimeError, e.what_without_backtrace());
    }
  });
  m.def("available_isas", &fire_kernels::available_isas,
        "The vector ISAs this CPU can run, best first.");
  m.def("current_isa", [] { return std::string(fire_kernels::isa_name(fire_kernels::current_isa())); },
        "The vector ISA the CPU kernels use now.");
  m.def("set_isa", &fire_kernels::set_isa, pybind11::arg("name"),
        "Forces the kernels' vector ISA ('auto', 'avx512', 'avx2' or 'portable').");
  m.def("available_int8_paths", &fire_kernels::available_int8_paths,
        "The int8 kernel paths this CPU can run, best first.");
  m.def("current_int8_path",
        [] { return std::string(fire_kernels::int8_path_name(fire_kernels::current_int8_path())); },
        "The int8 kernel path in use now.");
  m.def("set_int8_path", &fire_kernels::set_int8_path, pybind11::arg("name"),
        "Forces the int8 kernel path ('auto' follows the vector ISA in use).");
  m.def("clear_pack_cache", &fire_kernels::clear_pack_cache,
        "Empties the cache of the dense kernels' packed weights.");
  m.def("skip_kernels", &fire_kernels::skip_kernels, pybind11::arg("on"),
        "For measurement only: while on, the operators skip their kernels (outputs unwritten).");
  m.def("empty_activation_cache", &fire_kernels::empty_activation_cache,
        "Frees the blocks kept for the fused operators' outputs; returns the bytes freed.");
  m.def("activation_cache_bytes", &fire_kernels::activation_cache_bytes,
        "Bytes of freed output blocks kept for reuse.");
  fire_kernels::bind_network_program(m);
}
