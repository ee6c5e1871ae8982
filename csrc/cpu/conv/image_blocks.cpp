// conv2d as GEMMs over blocks of images: the im2col columns of nb images side
// by side, K x nb*P, so that every GEMM is as wide as a block rather than one
// image's plane. On small planes a per-image GEMM is narrower than the
// micro-kernel's tile (P = 16 fills half of a 32-wide one, P = 4 an eighth)
// and repacks the whole weight matrix for 2*P flops per packed float.
//   forward:         Y_blk = W_g . col_blk, then scattered into y's planes with the bias;
//   input gradient:  dcol_blk = W_g^T . dY_blk, then col2im per image;
//   weight gradient: dW_g += dY_blk . col_blk^T, the blocks one after another
//                    (a fixed order, so deterministic whatever the threads).
// dY_blk and Y_blk are kg x nb*P: the block's output planes, image after image
// within each channel's row.
#include <algorithm>
#include <cstring>
#include <vector>

#include "cnnkit/gemm.h"
#include "cnnkit/threads.h"
#include "core/parallel.h"
#include "core/workspace.h"
#include "cpu/conv/kernels.h"

namespace cnnkit {
namespace {

// A block's column matrix stays within this many floats (4 MiB), so that the
// GEMM reads back from cache what the unrolling just wrote; on small planes
// that is still several of the GEMM's packed panels of B wide. A plane whose
// columns alone exceed it runs one image per block (in the forward).
constexpr int64_t kBlockColumnFloats = int64_t{1} << 20;

// The weight gradient's GEMM reads and writes all of dw per block for a depth
// of the block's positions: blocks of at least this many positions keep that
// traffic small next to the multiply, even past kBlockColumnFloats (within
// the im2col bound).
constexpr int64_t kWeightGradBlockPositions = 512;

// Images per block: the fewest blocks within the bound, and with at least
// min_positions output positions, as even as possible (64 images of which
// 56 fit run as 32 + 32, not as 56 + a narrow block of 8).
int64_t images_per_block(const Conv2dParams& p, int64_t min_positions) {
  const int64_t P = p.out_plane(), per_image = std::max<int64_t>(p.reduction() * P, 1);
  const int64_t wanted = std::max(kBlockColumnFloats / per_image, (min_positions + P - 1) / P);
  const int64_t most = std::clamp<int64_t>(std::min(wanted, kIm2colBudgetFloats / per_image), 1, p.batch);
  const int64_t blocks = (p.batch + most - 1) / most;
  return (p.batch + blocks - 1) / blocks;
}

// fn(i) for each image i < nb of a block. With as many images as threads
// each thread takes whole images; else the images go one after another and
// the kernel inside (im2col, col2im) spreads each one's channels over the threads.
template <class Fn>
void for_block_images(const Conv2dParams& p, int64_t nb, Fn&& fn) {
  if (nb >= num_threads()) {
    parallel_for(nb, work_per_item(nb, {p.reduction(), p.out_plane()}), [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) fn(i);
    });
  } else {
    for (int64_t i = 0; i < nb; ++i) fn(i);
  }
}

// The columns of images n0 .. n0+nb of group g, side by side (leading dimension nb*P).
void block_columns(const Conv2dParams& p, const float* x, int64_t n0, int64_t nb, int64_t g, float* col) {
  const int64_t P = p.out_plane();
  for_block_images(p, nb, [&](int64_t i) {
    const float* xg = x + ((n0 + i) * p.in_channels + g * p.group_in_channels()) * p.in_plane();
    im2col_columns(p, xg, 0, P, col + i * P, nb * P);
  });
}

// fn(plane, row) for every output plane of the block and group: plane is
// that plane's offset in an NCHW output tensor, row its offset in the block's
// kg x nb*P matrix.
template <class Fn>
void for_block_planes(const Conv2dParams& p, int64_t n0, int64_t nb, int64_t g, Fn&& fn) {
  const int64_t P = p.out_plane(), kg = p.group_out_channels();
  parallel_for(kg * nb, work_per_item(kg * nb, {P}), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t k = r / nb, i = r % nb;
      fn(((n0 + i) * p.out_channels + g * kg + k) * P, (k * nb + i) * P);
    }
  });
}

// dY_blk of images n0 .. n0+nb, group g.
void gather_block(const Conv2dParams& p, const float* dy, int64_t n0, int64_t nb, int64_t g, float* dyb) {
  const int64_t P = p.out_plane();
  for_block_planes(p, n0, nb, g, [&](int64_t plane, int64_t row) {
    std::copy(dy + plane, dy + plane + P, dyb + row);
  });
}

// dx of images n0 .. n0+nb, group g, from the block's column gradient (zeroed
// first: col2im adds).
void block_col2im(const Conv2dParams& p, const float* dcol, int64_t n0, int64_t nb, int64_t g, float* dx) {
  const int64_t P = p.out_plane(), cg = p.group_in_channels();
  for_block_images(p, nb, [&](int64_t i) {
    float* dxg = dx + ((n0 + i) * p.in_channels + g * cg) * p.in_plane();
    std::fill(dxg, dxg + cg * p.in_plane(), 0.0f);
    col2im_columns(p, dcol + i * P, nb * P, 0, P, dxg);
  });
}

// fn(n0, nb, g, col, rows) for every block of images n0 .. n0+nb and group
// g (blocks of at least min_positions positions), in order: col (K x nb*P) and rows (kg x nb*P) are the calling thread's
// scratch for the block's columns and its output-plane rows.
template <class Fn>
void for_image_blocks(const Conv2dParams& p, int64_t min_positions, Fn&& fn) {
  const int64_t K = p.reduction(), P = p.out_plane(), block = images_per_block(p, min_positions);
  float* col = thread_workspace(WorkspaceSlot::Im2col, static_cast<size_t>(K * block * P));
  float* rows = thread_workspace(WorkspaceSlot::Scratch0, static_cast<size_t>(p.group_out_channels() * block * P));
  for (int64_t n0 = 0; n0 < p.batch; n0 += block) {
    for (int64_t g = 0; g < p.groups; ++g) fn(n0, std::min(block, p.batch - n0), g, col, rows);
  }
}

// Each group's weights as the blocks' GEMM operand A (kg x K, or with
// `transposed` K x kg), packed once per call where there are several blocks
// and sgemm would take its blocked path, which packs A anew for every product
// (vgg11's 512-channel 4x4 layers at batch 64 run 5 blocks of 13 images, each
// packing 9 MB of weights for 1 GFLOP); else empty, and each product is an sgemm.
std::vector<PackedMatrix> packed_weights(const Conv2dParams& p, int64_t min_positions, bool transposed,
                                         const float* w) {
  const int64_t kg = p.group_out_channels(), K = p.reduction(), block = images_per_block(p, min_positions);
  const int64_t rows = transposed ? K : kg, depth = transposed ? kg : K;
  std::vector<PackedMatrix> packed;
  if (block >= p.batch ||
      std::strncmp(sgemm_implementation(rows, block * p.out_plane(), depth, transposed, false), "blocked", 7) != 0) {
    return packed;
  }
  for (int64_t g = 0; g < p.groups; ++g) packed.emplace_back(transposed, rows, depth, w + g * kg * K, K);
  return packed;
}

// C = A_g . B over the block's width: A_g packed, or the weights of group g as sgemm's A.
void multiply_weights(const std::vector<PackedMatrix>& packed, const Conv2dParams& p, bool transposed,
                      const float* w, int64_t g, int64_t width, const float* b, float* c) {
  const int64_t kg = p.group_out_channels(), K = p.reduction();
  if (!packed.empty()) {
    sgemm_packed(packed[static_cast<size_t>(g)], false, width, 1.0f, b, width, 0.0f, c, width);
  } else if (transposed) {
    sgemm(true, false, K, width, kg, 1.0f, w + g * kg * K, K, b, width, 0.0f, c, width);
  } else {
    sgemm(false, false, kg, width, K, 1.0f, w + g * kg * K, K, b, width, 0.0f, c, width);
  }
}

}  // namespace

// One image's columns and output rows within the im2col bound (divided, not
// multiplied: absurd shapes reach here when the candidates are listed).
bool image_blocks_fits(const Conv2dParams& p) {
  const int64_t K = p.reduction(), P = p.out_plane(), kg = p.group_out_channels();
  return p.batch > 0 && P > 0 && K > 0 && kg > 0 && im2col_fits(p) && P <= kIm2colBudgetFloats / K &&
         P <= kIm2colBudgetFloats / kg;
}

void conv2d_forward_blocks(
    const Conv2dParams& p, const float* x,
    const std::function<void(int64_t g, const float* col, int64_t width, float* prod)>& multiply,
    const std::function<void(int64_t offset, int64_t channel, const float* row)>& store) {
  const int64_t P = p.out_plane();
  for_image_blocks(p, 0, [&](int64_t n0, int64_t nb, int64_t g, float* col, float* prod) {
    block_columns(p, x, n0, nb, g, col);
    multiply(g, col, nb * P, prod);
    for_block_planes(p, n0, nb, g, [&](int64_t plane, int64_t row) {
      store(plane, (plane / P) % p.out_channels, prod + row);
    });
  });
}

CNNKIT_CONV2D_FORWARD_SIGNATURE(conv2d_forward_image_blocks) {
  const int64_t P = p.out_plane();
  const std::vector<PackedMatrix> packed = packed_weights(p, 0, false, w);
  conv2d_forward_blocks(
      p, x,
      [&](int64_t g, const float* col, int64_t width, float* prod) {
        multiply_weights(packed, p, false, w, g, width, col, prod);
      },
      [&](int64_t offset, int64_t channel, const float* row) {
        const float b = bias != nullptr ? bias[channel] : 0.0f;
        float* dst = y + offset;
        for (int64_t j = 0; j < P; ++j) dst[j] = row[j] + b;
      });
}

// dY_blk is gathered once per block and group and serves both gradients; dx
// goes first, so that dw's columns can reuse the column gradient's buffer.
CNNKIT_CONV2D_BACKWARD_SIGNATURE(conv2d_backward_image_blocks) {
  const int64_t kg = p.group_out_channels(), K = p.reduction(), P = p.out_plane();
  if (dx != nullptr || dw != nullptr) {
    const int64_t min_positions = dw != nullptr ? kWeightGradBlockPositions : 0;
    const std::vector<PackedMatrix> packed =
        dx != nullptr ? packed_weights(p, min_positions, true, w) : std::vector<PackedMatrix>{};
    for_image_blocks(p, min_positions, [&](int64_t n0, int64_t nb, int64_t g, float* col, float* dyb) {
      const int64_t width = nb * P;
      gather_block(p, dy, n0, nb, g, dyb);
      if (dx != nullptr) {
        multiply_weights(packed, p, true, w, g, width, dyb, col);
        block_col2im(p, col, n0, nb, g, dx);
      }
      if (dw != nullptr) {
        block_columns(p, x, n0, nb, g, col);
        sgemm(false, true, kg, K, width, 1.0f, dyb, width, col, width, n0 == 0 ? 0.0f : 1.0f, dw + g * kg * K, K);
      }
    });
  }
  if (db != nullptr) conv2d_bias_grad(p, dy, db);
}

}  // namespace cnnkit
