#include "cpu_features.h"

#include <c10/util/Exception.h>

#include <atomic>
#include <cstdlib>

namespace fire_kernels {

namespace {

bool cpu_has(Isa isa) {
  switch (isa) {
    case Isa::kAvx512:
#ifdef FK_EMULATE_AVX512
      // The emulated test build (fire_kernel_avx512.cpp): AVX-512 on AVX2 + FMA.
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
      // libgcc's check also asks the OS (XCR0) whether it saves the zmm state.
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma");
#endif
    case Isa::kAvx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case Isa::kPortable:
      return true;
  }
  return false;
}

constexpr Isa kAllIsas[] = {Isa::kAvx512, Isa::kAvx2, Isa::kPortable};

// PyTorch's own switch, ATEN_CPU_CAPABILITY, caps our kernels as it caps PyTorch's:
// "default" -> portable, "avx2", "avx512". Like PyTorch, other values are ignored
// (PyTorch warns about them itself).
Isa isa_cap() {
  static const Isa cap = [] {
    const char* env = std::getenv("ATEN_CPU_CAPABILITY");
    const std::string value = env ? env : "";
    if (value == "default") return Isa::kPortable;
    if (value == "avx2") return Isa::kAvx2;
    return Isa::kAvx512;
  }();
  return cap;
}

bool allowed(Isa isa) { return cpu_has(isa) && isa <= isa_cap(); }

Isa best_isa() {
  for (Isa isa : kAllIsas)
    if (allowed(isa)) return isa;
  return Isa::kPortable;
}

Isa parse_isa(const std::string& name) {
  if (name == "auto" || name.empty()) return best_isa();
  for (Isa isa : kAllIsas) {
    if (name == isa_name(isa)) {
      TORCH_CHECK(cpu_has(isa), "fire_kernels: this CPU cannot run the '", name,
                  "' kernels; available: ", c10::Join(", ", available_isas()));
      TORCH_CHECK(allowed(isa), "fire_kernels: ATEN_CPU_CAPABILITY caps the kernels at '",
                  isa_name(isa_cap()), "', below '", name, "'; available: ",
                  c10::Join(", ", available_isas()));
      return isa;
    }
  }
  TORCH_CHECK(false, "fire_kernels: unknown ISA '", name,
              "'; expected 'auto' or one of: ", c10::Join(", ", available_isas()));
}

Isa initial_isa() {
  const char* env = std::getenv("FIRE_KERNELS_ISA");
  return parse_isa(env ? env : "auto");
}

std::atomic<Isa>& isa_slot() {
  static std::atomic<Isa> slot{initial_isa()};
  return slot;
}

}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::kAvx512:
      return "avx512";
    case Isa::kAvx2:
      return "avx2";
    case Isa::kPortable:
      return "portable";
  }
  return "?";
}

bool isa_available(Isa isa) { return allowed(isa); }

std::vector<std::string> available_isas() {
  std::vector<std::string> names;
  for (Isa isa : kAllIsas)
    if (allowed(isa)) names.emplace_back(isa_name(isa));
  return names;
}

Isa current_isa() { return isa_slot().load(std::memory_order_relaxed); }

void set_isa(const std::string& name) { isa_slot().store(parse_isa(name)); }

}  // namespace fire_kernels
