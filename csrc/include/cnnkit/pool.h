// 2-D max and average pooling on NCHW float32 planes, forward and backward.
// Semantics follow PyTorch (torch.nn.functional.max_pool2d / avg_pool2d).
#pragma once
#include <cstdint>

namespace cnnkit {

// The geometry of one pooling call, validated by make_pool2d_shape: kernels
// only ever see shapes that passed its checks.
struct Pool2dShape {
  int64_t planes;  // N * C: every plane is pooled independently
  int64_t in_h, in_w;
  int64_t out_h, out_w;
  int64_t kernel_h, kernel_w;
  int64_t stride_h, stride_w;
  int64_t pad_h, pad_w;
  int64_t dilation_h, dilation_w;
};

// Checks the parameters (kernel, stride, dilation >= 1; padding >= 0 and at
// most half the kernel size, as PyTorch's CPU check; the kernel fits the padded input; no window
// lies entirely in the padding) and computes the output size, PyTorch's way:
// with ceil_mode the last window may overhang the padding but is dropped when
// it would start in the right/bottom padding. An input with H == 0 (W == 0)
// gives an output with out_h == 0 (out_w == 0): every window would be padding.
// `op` names the operation in error messages. Throws cnnkit::Error.
Pool2dShape make_pool2d_shape(const char* op, int64_t planes, int64_t in_h, int64_t in_w,
                              int64_t kernel_h, int64_t kernel_w, int64_t stride_h,
                              int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t dilation_h,
                              int64_t dilation_w, bool ceil_mode);

// out[p, oh, ow] = the maximum of the window; NaN wins (the last NaN scanned in
// row-major window order), ties keep the first maximum. `indices` (may be null)
// receives h * in_w + w of the chosen element within its plane.
void max_pool2d(const Pool2dShape& s, const float* input, float* out, int64_t* indices);

// grad_input = 0, then grad_input[p].flat[indices[p, o]] += grad_out[p, o].
// Every index must lie in [0, in_h * in_w): checked before anything is written
// (Index error otherwise).
void max_pool2d_backward(const Pool2dShape& s, const float* grad_out, const int64_t* indices,
                         float* grad_input);

// The window sum divided by: with count_include_pad, the window clipped to the
// padded input (H + pad, so a ceil_mode overhang is not counted); without it,
// the number of input elements in the window. Dilation must be 1.
void avg_pool2d(const Pool2dShape& s, bool count_include_pad, const float* input, float* out);
void avg_pool2d_backward(const Pool2dShape& s, bool count_include_pad, const float* grad_out,
                         float* grad_input);

// The plain loop versions that define the ops above (serial; for tests).
void max_pool2d_reference(const Pool2dShape& s, const float* input, float* out, int64_t* indices);
void max_pool2d_backward_reference(const Pool2dShape& s, const float* grad_out,
                                   const int64_t* indices, float* grad_input);
void avg_pool2d_reference(const Pool2dShape& s, bool count_include_pad, const float* input,
                          float* out);
void avg_pool2d_backward_reference(const Pool2dShape& s, bool count_include_pad,
                                   const float* grad_out, float* grad_input);

// Name of the implementation the pooling ops use now (for build_info and tests).
const char* pool2d_implementation();

// Adaptive average pooling: output (i, j) is the mean of rows
// [floor(i H / out_h), ceil((i + 1) H / out_h)) and the columns likewise, as
// PyTorch's adaptive_avg_pool2d. Sums run in double. in_h, in_w, out_h, out_w >= 1.
struct AdaptivePoolShape {
  int64_t planes = 0;  // N * C
  int64_t in_h = 1, in_w = 1;
  int64_t out_h = 1, out_w = 1;
};
void adaptive_avg_pool2d(const AdaptivePoolShape& s, const float* input, float* out);
// grad_input = the sum, over the windows holding each element, of grad_out / window size.
void adaptive_avg_pool2d_backward(const AdaptivePoolShape& s, const float* grad_out,
                                  float* grad_input);
// The plain loops that define the two above (serial; for tests).
void adaptive_avg_pool2d_reference(const AdaptivePoolShape& s, const float* input, float* out);
void adaptive_avg_pool2d_backward_reference(const AdaptivePoolShape& s, const float* grad_out,
                                            float* grad_input);
// Name of the implementation adaptive_avg_pool2d would use now.
const char* adaptive_pool2d_implementation();

}  // namespace cnnkit
