#include "int8_paths.h"

#include <c10/util/Exception.h>

#include <atomic>

#ifndef FK_EMULATE_AVX512
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include "cpu_features.h"

namespace fire_kernels {

namespace {

constexpr Int8Path kAllPaths[] = {Int8Path::kAvx512Amx, Int8Path::kAvx512Vnni, Int8Path::kAvxVnni, Int8Path::kAvx2,
                                  Int8Path::kPortable};

// The vector ISA (cpu_features.h) a path belongs to: it runs where that ISA is
// allowed and the CPU has the path's dot-product instruction.
Isa level(Int8Path path) {
  switch (path) {
    case Int8Path::kAvx512Amx:
    case Int8Path::kAvx512Vnni:
      return Isa::kAvx512;
    case Int8Path::kAvxVnni:
    case Int8Path::kAvx2:
      return Isa::kAvx2;
    case Int8Path::kPortable:
      return Isa::kPortable;
  }
  return Isa::kPortable;
}

#ifndef FK_EMULATE_AVX512
// Linux hands out AMX's tile state only to processes that ask for it, once.
bool amx_permitted() {
  static const bool permitted = [] {
    constexpr long kReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;  // asm/prctl.h
    return __builtin_cpu_supports("amx-int8") &&
           syscall(SYS_arch_prctl, kReqXcompPerm, kXfeatureXtiledata) == 0;
  }();
  return permitted;
}
#endif

bool cpu_has(Int8Path path) {
  switch (path) {
    case Int8Path::kAvx512Amx:
#ifdef FK_EMULATE_AVX512
      return true;  // amx_tiles.h's scalar tiles (the emulated test build)
#else
      return __builtin_cpu_supports("avx512vnni") && amx_permitted();
#endif
    case Int8Path::kAvx512Vnni:
#ifdef FK_EMULATE_AVX512
      return true;  // SIMDe's vpdpbusd (the emulated test build)
#else
      return __builtin_cpu_supports("avx512vnni");
#endif
    case Int8Path::kAvxVnni:
#ifdef FK_EMULATE_AVX512
      return true;  // SIMDe's 256-bit vpdpbusd (the emulated test build)
#else
      return __builtin_cpu_supports("avxvnni");
#endif
    case Int8Path::kAvx2:
    case Int8Path::kPortable:
      return true;
  }
  return false;
}

// Runs on every int8 operator call (current_int8_path): no allocation.
bool allowed(Int8Path path, Isa limit) {
  return level(path) <= limit && isa_available(level(path)) && cpu_has(path);
}

constexpr int kAuto = -1;
std::atomic<int>& forced() {
  static std::atomic<int> slot{kAuto};
  return slot;
}

}  // namespace

const char* int8_path_name(Int8Path path) {
  switch (path) {
    case Int8Path::kAvx512Amx:
      return "avx512_amx";
    case Int8Path::kAvx512Vnni:
      return "avx512_vnni";
    case Int8Path::kAvxVnni:
      return "avx_vnni";
    case Int8Path::kAvx2:
      return "avx2";
    case Int8Path::kPortable:
      return "portable";
  }
  return "?";
}

std::vector<std::string> available_int8_paths() {
  std::vector<std::string> names;
  for (Int8Path path : kAllPaths)
    if (allowed(path, Isa::kAvx512)) names.emplace_back(int8_path_name(path));
  return names;
}

Int8Path current_int8_path() {
  const int f = forced().load(std::memory_order_relaxed);
  if (f != kAuto) return static_cast<Int8Path>(f);
  for (Int8Path path : kAllPaths)
    if (allowed(path, current_isa())) return path;
  return Int8Path::kPortable;
}

void set_int8_path(const std::string& name) {
  if (name == "auto" || name.empty()) {
    forced().store(kAuto);
    return;
  }
  for (Int8Path path : kAllPaths) {
    if (name == int8_path_name(path)) {
      TORCH_CHECK(allowed(path, Isa::kAvx512), "fire_kernels: this CPU cannot run the '", name,
                  "' int8 kernels; available: ", c10::Join(", ", available_int8_paths()));
      forced().store(static_cast<int>(path));
      return;
    }
  }
  TORCH_CHECK(false, "fire_kernels: unknown int8 path '", name,
              "'; expected 'auto' or one of: ", c10::Join(", ", available_int8_paths()));
}

const Int8Kernel& current_int8_kernel() {
  switch (current_int8_path()) {
    case Int8Path::kAvx512Amx:
      return kInt8Avx512Amx;
    case Int8Path::kAvx512Vnni:
      return kInt8Avx512Vnni;
    case Int8Path::kAvxVnni:
      return kInt8AvxVnni;
    case Int8Path::kAvx2:
      return kInt8Avx2;
    case Int8Path::kPortable:
      return kInt8Portable;
  }
  return kInt8Portable;
}

}  // namespace fire_kernels
