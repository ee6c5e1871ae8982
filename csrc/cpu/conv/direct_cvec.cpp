// Shapes, bounds and weight repacking of the direct_cvec and direct_walk kernels (and the
// depthwise kernels' bound), compiled for
// the baseline ISA so that the AVX2/AVX-512 builds of direct_cvec_impl.h share
// no inline code with it.
#include <algorithm>
#include <string>

#include "cnnkit/errors.h"
#include "core/workspace.h"
#include "cpu/conv/kernels.h"

namespace cnnkit {
namespace {

using CvecFn = void (*)(const Conv2dParams&, const CvecPlan&, const float*, float*);

// Where the packing finds weight (k, c, tap) of the conv p it runs: w[k][c][tap]
// (Oihw), or, for the stride-1 input gradient run as a conv of dy, the layer's
// own weights flipped and transposed, w[c][k][taps - 1 - tap]
// (FlippedTransposed): packing from them directly saves writing a flipped
// copy of w and reading it back.
enum class WeightOrder { Oihw, FlippedTransposed };

// Prefetches the cache lines of `floats` floats from p, for reading or writing.
constexpr int kForReading = 0, kForWriting = 1;
template <int kRw>
inline void prefetch_floats(const float* p, int64_t floats) {
  const char* bytes = reinterpret_cast<const char*>(p);
  for (int64_t b = 0; b < floats * static_cast<int64_t>(sizeof(float)); b += 64) __builtin_prefetch(bytes + b, kRw);
}

// How forward_cvec splits the output channels: balanced blocks (96 channels
// in 16 lanes run as 2 blocks of 3 vectors, not 4 + 2).
struct CvecLayout {
  int64_t vectors, blocks, block_lanes, block_floats, weight_floats, bias_floats;
  int64_t packed_floats() const { return weight_floats + bias_floats; }
};

CvecLayout cvec_layout(int64_t lanes, int64_t max_vectors, const Conv2dParams& p) {
  const int64_t kg = p.group_out_channels(), taps = p.kernel_h * p.kernel_w;
  CvecLayout l{};
  const int64_t total_vectors = (kg + lanes - 1) / lanes;
  l.blocks = (total_vectors + max_vectors - 1) / max_vectors;
  l.vectors = (total_vectors + l.blocks - 1) / l.blocks;
  l.block_lanes = l.vectors * lanes;
  l.block_floats = checked_mul(p.group_in_channels() * taps, l.block_lanes, "conv2d packed weight");
  l.weight_floats = checked_mul(p.groups * l.blocks, l.block_floats, "conv2d packed weight");
  l.bias_floats = p.groups * l.blocks * l.block_lanes;
  return l;
}

// Writes l.packed_floats() floats: the weights, then the bias.
void pack_cvec(const CvecLayout& l, const Conv2dParams& p, const float* w, const float* bias,
               WeightOrder order, float* packed) {
  const int64_t cg = p.group_in_channels(), kg = p.group_out_channels(), taps = p.kernel_h * p.kernel_w;
  const int64_t blocks = l.blocks, block_lanes = l.block_lanes, block_floats = l.block_floats;
  float* packed_bias = packed + l.weight_floats;
  // packed[g][blk][c][tap][lane] = weight (g*kg + blk*block_lanes + lane, c, tap),
  // zero past the group's channels; written in order, one (g, blk, c) run of
  // taps * block_lanes floats at a time.
  parallel_for(p.groups * blocks, work_per_item(p.groups * blocks, {cg * taps, block_lanes}), [&](int64_t b0, int64_t b1) {
    for (int64_t gb = b0; gb < b1; ++gb) {
      const int64_t g = gb / blocks, k0 = gb % blocks * block_lanes;
      const int64_t lanes = std::min(block_lanes, kg - k0);
      float* dst = packed + gb * block_floats;
      for (int64_t c = 0; c < cg; ++c, dst += taps * block_lanes) {
        // The packed weights (9.4 MB for 512 -> 512 channels 3x3) are not in
        // cache: the run two channels ahead is prefetched for writing, and
        // the loads are prefetched ahead too (below). Without either, 512
        // channels 3x3 spent 20% of its forward here, with both 13%. The
        // flipped order reads each channel's lanes as one run of lanes * taps
        // floats, runs kg * taps floats apart: a stride the hardware
        // prefetcher did not follow (without the prefetch of the run two
        // channels ahead, this packing was 25% of 512 -> 512 channels' input
        // gradient; with it, 11%).
        if (c + 2 < cg) {
          prefetch_floats<kForWriting>(dst + 2 * taps * block_lanes, taps * block_lanes);
          if (order == WeightOrder::FlippedTransposed) {
            prefetch_floats<kForReading>(w + ((g * cg + c + 2) * kg + k0) * taps, lanes * taps);
          }
        }
        if (order == WeightOrder::Oihw) {
          // One stream per lane, cg * taps floats apart, each prefetched 8
          // channels ahead.
          const float* src = w + ((g * kg + k0) * cg + c) * taps;
          for (int64_t lane = 0; lane < lanes; ++lane) {
            if (c + 8 < cg) __builtin_prefetch(src + lane * cg * taps + 8 * taps);
            for (int64_t i = 0; i < taps; ++i) dst[i * block_lanes + lane] = src[lane * cg * taps + i];
          }
        } else {
          const float* src = w + ((g * cg + c) * kg + k0) * taps + taps - 1;
          for (int64_t lane = 0; lane < lanes; ++lane)
            for (int64_t i = 0; i < taps; ++i) dst[i * block_lanes + lane] = src[lane * taps - i];
        }
        for (int64_t i = 0; i < taps; ++i) std::fill(dst + i * block_lanes + lanes, dst + (i + 1) * block_lanes, 0.0f);
      }
      float* bias_dst = packed_bias + gb * block_lanes;
      for (int64_t lane = 0; lane < block_lanes; ++lane) {
        bias_dst[lane] = bias != nullptr && lane < lanes ? bias[g * kg + k0 + lane] : 0.0f;
      }
    }
  });
}

CvecPlan cvec_plan(const Conv2dParams& p, int64_t vectors, int64_t blocks, const float* packed,
                   int64_t weight_floats) {
  CvecPlan plan{};
  plan.vectors = vectors;
  plan.blocks = blocks;
  plan.padded_w = p.in_w + p.pad_left + p.pad_right;
  plan.plane = (p.in_h + p.pad_top + p.pad_bottom) * plan.padded_w;
  plan.input_floats = p.group_in_channels() * plan.plane;
  plan.weights = packed;
  plan.bias = packed + weight_floats;
  return plan;
}

void forward_cvec(CvecFn kernel, int64_t lanes, int64_t max_vectors, const Conv2dParams& p, const float* x,
                  const float* w, const float* bias, float* y, WeightOrder order = WeightOrder::Oihw) {
  const CvecLayout l = cvec_layout(lanes, max_vectors, p);
  // In the calling thread's workspace, not a fresh vector: 1.2 MB of weights
  // (128 -> 256 channels 3x3) cost a page fault per 4 KiB on every call.
  float* packed = thread_workspace(WorkspaceSlot::PackedWeights, static_cast<size_t>(l.packed_floats()));
  pack_cvec(l, p, w, bias, order, packed);
  kernel(p, cvec_plan(p, l.vectors, l.blocks, packed, l.weight_floats), x, y);
}

// The AVX-512 walk's vectors per channel block: 2, or 1 where blocks of 2
// would carry a vector of padding (an odd count of 16-channel vectors). A/B
// against 2-vector blocks, 2 threads: 48 channels fwd 1.34, dx 1.36; 80 fwd
// 1.17; 112 fwd 1.15, dx 1.09; AlexNet conv2's dx (48 per group) 1.38.
int64_t walk_vectors_avx512(const Conv2dParams& p) {
  const int64_t total_vectors = (p.group_out_channels() + 15) / 16;
  return total_vectors % kWalkMaxVectorsAvx512 == 0 ? kWalkMaxVectorsAvx512 : 1;
}

}  // namespace

bool direct_cvec_fits(const Conv2dParams& p) {
  if (p.kernel_h * p.kernel_w > kDirectRowsMaxTaps) return false;
  const int64_t plane = p.padded_plane();
  if (plane > kDirectRowsMaxFloats) return false;
  return p.group_in_channels() <= kDirectRowsMaxFloats / std::max<int64_t>(plane, 1);
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
  forward_cvec(conv2d_walk_avx512, 16, walk_vectors_avx512(p), p, x, w, bias, y);
}

CNNKIT_CONV2D_FLIPPED_SIGNATURE(conv2d_flipped_direct_cvec_avx2) {
  forward_cvec(conv2d_cvec_avx2, 8, kCvecMaxVectorsAvx2, t, dy, w, nullptr, dx, WeightOrder::FlippedTransposed);
}

CNNKIT_CONV2D_FLIPPED_SIGNATURE(conv2d_flipped_direct_cvec_avx512) {
  forward_cvec(conv2d_cvec_avx512, 16, kCvecMaxVectorsAvx512, t, dy, w, nullptr, dx, WeightOrder::FlippedTransposed);
}

CNNKIT_CONV2D_FLIPPED_SIGNATURE(conv2d_flipped_direct_walk_avx2) {
  forward_cvec(conv2d_walk_avx2, 8, kWalkMaxVectorsAvx2, t, dy, w, nullptr, dx, WeightOrder::FlippedTransposed);
}

CNNKIT_CONV2D_FLIPPED_SIGNATURE(conv2d_flipped_direct_walk_avx512) {
  forward_cvec(conv2d_walk_avx512, 16, walk_vectors_avx512(t), t, dy, w, nullptr, dx, WeightOrder::FlippedTransposed);
}

bool pack_cvec_forward(const char* impl, const Conv2dParams& p, const float* w, const float* bias,
                       PackedCvecConv* out) {
#ifdef CNNKIT_X86
  struct Entry {
    const char* name;
    CvecFn kernel;
    int64_t lanes, max_vectors;
  };
  const Entry entries[] = {
      {"direct_walk_avx512", conv2d_walk_avx512, 16, walk_vectors_avx512(p)},
      {"direct_walk_avx2", conv2d_walk_avx2, 8, kWalkMaxVectorsAvx2},
      {"direct_cvec_avx512", conv2d_cvec_avx512, 16, kCvecMaxVectorsAvx512},
      {"direct_cvec_avx2", conv2d_cvec_avx2, 8, kCvecMaxVectorsAvx2},
  };
  for (const Entry& e : entries) {
    if (std::string(impl) != e.name) continue;
    const CvecLayout l = cvec_layout(e.lanes, e.max_vectors, p);
    out->kernel = e.kernel;
    out->vectors = l.vectors;
    out->blocks = l.blocks;
    out->weight_floats = l.weight_floats;
    out->packed.assign(static_cast<size_t>(l.packed_floats()), 0.0f);
    pack_cvec(l, p, w, bias, WeightOrder::Oihw, out->packed.data());
    return true;
  }
#else
  (void)impl, (void)p, (void)w, (void)bias, (void)out;
#endif
  return false;
}

void run_packed_cvec_forward(const Conv2dParams& p, const PackedCvecConv& c, const float* x, float* y) {
  c.kernel(p, cvec_plan(p, c.vectors, c.blocks, c.packed.data(), c.weight_floats), x, y);
}

}  // namespace cnnkit
