// conv2d forward and backward on the GPU: the drivers that sequence each algorithm's kernels,
// templates over the executor (DeviceExec on the GPU, HostExec in the emulator), and the
// launchers the bindings call.
//
// Algorithms ("algo"):
//  - direct: one output element per thread (geometry.h), the definition; depthwise layers use it
//    under "auto" for the forward pass and the input gradient;
//  - im2col: per image, the column matrix into the caller's scratch (a pointwise layer's image is
//    its own), then the tiled SGEMM (groups as its batch); the input gradient is the transposed product into the scratch and a
//    col2im gather; the weight gradient accumulates image by image (beta = 1), in batch order;
//  - implicit_gemm: the tiled SGEMM with operands that gather from x and dy directly (no column
//    matrix); the weight gradient splits the batch's depth into chunks whose partial sums land in
//    the scratch and are added in chunk order.
// No algorithm uses atomics: every result is the same on every run.
#pragma once

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdint>

#include "cuda/common/reduce.h"
#include "cuda/conv/geometry.h"
#include "cuda/gemm/gemm.h"

namespace cnnkit::cuda::conv {

enum class ConvAlgo { Auto, Direct, Im2col, ImplicitGemm };

// A 1 x 1 convolution at stride 1 without padding: each image is its own column matrix, so the
// im2col algorithm multiplies it directly (no copy, no scratch).
inline bool pointwise(const ConvGeom& g) {
  return g.kh == 1 && g.kw == 1 && g.sh == 1 && g.sw == 1 && g.pt == 0 && g.pl == 0 && g.Ho == g.H && g.Wo == g.W;
}

// "auto" for the forward pass and the input gradient: direct for depthwise-like layers (one input
// channel per group: a GEMM with a depth of kh*kw wastes its tiles), im2col for pointwise layers
// (plain strided products), the implicit GEMM otherwise.
inline ConvAlgo data_algo(ConvAlgo algo, const ConvGeom& g) {
  if (algo != ConvAlgo::Auto) return algo;
  if (g.Cg() == 1) return ConvAlgo::Direct;
  return pointwise(g) ? ConvAlgo::Im2col : ConvAlgo::ImplicitGemm;
}

// "auto" for the weight gradient: the implicit GEMM with split-K, even for depthwise layers,
// where the direct kernel would give each thread the whole batch to sum.
inline ConvAlgo weight_algo(ConvAlgo algo) { return algo == ConvAlgo::Auto ? ConvAlgo::ImplicitGemm : algo; }

// The split of the weight gradient's depth (the batch's output positions) into chunks: enough
// blocks for about two waves of a large GPU, chunks of at least 256, at most 64 of them.
inline gemm::TileGrid weight_grad_grid(const ConvGeom& g) {
  gemm::TileGrid grid = gemm::whole(g.Kg(), g.taps(), g.N * g.out_plane(), g.groups);
  const int64_t blocks = gemm::tiles(grid.M, grid.N, grid.batches, gemm::SmallTile::BM, gemm::SmallTile::BN);
  int64_t splits = blocks >= gemm::kFullGrid ? 1 : (2 * gemm::kFullGrid + blocks - 1) / std::max<int64_t>(blocks, 1);
  splits = std::min({splits, grid.K / (16 * gemm::kDepthQuantum), int64_t(64), 65535 / g.groups});
  if (splits <= 1) return grid;
  const int64_t chunk = (grid.K + splits - 1) / splits;
  grid.k_chunk = (chunk + gemm::kDepthQuantum - 1) / gemm::kDepthQuantum * gemm::kDepthQuantum;
  grid.splits = (grid.K + grid.k_chunk - 1) / grid.k_chunk;
  return grid;
}

// Floats of scratch an algorithm needs: one image's column matrix for im2col (none for a
// pointwise layer), the partial sums of a split weight gradient.
inline int64_t workspace(const ConvGeom& g, ConvAlgo algo, bool backward, bool input_grad, bool weight_grad) {
  const int64_t columns = pointwise(g) ? 0 : g.C * g.kernel() * g.out_plane();
  if (!backward) return data_algo(algo, g) == ConvAlgo::Im2col ? columns : 0;
  int64_t need = 0;
  if ((input_grad && data_algo(algo, g) == ConvAlgo::Im2col) || (weight_grad && weight_algo(algo) == ConvAlgo::Im2col)) {
    need = columns;
  }
  if (weight_grad && weight_algo(algo) == ConvAlgo::ImplicitGemm) {
    const gemm::TileGrid grid = weight_grad_grid(g);
    if (grid.splits > 1) need = std::max(need, grid.splits * g.K * g.taps());
  }
  return need;
}

// The weights as the forward product's A: rows are output channels, depth the taps.
inline gemm::Strided weight_rows(const ConvGeom& g, const float* w) {
  return {w, g.taps(), 1, g.Kg() * g.taps()};
}

// Image n's column matrix: the image itself for a pointwise layer, else im2col into the scratch.
template <class Exec>
const float* columns(Exec& ex, const ConvGeom& g, const float* x, int64_t n, float* scratch) {
  const float* image = x + n * g.C * g.in_plane();
  if (pointwise(g)) return image;
  ex.each(g.C * g.kernel() * g.out_plane(), Im2col{g, image, scratch});
  return scratch;
}

template <class Exec>
void forward(Exec& ex, const ConvGeom& g, ConvAlgo algo, const float* x, const float* w, const float* bias, float* y,
             float* scratch) {
  const int64_t P = g.out_plane();
  switch (data_algo(algo, g)) {
    case ConvAlgo::Direct:
      ex.each(g.N * g.K * P, DirectForward{g, x, w, bias, y});
      return;
    case ConvAlgo::ImplicitGemm:
      gemm::product(ex, weight_rows(g, w), ImageColumns{{g, x}}, OutputStore{g, y, bias},
                    gemm::whole(g.Kg(), g.N * P, g.taps(), g.groups));
      return;
    default:
      for (int64_t n = 0; n < g.N; ++n) {
        gemm::MatrixStore s;
        s.c = y + n * g.K * P, s.ldc = P, s.batch_stride = g.Kg() * P;
        s.bias = bias, s.bias_batch_stride = g.Kg(), s.bias_per_row = true;
        gemm::product(ex, weight_rows(g, w), gemm::Strided{columns(ex, g, x, n, scratch), 1, P, g.taps() * P}, s,
                      gemm::whole(g.Kg(), P, g.taps(), g.groups));
      }
  }
}

template <class Exec>
void backward(Exec& ex, const ConvGeom& g, ConvAlgo algo, const float* dy, const float* x, const float* w, float* dx,
              float* dw, float* db, float* scratch) {
  const int64_t P = g.out_plane();
  if (db != nullptr) ex.row_sums(g.K, ChannelSum{dy, g.K, P, g.N * P}, db);
  const ConvAlgo dx_algo = dx != nullptr ? data_algo(algo, g) : ConvAlgo::Auto;
  const ConvAlgo dw_algo = dw != nullptr ? weight_algo(algo) : ConvAlgo::Auto;

  if (dx_algo == ConvAlgo::Im2col || dw_algo == ConvAlgo::Im2col) {
    if (dw_algo == ConvAlgo::Im2col && g.N == 0) ex.each(g.K * g.taps(), Fill{dw, 0.0f});
    for (int64_t n = 0; n < g.N; ++n) {
      const float* dy_n = dy + n * g.K * P;
      if (dw_algo == ConvAlgo::Im2col) {
        gemm::MatrixStore s;
        s.c = dw, s.ldc = g.taps(), s.batch_stride = g.Kg() * g.taps(), s.beta = n > 0 ? 1.0f : 0.0f;
        gemm::product(ex, gemm::Strided{dy_n, P, 1, g.Kg() * P},
                      gemm::Strided{columns(ex, g, x, n, scratch), P, 1, g.taps() * P}, s,
                      gemm::whole(g.Kg(), g.taps(), P, g.groups));
      }
      if (dx_algo == ConvAlgo::Im2col) {
        // The column-matrix gradient, straight into dx for a pointwise layer.
        float* dx_n = dx + n * g.C * g.in_plane();
        gemm::MatrixStore s;
        s.c = pointwise(g) ? dx_n : scratch, s.ldc = P, s.batch_stride = g.taps() * P;
        gemm::product(ex, gemm::Strided{w, 1, g.taps(), g.Kg() * g.taps()}, gemm::Strided{dy_n, 1, P, g.Kg() * P}, s,
                      gemm::whole(g.taps(), P, g.Kg(), g.groups));
        if (!pointwise(g)) ex.each(g.C * g.in_plane(), Col2im{g, scratch, dx_n});
      }
    }
  }
  if (dx_algo == ConvAlgo::Direct) ex.each(g.N * g.C * g.in_plane(), DirectInputGrad{g, dy, w, dx});
  if (dx_algo == ConvAlgo::ImplicitGemm) {
    gemm::product(ex, weight_columns(g, w), OutputGradTaps{{g, dy}}, InputGradStore{g, dx},
                  gemm::whole(g.Cg(), g.N * g.in_plane(), g.Kg() * g.kernel(), g.groups));
  }
  if (dw_algo == ConvAlgo::Direct) ex.each(g.K * g.taps(), DirectWeightGrad{g, dy, x, dw});
  if (dw_algo == ConvAlgo::ImplicitGemm) {
    const gemm::TileGrid grid = weight_grad_grid(g);
    const TwoLevelDepth a = output_grad_rows(g, dy);
    const gemm::Transposed<ImageColumns> b{ImageColumns{{g, x}}};
    if (grid.splits == 1) {
      gemm::MatrixStore s;
      s.c = dw, s.ldc = g.taps(), s.batch_stride = g.Kg() * g.taps();
      gemm::product(ex, a, b, s, grid);
    } else {
      gemm::product(ex, a, b, gemm::PartialStore{scratch, g.Kg(), g.taps(), g.groups}, grid);
      ex.each(g.K * g.taps(), gemm::SumSplits{scratch, dw, g.K * g.taps(), grid.splits});
    }
  }
}

// The launchers: device pointers (bias, dx, dw, db may be null), scratch of workspace() floats,
// the caller's stream; no synchronisation.
void conv2d_forward(const ConvGeom& g, ConvAlgo algo, const float* x, const float* w, const float* bias, float* y,
                    float* scratch, cudaStream_t stream);
void conv2d_backward(const ConvGeom& g, ConvAlgo algo, const float* dy, const float* x, const float* w, float* dx,
                     float* dw, float* db, float* scratch, cudaStream_t stream);

}  // namespace cnnkit::cuda::conv
