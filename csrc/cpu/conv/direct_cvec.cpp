// Shapes, bounds and weight repacking of the direct_cvec and direct_walk kernels, compiled for
// the baseline ISA so that the AVX2/AVX-512 builds of direct_cvec_impl.h share
// no inline code with it.
#include <algorithm>
#include <vector>

#include "cnnkit/errors.h"
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
  std::vector<float> packed(static_cast<size_t>(checked_mul(p.groups * blocks, block_floats, "conv2d packed weight")));
  std::vector<float> packed_bias(static_cast<size_t>(p.groups * blocks * block_lanes));
  for (int64_t g = 0; g < p.groups; ++g) {
    for (int64_t k = 0; k < kg; ++k) {
      const int64_t blk = k / block_lanes, lane = k % block_lanes, o = g * kg + k;
      float* dst = packed.data() + (g * blocks + blk) * block_floats + lane;
      const float* src = w + o * cg * taps;
      for (int64_t i = 0; i < cg * taps; ++i) dst[i * block_lanes] = src[i];
      if (bias != nullptr) packed_bias[static_cast<size_t>((g * blocks + blk) * block_lanes + lane)] = bias[o];
    }
  }
  CvecPlan plan{};
  plan.vectors = vectors;
  plan.blocks = blocks;
  plan.padded_w = p.in_w + p.pad_left + p.pad_right;
  plan.plane = (p.in_h + p.pad_top + p.pad_bottom) * plan.padded_w;
  plan.input_floats = cg * plan.plane;
  plan.weights = packed.data();
  plan.bias = packed_bias.data();
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
