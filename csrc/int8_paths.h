// Which int8 kernel path runs: the best the CPU has at or below the vector
// ISA in use (cpu_features.h), unless one is forced (tests force each in turn).
#pragma once

#include <string>
#include <vector>

#include "int8_kernel.h"

namespace fire_kernels {

enum class Int8Path { kPortable = 0, kAvx2 = 1, kAvxVnni = 2, kAvx512Vnni = 3, kAvx512Amx = 4 };

const char* int8_path_name(Int8Path path);
// The paths this CPU can run and ATEN_CPU_CAPABILITY allows, best first.
std::vector<std::string> available_int8_paths();
Int8Path current_int8_path();
// "auto": follow the ISA in use; else one of available_int8_paths() (throws a
// c10::Error naming them otherwise).
void set_int8_path(const std::string& name);
const Int8Kernel& current_int8_kernel();

}  // namespace fire_kernels
