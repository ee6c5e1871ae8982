// Every conv2d implementation, declared once for the dispatcher and the tests,
// and the index helpers they share.
#pragma once
#include <algorithm>
#include <cstdint>
#include <functional>
#include <vector>

#include "cnnkit/conv.h"
#include "core/parallel.h"

namespace cnnkit {

#define CNNKIT_CONV2D_FORWARD_SIGNATURE(name) \
  void name(const Conv2dParams& p, const float* x, const float* w, const float* bias, float* y)
#define CNNKIT_CONV2D_BACKWARD_SIGNATURE(name)                                             \
  void name(const Conv2dParams& p, const float* dy, const float* x, const float* w, float* dx, \
            float* dw, float* db)

CNNKIT_CONV2D_FORWARD_SIGNATURE(conv2d_forward_reference);
CNNKIT_CONV2D_FORWARD_SIGNATURE(conv2d_forward_direct);
CNNKIT_CONV2D_FORWARD_SIGNATURE(conv2d_forward_im2col);
CNNKIT_CONV2D_FORWARD_SIGNATURE(conv2d_forward_direct_rows_avx2);
CNNKIT_CONV2D_FORWARD_SIGNATURE(conv2d_forward_direct_rows_avx512);
CNNKIT_CONV2D_BACKWARD_SIGNATURE(conv2d_backward_direct_rows_avx2);
CNNKIT_CONV2D_BACKWARD_SIGNATURE(conv2d_backward_direct_rows_avx512);
CNNKIT_CONV2D_BACKWARD_SIGNATURE(conv2d_backward_reference);
CNNKIT_CONV2D_BACKWARD_SIGNATURE(conv2d_backward_direct);
CNNKIT_CONV2D_BACKWARD_SIGNATURE(conv2d_backward_im2col);

// dw by im2col + GEMM when one column fits the workspace bound, else by the
// direct loops; shared by the im2col and direct_rows backward kernels.
void conv2d_weight_grad(const Conv2dParams& p, const float* dy, const float* x, float* dw);

// dw alone, for the weight-gradient kernels the backward ones pick from.
#define CNNKIT_CONV2D_WEIGHT_GRAD_SIGNATURE(name) \
  void name(const Conv2dParams& p, const float* dy, const float* x, float* dw)

// The output-channel-vector weight gradient (weight_grad_kvec_impl.h): any
// stride, padding and dilation, within bounds on its per-thread buffers (a
// padded input group and a channels-last dy plane of one image, and one
// partial dw per thread, each at most kDirectRowsMaxFloats).
bool weight_grad_kvec_fits(const Conv2dParams& p, int64_t lanes);
CNNKIT_CONV2D_WEIGHT_GRAD_SIGNATURE(conv2d_weight_grad_kvec_avx2);
CNNKIT_CONV2D_WEIGHT_GRAD_SIGNATURE(conv2d_weight_grad_kvec_avx512);

// The backward with dw by kvec (dx and db as below).
CNNKIT_CONV2D_BACKWARD_SIGNATURE(conv2d_backward_kvec_avx2);
CNNKIT_CONV2D_BACKWARD_SIGNATURE(conv2d_backward_kvec_avx512);

// dx by im2col (GEMM + col2im) when one column fits the workspace bound, else
// by the direct loops.
void conv2d_input_grad(const Conv2dParams& p, const float* dy, const float* w, float* dx);
// dx as the direct forward of the flipped kernel over dy (by the kernel that
// conv2d's dispatch picks for that shape). Only when direct_rows_backward_fits(p).
void conv2d_input_grad_transposed(const Conv2dParams& p, const float* dy, const float* w, float* dx);

// The depthwise kernels (depthwise_impl.h): one input channel per group, any
// channel multiplier, stride, dilation and padding; at most kDirectRowsMaxTaps
// taps and padded planes of at most kDirectRowsMaxFloats.
bool depthwise_fits(const Conv2dParams& p);
CNNKIT_CONV2D_FORWARD_SIGNATURE(conv2d_forward_depthwise_avx2);
CNNKIT_CONV2D_FORWARD_SIGNATURE(conv2d_forward_depthwise_avx512);
CNNKIT_CONV2D_BACKWARD_SIGNATURE(conv2d_backward_depthwise_avx2);
CNNKIT_CONV2D_BACKWARD_SIGNATURE(conv2d_backward_depthwise_avx512);

// The inference plan's direct kernel (cpu/plan/plan_direct.h) as a forward
// of its own, the weights packed on each call; items band by band or channel
// block by block. Only autotuning picks it: it fits what plan_direct_fits
// accepts, under an AVX2 or AVX-512 cap.
bool plan_direct_forward_fits(const Conv2dParams& p);
CNNKIT_CONV2D_FORWARD_SIGNATURE(conv2d_forward_plan_direct);
CNNKIT_CONV2D_FORWARD_SIGNATURE(conv2d_forward_plan_direct_block_major);
// The plan's Winograd order of the same kernel (F(2x2, 3x3), F(2x2, 5x5); plan_winograd_fits).
bool plan_winograd_forward_fits(const Conv2dParams& p);
CNNKIT_CONV2D_FORWARD_SIGNATURE(conv2d_forward_plan_winograd);
// Backwards whose input gradient is that kernel run block-major over dy on
// the transposed layer (transposed_params; stride 1, one group), its weights
// packed flipped on each call; the weight and bias gradients by kvec or
// image_blocks. Only autotuning picks them.
bool plan_direct_input_grad_fits(const Conv2dParams& p);
bool kvec_plan_dx_fits_avx512(const Conv2dParams& p);
bool kvec_plan_dx_fits_avx2(const Conv2dParams& p);
bool image_blocks_plan_dx_fits(const Conv2dParams& p);
CNNKIT_CONV2D_BACKWARD_SIGNATURE(conv2d_backward_kvec_plan_dx_avx512);
CNNKIT_CONV2D_BACKWARD_SIGNATURE(conv2d_backward_kvec_plan_dx_avx2);
CNNKIT_CONV2D_BACKWARD_SIGNATURE(conv2d_backward_image_blocks_plan_dx);

// GEMMs over blocks of images, their columns side by side (image_blocks.cpp):
// the forward and both gradients of small planes, whose per-image GEMMs are
// too narrow to run at speed.
bool image_blocks_fits(const Conv2dParams& p);
CNNKIT_CONV2D_FORWARD_SIGNATURE(conv2d_forward_image_blocks);
// That forward's passes with the product and the output pass supplied (the
// inference plan runs it with pre-packed weights and its fused epilogue):
// for each block of images and group g, multiply(g, col, width, prod) forms
// prod (kg x width) = W_g . col (K x width, the block's columns side by side),
// then store(offset, channel, row) writes each output plane of the block,
// y[offset .. offset + out_plane), of `channel` from its P floats of prod.
void conv2d_forward_blocks(
    const Conv2dParams& p, const float* x,
    const std::function<void(int64_t g, const float* col, int64_t width, float* prod)>& multiply,
    const std::function<void(int64_t offset, int64_t channel, const float* row)>& store);
CNNKIT_CONV2D_BACKWARD_SIGNATURE(conv2d_backward_image_blocks);

// One GEMM per kernel tap over the output positions it reaches inside the
// input, the batch side by side (tap_gemm.cpp): no work for taps in the padding.
bool tap_gemm_fits(const Conv2dParams& p);
CNNKIT_CONV2D_FORWARD_SIGNATURE(conv2d_forward_tap_gemm);
CNNKIT_CONV2D_BACKWARD_SIGNATURE(conv2d_backward_tap_gemm);

// db[o] = sum of dy over batch and positions; shared by the fast backward kernels.
void conv2d_bias_grad(const Conv2dParams& p, const float* dy, float* db);

// The direct_rows kernels (direct_rows_impl.h): stride 1 only, and the bounds
// of direct_cvec_fits: at most this many kernel taps, and padded input planes
// of one image/group of at most kDirectRowsMaxFloats (so the per-thread
// buffers stay bounded).
constexpr int64_t kDirectRowsMaxTaps = 256;
constexpr int64_t kDirectRowsMaxFloats = int64_t{4} << 20;
// Copies `channels` input planes (in_h x in_w, starting at x_group) into the
// interior of a padded buffer whose planes are `plane` floats with rows
// `padded_w` wide, offset by pad_top/pad_left. The padding is not written, so
// the direct kernels zero their buffer once and reuse it image after image.
void copy_into_padded(const Conv2dParams& p, const float* x_group, int64_t channels, float* padded,
                      int64_t plane, int64_t padded_w);

bool direct_rows_fits(const Conv2dParams& p);
// Sizes of one direct_rows call whose register tile spans tile_floats
// extended positions. Only valid when direct_rows_fits(p).
struct DirectRowsPlan {
  int64_t group_in_channels, group_out_channels, reduction;
  int64_t padded_w, plane;        // padded input row width and plane size
  int64_t ext_len, ext_stride;    // extended positions, and their rounding up to whole tiles
  int64_t slack;                  // zeros after the last plane: the reads past it (plan_direct_rows)
  int64_t input_floats;           // padded planes of one image/group plus the slack
  int64_t items, work_per_item;   // parallel_for over (image, group)
};
// The input gradient of a stride-1 conv is a stride-1 conv of dy with the
// flipped, transposed kernel and padding dilation*(k-1) - pad on each side:
// direct_rows runs it when those paddings are >= 0 and the shape fits.
bool direct_rows_backward_fits(const Conv2dParams& p);
// That conv's parameters (input dy, output dx); valid for stride 1 and
// paddings no larger than dilation*(k-1).
Conv2dParams transposed_params(const Conv2dParams& p);
DirectRowsPlan plan_direct_rows(const Conv2dParams& p, int64_t tile_floats);

// The direct_rows weight gradient of stride-1 layers (direct_rows_impl.h):
//   dw[o, c, r, s] = sum over images and extended positions e of
//                    dyx[n, o, e] * xp[n, c, e + r*dh*Wp + s*dw]
// where xp holds zero-padded input planes (row width Wp, `plane` floats each,
// consecutive over (image, channel), plus `lanes` floats of zero slack) and
// dyx holds dy on the same extended rows (ext_stride floats per (image,
// channel), zero at the dropped columns ow >= Wo and past ext_len).
struct WeightGradRowsChunk {
  int64_t images;                 // images packed in xp and dyx
  int64_t padded_w, plane, ext_stride;
  const float* xp;
  const float* dyx;
};
#define CNNKIT_CONV2D_WEIGHT_GRAD_ROWS_SIGNATURE(name) \
  void name(const Conv2dParams& p, const WeightGradRowsChunk& chunk, float* dw, bool accumulate)
CNNKIT_CONV2D_WEIGHT_GRAD_ROWS_SIGNATURE(conv2d_weight_grad_rows_avx2);
CNNKIT_CONV2D_WEIGHT_GRAD_ROWS_SIGNATURE(conv2d_weight_grad_rows_avx512);

// The direct_cvec kernels (direct_cvec_impl.h): any stride and dilation, at
// most kDirectRowsMaxTaps taps, padded planes bounded as for direct_rows.
// Output channels are processed in `blocks` blocks of `vectors` SIMD vectors;
// `weights` is [group][block][c][r][s][vectors*lanes] and `bias` is
// [group][block][vectors*lanes], zero past each group's channels.
bool direct_cvec_fits(const Conv2dParams& p);
struct CvecPlan {
  int64_t vectors, blocks;
  int64_t padded_w, plane;  // padded input row width and plane size
  int64_t input_floats;     // padded planes of one image/group
  const float* weights;
  const float* bias;
};
#define CNNKIT_CONV2D_CVEC_SIGNATURE(name) \
  void name(const Conv2dParams& p, const CvecPlan& plan, const float* x, float* y)
CNNKIT_CONV2D_CVEC_SIGNATURE(conv2d_cvec_avx2);
CNNKIT_CONV2D_CVEC_SIGNATURE(conv2d_cvec_avx512);
// The largest channel block, in vectors, each ISA's register tile handles.
constexpr int64_t kCvecMaxVectorsAvx2 = 2;
constexpr int64_t kCvecMaxVectorsAvx512 = 4;
CNNKIT_CONV2D_FORWARD_SIGNATURE(conv2d_forward_direct_cvec_avx2);
CNNKIT_CONV2D_FORWARD_SIGNATURE(conv2d_forward_direct_cvec_avx512);

// The direct_walk kernels (direct_walk_impl.h): direct_cvec's packing and
// bounds, for kernels 3, 5 or 7 wide with horizontal stride and dilation 1.
bool direct_walk_fits(const Conv2dParams& p);
CNNKIT_CONV2D_CVEC_SIGNATURE(conv2d_walk_avx2);
CNNKIT_CONV2D_CVEC_SIGNATURE(conv2d_walk_avx512);
constexpr int64_t kWalkMaxVectorsAvx2 = 1;
constexpr int64_t kWalkMaxVectorsAvx512 = 2;
CNNKIT_CONV2D_FORWARD_SIGNATURE(conv2d_forward_direct_walk_avx2);
CNNKIT_CONV2D_FORWARD_SIGNATURE(conv2d_forward_direct_walk_avx512);

// A direct_cvec or direct_walk forward whose weights are packed once and
// reused call after call (inference plans): the per-call packing costs as
// much as the convolution itself at batch 1 on layers with many weights.
struct PackedCvecConv {
  void (*kernel)(const Conv2dParams&, const CvecPlan&, const float*, float*) = nullptr;
  int64_t vectors = 0, blocks = 0, weight_floats = 0;
  std::vector<float> packed;  // weights, then bias
};
// Packs w and bias (may be null) for `impl`, a name conv2d_forward_implementation
// returns; false (nothing done) when impl is not one of the four kernels above.
bool pack_cvec_forward(const char* impl, const Conv2dParams& p, const float* w, const float* bias,
                       PackedCvecConv* out);
// The implementation algo="auto" settles on for p: the cached winner, else
// (autotune on) the winner of a measurement made now, which runs the
// candidates on x, w and bias and leaves one's result in y; else the
// heuristic's pick. Unlike conv2d_forward, it does not run the winner again.
const char* conv2d_forward_measured_implementation(const Conv2dParams& p, const float* x, const float* w,
                                                   const float* bias, float* y);
// Runs p (any batch; the other sizes as packed) with the packed weights.
void run_packed_cvec_forward(const Conv2dParams& p, const PackedCvecConv& c, const float* x, float* y);

// The stride-1 input gradient as the forward `t` (the transposed conv: dy in,
// dx out) run by direct_cvec or direct_walk, which pack the layer's own
// weights `w` flipped and transposed as they read them.
#define CNNKIT_CONV2D_FLIPPED_SIGNATURE(name) \
  void name(const Conv2dParams& t, const float* dy, const float* w, float* dx)
CNNKIT_CONV2D_FLIPPED_SIGNATURE(conv2d_flipped_direct_cvec_avx2);
CNNKIT_CONV2D_FLIPPED_SIGNATURE(conv2d_flipped_direct_cvec_avx512);
CNNKIT_CONV2D_FLIPPED_SIGNATURE(conv2d_flipped_direct_walk_avx2);
CNNKIT_CONV2D_FLIPPED_SIGNATURE(conv2d_flipped_direct_walk_avx512);
// Runs `t` by the kernel conv2d_forward(t, ..., Direct) picks when that is one
// of the four above; false (nothing done) for the others, which need a
// flipped copy of w.
bool conv2d_forward_flipped(const Conv2dParams& t, const float* dy, const float* w, float* dx);

// Under cnnkit::deterministic(), the weight gradients that keep one partial
// sum per thread's share of the images keep this many shares (at most)
// whatever the thread count.
constexpr int64_t kDeterministicImageShares = 4;

// Total im2col column buffer allowed per call, over all threads (64 MiB):
// bigger images and batches are processed in chunks of output positions.
constexpr int64_t kIm2colBudgetFloats = int64_t{16} << 20;
// im2col needs room for at least one full column (reduction() floats).
inline bool im2col_fits(const Conv2dParams& p) { return p.reduction() <= kIm2colBudgetFloats; }

// How the im2col kernels split one call: `outer` threads each take whole
// images (their nested sgemm runs serially) or, with outer == 1, images run one
// after another and sgemm threads itself. Each image/group is processed in
// chunks of `chunk` output positions so that outer * reduction() * chunk
// column floats stay within kIm2colBudgetFloats.
struct ColumnPlan {
  int64_t outer, chunk;
};
ColumnPlan plan_columns(const Conv2dParams& p);
// fn(begin, end) over the batch: split across threads when plan.outer > 1,
// otherwise on the calling thread so that the sgemm calls inside can thread.
template <class Fn>
void for_images(const ColumnPlan& plan, int64_t batch, int64_t work_per_image, Fn&& fn) {
  if (plan.outer > 1) {
    parallel_for(batch, work_per_image, fn);
  } else {
    fn(int64_t{0}, batch);
  }
}
// 1x1 kernel, stride 1, no padding: the input plane already is the column matrix.
bool columns_are_input(const Conv2dParams& p);
// Columns [p0, p1) of the flattened output positions of one image and group:
// col[((c*kh + r)*kw + s) * ld + j] = x_group[c, tap of position p0 + j], zero in the padding.
void im2col_columns(const Conv2dParams& p, const float* x_group, int64_t p0, int64_t p1, float* col, int64_t ld);
// Columns [p0, p1) as an sgemm operand: the input plane itself (leading
// dimension out_plane) when columns_are_input(p), else written into col by
// im2col_columns (leading dimension p1 - p0).
struct ColumnBlock {
  const float* data;
  int64_t ld;
};
ColumnBlock column_block(const Conv2dParams& p, const float* x_group, int64_t p0, int64_t p1, float* col);
// dst[i] = src[i * stride] for i < n, reading nothing past src[(n - 1) * stride]:
// im2col's and the depthwise kernels' strided rows (stride 2 vectorised).
void gather_strided(const float* src, int64_t stride, float* dst, int64_t n);
// The adjoint: adds every column entry back into dx_group at the position it
// was read from; col's rows are ld floats apart.
void col2im_columns(const Conv2dParams& p, const float* col, int64_t ld, int64_t p0, int64_t p1, float* dx_group);

// The output positions o in [lo, hi) whose tap o*stride + offset lands inside
// [0, in_size); offset = kernel_index*dilation - pad_before. Hoisting this out
// of the inner loops removes every padding test from them. The divisions round
// up as (a - 1) / stride + 1: a + stride - 1 would wrap for strides near 2^63.
struct TapRange {
  int64_t lo, hi;
};
inline TapRange tap_range(int64_t offset, int64_t stride, int64_t in_size, int64_t out_size) {
  const int64_t lo = offset >= 0 ? 0 : (-offset - 1) / stride + 1;
  const int64_t past = in_size - offset;  // taps must stay below this distance from the offset
  const int64_t hi = past <= 0 ? 0 : std::min(out_size, (past - 1) / stride + 1);
  return {std::min(lo, hi), hi};
}

}  // namespace cnnkit
