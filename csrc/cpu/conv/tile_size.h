// Picking a register tile's template instance for a size known only at run
// time: the partial tile at the end of a row, a channel block or a tap block.
// Included by per-ISA files: everything here has internal linkage.
#pragma once
#include <type_traits>

namespace cnnkit {
namespace {

// Calls f(std::integral_constant<int, m>{}) with m = n for Min <= n <= Max
// (m = Max for larger n), so that f can name the tile written for m. A caller
// that never passes n < Min instantiates f for no size below it.
template <int Max, int Min = 1, class F>
__attribute__((always_inline)) inline void with_tile_size(int n, F&& f) {
  if constexpr (Max > Min) {
    if (n < Max) return with_tile_size<Max - 1, Min>(n, static_cast<F&&>(f));
  }
  f(std::integral_constant<int, Max>{});
}

}  // namespace
}  // namespace cnnkit
