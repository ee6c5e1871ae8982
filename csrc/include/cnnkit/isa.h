// Instruction sets the kernels are compiled for and the run-time choice among them.
#pragma once
#include <string>

namespace cnnkit {

enum class Isa { Scalar = 0, Avx2 = 1, Avx512 = 2 };

const char* isa_name(Isa isa);
// Parses "scalar", "avx2" or "avx512"; throws a Value error otherwise.
Isa parse_isa(const std::string& name);

// The widest ISA this CPU and OS support (read once).
Isa detected_isa();
// Whether kernels for this ISA were compiled into this build.
bool isa_compiled(Isa isa);
// The cap set by CNNKIT_MAX_ISA at load time or by set_max_isa().
Isa max_isa();
void set_max_isa(Isa cap);
// A kernel for `isa` may run: compiled, supported by the CPU and within the cap.
bool isa_enabled(Isa isa);

}  // namespace cnnkit
