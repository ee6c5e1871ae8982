// The inference plan's own direct convolution for small images and few
// channels at small batches (resnet20's 16/32/64-channel layers, LeNet's and
// mnist_cnn's): output channels across the vector lanes, weights packed once
// when the plan is prepared, threads splitting one image by bands of output
// rows (and channel blocks), a residual add and a ReLU applied to the outputs
// in registers as they are stored (another activation by the thread that
// wrote each band, right after it).
//
// Layout is NCHW at both ends, each plane optionally inside a zero border
// (PlanDirectLayout): the kernel reads a bordered input in place, and a plain
// one through a per-thread zero-padded copy of only the input rows its bands
// need (in place when the layer has no padding); it writes the output rows
// transposed from its channel vectors.
#pragma once
#include <cstdint>
#include <vector>

#include "cnnkit/act.h"
#include "cnnkit/conv.h"

namespace cnnkit {

struct PlanDirectConv;

// What the kernel adds after the convolution and its bias: a residual of the
// output's shape (may be null) and an activation (when act is non-null).
struct PlanDirectEpilogue {
  const float* residual = nullptr;
  const ActParams* act = nullptr;
};

// How one image of a value lies: its channels as NCHW planes or, `blocked`,
// in blocks of the kernel's lanes (NCHW16c with AVX-512: [c / L][h][w][L],
// one vector of channels per position), each plane inside a zero border of
// `border` pixels on every side (the image is c (h + 2b) (w + 2b) floats
// either way). The kernel reads a bordered input in place, its border
// standing in for the layer's padding (at least as wide as each padding),
// and writes a bordered output's border as zeros. A blocked input needs a
// kernel width of at most 3 (plan_direct_reads_blocked) and channels in whole
// blocks, as does a blocked output or residual. The inference plan keeps the
// values between its convolutions so: no layer copies its input, and blocked
// outputs are stored without a transpose.
struct PlanValueLayout {
  int64_t border = 0;
  bool blocked = false;
};
struct PlanDirectLayout {
  PlanValueLayout in, out, residual;
};

using PlanDirectKernel = void (*)(const Conv2dParams& p, const PlanDirectConv& c, const float* x,
                                  const PlanDirectEpilogue& e, float* y, const PlanDirectLayout& layout);

struct PlanDirectConv {
  PlanDirectKernel kernel = nullptr;
  const char* name = "";
  int64_t lanes = 0, blocks = 0, weight_floats = 0;
  // The order of an image's items: channel block by block rather than band
  // by band (plan_direct_impl.h); the plan measures both.
  bool block_major = false;
  // Run as Winograd F(2x2, 3x3) or F(2x2, 5x5) (plan_winograd_impl.h, its
  // input tiles' side plan_winograd_tile) instead, where winograd_packed
  // holds the weights' transforms.
  bool winograd = false;
  // packed[blk][c][r][s][lane] = w[blk*lanes + lane, c, r, s], zero past the
  // output channels; then the bias, [blk][lane].
  std::vector<float> packed;
  // winograd_packed[blk][point][part][c][lane] = (G g G^T)[point], scaled
  // (plan_winograd_impl.h), of output channel blk * lanes + lane, input
  // channel c and the kernel's part (3x3 parts where the tile is 4, the
  // whole 5x5 kernel where it is 6), zero past the output channels;
  // empty where the layer is not one plan_winograd_fits.
  std::vector<float> winograd_packed;
};

// One group, horizontal dilation 1, kernel width 1, 3 or 5 with horizontal
// stride 1, or width 1 or 3 with horizontal stride 2; anything vertically;
// bounded sizes as for direct_cvec.
bool plan_direct_fits(const Conv2dParams& p);
// Whether the kernel can read p's input blocked (PlanValueLayout).
bool plan_direct_reads_blocked(const Conv2dParams& p);
// 3 or 5 rows by 3 or 5 columns, stride 1, no dilation, one group, and what
// plan_direct_fits bounds: the layers the Winograd order runs.
bool plan_winograd_fits(const Conv2dParams& p);
// The side of the Winograd input tiles for p (plan_winograd_fits): 6, for
// F(2x2, 5x5), where the kernel is 5x5 and has at least 8 input channels;
// else 4, for F(2x2, 3x3) on the kernel's 3x3 parts.
int plan_winograd_tile(const Conv2dParams& p);
// Packs w and bias (may be null) for the widest ISA enabled now; false
// (nothing done) when p does not fit or no vector ISA is enabled.
bool pack_plan_direct(const Conv2dParams& p, const float* w, const float* bias, PlanDirectConv* out);
// Adds the Winograd transforms of w to `out` (packed by pack_plan_direct for
// the same layer); false (nothing done) where plan_winograd_fits(p) is not.
bool pack_plan_winograd(const Conv2dParams& p, const float* w, PlanDirectConv* out);

#define CNNKIT_PLAN_DIRECT_SIGNATURE(name)                                                                    \
  void name(const Conv2dParams& p, const PlanDirectConv& c, const float* x, const PlanDirectEpilogue& e, float* y, \
            const PlanDirectLayout& layout)
CNNKIT_PLAN_DIRECT_SIGNATURE(plan_direct_avx2);
CNNKIT_PLAN_DIRECT_SIGNATURE(plan_direct_avx512);

}  // namespace cnnkit
