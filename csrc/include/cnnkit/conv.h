// 2-D convolution (cross-correlation, as PyTorch): NCHW input, weight
// (out, in/groups, kh, kw), optional bias (out). Forward and backward.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "cnnkit/errors.h"

namespace cnnkit {

// Every size of one convolution. Build it with make_conv2d_params, which
// validates the shapes and computes out_h/out_w; kernels trust it.
struct Conv2dParams {
  int64_t batch = 0, in_channels = 0, in_h = 0, in_w = 0;
  int64_t out_channels = 0, kernel_h = 0, kernel_w = 0;
  int64_t groups = 1;
  int64_t stride_h = 1, stride_w = 1;
  // Asymmetric padding: padding="same" with an even effective kernel puts the extra row/column
  // at the bottom/right.
  int64_t pad_top = 0, pad_bottom = 0, pad_left = 0, pad_right = 0;
  int64_t dilation_h = 1, dilation_w = 1;
  int64_t out_h = 0, out_w = 0;

  int64_t group_in_channels() const { return in_channels / groups; }
  int64_t group_out_channels() const { return out_channels / groups; }
  // Reduction length of the forward pass: one output sums this many products.
  int64_t reduction() const { return group_in_channels() * kernel_h * kernel_w; }
  int64_t out_plane() const { return out_h * out_w; }
  int64_t in_plane() const { return in_h * in_w; }
  // The zero-padded input, as kernels that copy it into a buffer see it. The
  // extents fit in int64 (make_conv2d_params checks); their product may not,
  // and saturates: such a plane exceeds every kernel's buffer bound.
  int64_t padded_h() const { return in_h + pad_top + pad_bottom; }
  int64_t padded_w() const { return in_w + pad_left + pad_right; }
  int64_t padded_plane() const { return saturating_mul(padded_h(), padded_w()); }
};

// Validates and completes the parameters. Throws Value errors for bad
// parameters (naming them and the shapes involved) and Overflow errors when a
// size a kernel forms (padded extents, planes, element counts, the column
// matrix) does not fit in int64. A stride longer than the padded input (one
// output along that axis) is clamped to that length, so no kernel multiplies
// by a stride near 2^63.
Conv2dParams make_conv2d_params(int64_t batch, int64_t in_channels, int64_t in_h, int64_t in_w,
                                int64_t out_channels, int64_t weight_in_channels,
                                int64_t kernel_h, int64_t kernel_w, int64_t groups,
                                int64_t stride_h, int64_t stride_w, int64_t pad_top,
                                int64_t pad_bottom, int64_t pad_left, int64_t pad_right,
                                int64_t dilation_h, int64_t dilation_w);

// Auto picks per call (see dispatch.cpp); Reference forces the naive loops.
enum class ConvAlgo { Auto, Direct, Im2col, Reference };
// Parses "auto", "direct", "im2col" or "reference"; Value error otherwise.
ConvAlgo parse_conv_algo(const char* name);

// y[N, out, out_h, out_w] = conv(x, w) + bias (bias may be null).
void conv2d_forward(const Conv2dParams& p, const float* x, const float* w, const float* bias,
                    float* y, ConvAlgo algo);

// Gradients of conv2d_forward given dy; each output pointer may be null to
// skip that gradient. dx, dw and db are overwritten, not accumulated into.
void conv2d_backward(const Conv2dParams& p, const float* dy, const float* x, const float* w,
                     float* dx, float* dw, float* db, ConvAlgo algo);

// The implementations algo="auto" chooses among for this call (timed when
// autotuning, autotune.h), the heuristic's pick first.
std::vector<std::string> conv2d_candidates(const Conv2dParams& p, bool backward);
// Runs the named candidate (one of conv2d_candidates); a Value error names the
// candidates otherwise.
void conv2d_forward_candidate(const Conv2dParams& p, const char* impl, const float* x, const float* w,
                              const float* bias, float* y);
void conv2d_backward_candidate(const Conv2dParams& p, const char* impl, const float* dy, const float* x,
                               const float* w, float* dx, float* dw, float* db);

// Names of the implementations conv2d_forward / conv2d_backward would run now
// (for algo="auto": the cached winner, else the heuristic's pick; a backward
// as a layer asks it, every gradient).
const char* conv2d_forward_implementation(const Conv2dParams& p, ConvAlgo algo);
const char* conv2d_backward_implementation(const Conv2dParams& p, ConvAlgo algo);

}  // namespace cnnkit
