// Shapes, bounds and weight repacking of the direct_cvec and direct_walk kernels (and the
// depthwise kernels' bound), compiled for
// the baseline ISA so that the AVX2/AVX-512 builds of direct_cvec_impl.h share
// no inline code with it.
#include <algorithm>

#include "cnnkit/errors.h"
#include "core/workspace.h"
#include "cpu/conv/kernels.h"

namespace cnnkit {
namespace {

using CvecFn = void (*)(const Conv2dParams&, const CvecPlan&, const float*, float*);

void forward_cvec(CvecFn kernel, int64_t lanes, int64_t max_vectors, const Conv2dParams& p,
                  const float* x, const float* w, const float* bias, float* y) {
  const int64_t cg = p.group_in_channels(), kg = p.group_out_channels(), taps = p.kernel_h * p.kernel_w;
  // Balanced blocks: 96 channels in 16 lanes run as 2 blocks of 3 vectors, not 4 + 2.
  const int64_t total_vectors = (kg + lanes - 1) / lanes;
  const int64_t blocks = (total_vectors + max_vectors - 1) / max_vectors;
  const int64_t vectors = (total_vectors + blocks - 1) / blocks;
  const int64_t block_lanes = vectors * lanes;
  const int64_t block_floats = checked_mul(cg * taps, block_lanes, "conv2d packed weight");
  const int64_t weight_floats = checked_mul(p.groups * blocks, block_floats, "conv2d packed weight");
  // In the calling thread's workspace, not a fresh vector: 1.2 MB of weights
  // (128 -> 256 channels 3x3) cost a page fault per 4 KiB on every call.
  float* packed = thread_workspace(WorkspaceSlot::PackedWeights,
                                   static_cast<size_t>(weight_floats + p.groups * blocks * block_lanes));
  float* packed_bias = packed + weight_floats;
  // packed[g][blk][i][lane] = w[g*kg + blk*block_lanes + lane][i], zero past the
  // group's channels; written in order, one (g, blk, i) row of lanes at a time.
  parallel_for(p.groups * blocks, work_per_item(p.groups * blocks, {cg * taps, block_lanes}), [&](int64_t b0, int64_t b1) {
    for (int64_t gb = b0; gb < b1; ++gb) {
      const int64_t g = gb / blocks, k0 = gb % blocks * block_lanes;
      const int64_t lanes = std::min(block_lanes, kg - k0);
      const float* src = w + (g * kg + k0) * cg * taps;
      float* dst = packed + gb * block_floats;
      for (int64_t i = 0; i < cg * taps; ++i, dst += block_lanes) {
        for (int64_t lane = 0; lane < lanes; ++lane) dst[lane] = src[lane * cg * taps + i];
        std::fill(dst + lanes, dst + block_lanes, 0.0f);
      }
      float* bias_dst = packed_bias + gb * block_lanes;
      for (int64_t lane = 0; lane < block_lanes; ++lane) {
        bias_dst[lane] = bias != nullptr && lane < lanes ? bias[g * kg + k0 + lane] : 0.0f;
      }
    }
  });
  CvecPlan plan{};
  plan.vectors = vectors;
  plan.blocks = blocks;
  plan.padded_w = p.in_w + p.pad_left + p.pad_right;
  plan.plane = (p.in_h + p.pad_top + p.pad_bottom) * plan.padded_w;
  plan.input_floats = cg * plan.plane;
  plan.weights = packed;
  plan.bias = packed_bias;
  kernel(p, plan, x, y);
}

}  // namespace

bool direct_cvec_fits(const Conv2dParams& p) {
  if (p.kernel_h * p.kernel_w > kDirectRowsMaxTaps) return false;
  const int64_t hp = p.in_h + p.pad_top + p.pad_bottom, wp = p.in_w + p.pad_left + p.pad_right;
  // Each factor is checked before the product so that nothing overflows.
  if (hp > kDirectRowsMaxFloats || wp > kDirectRowsMaxFloats) return false;
  if (hp * wp > kDirectRowsMaxFloats) return false;
  return p.group_in_channels() <= kDirectRowsMaxFloats / std::max<int64_t>(hp * wp, 1);
}

bool depthwise_fits(const Conv2dParams& p) {
  // The input gradient lists the kernel rows and columns of each phase of the strides.
  if (p.group_in_channels() != 1 || !direct_cvec_fits(p)) return false;
  if (p.stride_h > kDirectRowsMaxTaps || p.stride_w > kDirectRowsMaxTaps) return false;
  // Rows rounded up to whole phases (and a tile of slack) stay within the bound.
  const int64_t hp = p.in_h + p.pad_top + p.pad_bottom, wp = p.in_w + p.pad_left + p.pad_right;
  return hp * (wp + p.stride_w) <= kDirectRowsMaxFloats;
}

bool direct_walk_fits(const Conv2dParams& p) {
  const bool width = p.kernel_w == 3 || p.kernel_w == 5 || p.kernel_w == 7;
  return width && p.stride_w == 1 && p.dilation_w == 1 && direct_cvec_fits(p);
}

CNNKIT_CONV2D_FORWARD_SIGNATURE(conv2d_forward_direct_cvec_avx2) {
  forward_cvec(conv2d_cvec_avx2, 8, kCvecMaxVectorsAvx2, p, x, w, bias, y);
}

CNNKIT_CONV2D_FORWARD_SIGNATURE(conv2d_forward_direct_cvec_avx512) {
  forward_cvec(conv2d_cvec_avx512, 16, kCvecMaxVectorsAvx512, p, x, w, bias, y);
}

CNNKIT_CONV2D_FORWARD_SIGNATURE(conv2d_forward_direct_walk_avx2) {
  forward_cvec(conv2d_walk_avx2, 8, kWalkMaxVectorsAvx2, p, x, w, bias, y);
}

CNNKIT_CONV2D_FORWARD_SIGNATURE(conv2d_forward_direct_walk_avx512) {
  forward_cvec(conv2d_walk_avx512, 16, kWalkMaxVectorsAvx512, p, x, w, bias, y);
}

}  // namespace cnnkit
