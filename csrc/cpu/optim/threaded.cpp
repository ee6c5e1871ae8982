// Every tensor of a step cut into fixed-size pieces that parallel_for shares
// among threads: one parameter's update may run on several threads, and many
// small ones on one. Elementwise, so the split never changes a result.
#include <algorithm>
#include <vector>

#include "core/parallel.h"
#include "cpu/optim/kernels.h"

namespace cnnkit {

namespace {

// A multiple of every vector width: only a tensor's last piece has a partial vector.
constexpr int64_t kPiece = 1 << 14;

struct Piece {
  int64_t tensor, begin, end;
};

}  // namespace

void optimizer_step_threaded(OptimizerRangeFn range, const OptimizerOptions& o,
                             const OptimizerTensor* tensors, int64_t count) {
  std::vector<OptimizerCoefficients> coefficients;
  std::vector<Piece> pieces;
  coefficients.reserve(static_cast<size_t>(count));
  for (int64_t k = 0; k < count; ++k) {
    coefficients.push_back(optimizer_coefficients(o, tensors[k]));
    for (int64_t b = 0; b < tensors[k].n; b += kPiece) {
      pieces.push_back({k, b, std::min(tensors[k].n, b + kPiece)});
    }
  }
  // About ten loads, stores and flops per element.
  parallel_for(static_cast<int64_t>(pieces.size()), 8 * kPiece, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      const Piece& piece = pieces[static_cast<size_t>(p)];
      range(o, coefficients[static_cast<size_t>(piece.tensor)], tensors[piece.tensor], piece.begin,
            piece.end);
    }
  });
}

}  // namespace cnnkit
