// Ordered kernel lists: each op family keeps its implementations fastest
// first and the reference last; the first one whose ISA is enabled and that
// accepts the parameters runs. The reference accepts everything.
#pragma once
#include <cstddef>

#include "cnnkit/errors.h"
#include "cnnkit/isa.h"

namespace cnnkit {

template <class Params, class Fn>
struct KernelImpl {
  const char* name;
  Isa isa;
  bool (*accepts)(const Params&);  // nullptr: accepts every call
  Fn run;
};

template <class Impl, std::size_t N, class Params>
const Impl& select_kernel(const Impl (&list)[N], const Params& params) {
  for (const Impl& impl : list) {
    if (isa_enabled(impl.isa) && (impl.accepts == nullptr || impl.accepts(params))) return impl;
  }
  fail(ErrorKind::Value, "no kernel accepts these parameters");  // unreachable: the reference accepts all
}

}  // namespace cnnkit
