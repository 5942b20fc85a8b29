// Which vector ISA the CPU kernels run with: detected once from the CPU, capped by
// PyTorch's ATEN_CPU_CAPABILITY (default|avx2|avx512), overridable with the
// environment variable FIRE_KERNELS_ISA or set_isa() within that cap.
#pragma once

#include <string>
#include <vector>

namespace fire_kernels {

enum class Isa { kPortable = 0, kAvx2 = 1, kAvx512 = 2 };

const char* isa_name(Isa isa);
// The ISAs this CPU can execute and ATEN_CPU_CAPABILITY allows, best first
// ("portable" is always last).
std::vector<std::string> available_isas();
// Whether this CPU can execute `isa` and ATEN_CPU_CAPABILITY allows it (what
// available_isas() lists, without building the list).
bool isa_available(Isa isa);
// The ISA the kernels use now.
Isa current_isa();
// Selects an ISA by name; "auto" picks the best available. Throws a
// c10::Error naming the choices if the name is unknown, the CPU lacks it or
// ATEN_CPU_CAPABILITY excludes it.
void set_isa(const std::string& name);

}  // namespace fire_kernels
