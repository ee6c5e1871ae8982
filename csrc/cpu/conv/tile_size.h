// Picking a register tile's template instance for a size known only at run
// time: the partial tile at the end of a row, a channel block or a tap block.
// Included by per-ISA files: everything here has internal linkage.
#pragma once
#include <type_traits>

namespace cnnkit {
namespace {

// Calls f(std::integral_constant<int, m>{}) with m = n for 1 <= n <= Max
// (m = Max for larger n), so that f can name the tile written for m.
template <int Max, class F>
__attribute__((always_inline)) inline void with_tile_size(int n, F&& f) {
  if constexpr (Max > 1) {
    if (n < Max) return with_tile_size<Max - 1>(n, static_cast<F&&>(f));
  }
  f(std::integral_constant<int, Max>{});
}

}  // namespace
}  // namespace cnnkit
