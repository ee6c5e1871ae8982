// Validation of conv2d parameters: every shape that reaches a conv kernel has passed here.
#include <algorithm>
#include <string>

#include "cnnkit/conv.h"
#include "cnnkit/errors.h"

namespace cnnkit {
namespace {

std::string str(int64_t v) { return std::to_string(v); }

struct Axis {
  int64_t out, stride;
};

// Output length along one axis (height or width), and the stride the kernels
// use for it. A stride longer than the padded input leaves one output and is
// never stepped: it is clamped to the padded length (at least 2, so that a
// strided call stays strided for the kernel choice), which keeps the kernels'
// stride * row products within the padded plane.
Axis axis_size(bool height, int64_t in, int64_t pad_before, int64_t pad_after, int64_t kernel,
               int64_t stride, int64_t dilation) {
  const char* axis = height ? "height" : "width";
  // Literals: a message built on every call would cost a small conv a visible share of its time.
  const char* padded_what =
      height ? "conv2d: padding plus the input height" : "conv2d: padding plus the input width";
  const char* span_what =
      height ? "conv2d: dilation times the kernel height" : "conv2d: dilation times the kernel width";
  const int64_t padded = checked_add(checked_add(in, pad_before, padded_what), pad_after, padded_what);
  const int64_t span = checked_add(checked_mul(dilation, kernel - 1, span_what), 1, span_what);
  if (span > padded) {
    fail(ErrorKind::Value,
         std::string("conv2d: kernel ") + axis + " " + str(span) + " (kernel " + str(kernel) +
             ", dilation " + str(dilation) + ") is larger than the padded input " + axis + " " +
             str(padded) + " (input " + str(in) + " + padding " + str(pad_before) + "+" +
             str(pad_after) + ")");
  }
  const int64_t out = (padded - span) / stride + 1;
  return {out, std::min(stride, std::max<int64_t>(padded, 2))};
}

}  // namespace

Conv2dParams make_conv2d_params(int64_t batch, int64_t in_channels, int64_t in_h, int64_t in_w,
                                int64_t out_channels, int64_t weight_in_channels,
                                int64_t kernel_h, int64_t kernel_w, int64_t groups,
                                int64_t stride_h, int64_t stride_w, int64_t pad_top,
                                int64_t pad_bottom, int64_t pad_left, int64_t pad_right,
                                int64_t dilation_h, int64_t dilation_w) {
  CNNKIT_CHECK(batch >= 0 && in_channels >= 0 && in_h >= 0 && in_w >= 0 && out_channels >= 0 &&
            weight_in_channels >= 0 && kernel_h >= 0 && kernel_w >= 0,
        ErrorKind::Value, "conv2d: sizes must be non-negative");
  CNNKIT_CHECK(groups > 0, ErrorKind::Value, "conv2d: groups must be positive, got " + str(groups));
  CNNKIT_CHECK(stride_h > 0 && stride_w > 0, ErrorKind::Value,
        "conv2d: stride must be positive, got (" + str(stride_h) + ", " + str(stride_w) + ")");
  CNNKIT_CHECK(dilation_h > 0 && dilation_w > 0, ErrorKind::Value,
        "conv2d: dilation must be positive, got (" + str(dilation_h) + ", " + str(dilation_w) + ")");
  CNNKIT_CHECK(pad_top >= 0 && pad_bottom >= 0 && pad_left >= 0 && pad_right >= 0, ErrorKind::Value,
        "conv2d: padding must be non-negative, got (top " + str(pad_top) + ", bottom " +
            str(pad_bottom) + ", left " + str(pad_left) + ", right " + str(pad_right) + ")");
  CNNKIT_CHECK(kernel_h > 0 && kernel_w > 0, ErrorKind::Value,
        "conv2d: weight kernel size must be positive, got " + str(kernel_h) + "x" + str(kernel_w));
  CNNKIT_CHECK(in_channels % groups == 0, ErrorKind::Value,
        "conv2d: groups=" + str(groups) + " does not divide the input's " + str(in_channels) +
            " channels");
  CNNKIT_CHECK(out_channels % groups == 0, ErrorKind::Value,
        "conv2d: groups=" + str(groups) + " does not divide the weight's " + str(out_channels) +
            " output channels");
  CNNKIT_CHECK(in_channels == checked_mul(weight_in_channels, groups, "conv2d channels"), ErrorKind::Value,
        "conv2d: input has " + str(in_channels) + " channels but weight.shape[1]=" +
            str(weight_in_channels) + " with groups=" + str(groups) + " expects " +
            str(weight_in_channels * groups));

  Conv2dParams p;
  p.batch = batch;
  p.in_channels = in_channels;
  p.in_h = in_h;
  p.in_w = in_w;
  p.out_channels = out_channels;
  p.kernel_h = kernel_h;
  p.kernel_w = kernel_w;
  p.groups = groups;
  p.pad_top = pad_top;
  p.pad_bottom = pad_bottom;
  p.pad_left = pad_left;
  p.pad_right = pad_right;
  p.dilation_h = dilation_h;
  p.dilation_w = dilation_w;
  const Axis h = axis_size(true, in_h, pad_top, pad_bottom, kernel_h, stride_h, dilation_h);
  const Axis w = axis_size(false, in_w, pad_left, pad_right, kernel_w, stride_w, dilation_w);
  p.out_h = h.out;
  p.stride_h = h.stride;
  p.out_w = w.out;
  p.stride_w = w.stride;

  // Every product a kernel forms from these sizes must fit in int64 (and in
  // bytes). Each factor is checked on its own: with a 0 elsewhere the total
  // would not catch it.
  checked_mul(in_h, in_w, "conv2d: input height times width");
  checked_mul(p.out_h, p.out_w, "conv2d: output height times width");
  const int64_t taps = checked_mul(kernel_h, kernel_w, "conv2d: kernel height times width");
  checked_mul(checked_mul(weight_in_channels, taps, "conv2d: weight size"), 4, "conv2d: weight bytes");
  checked_mul(checked_mul(checked_mul(batch, out_channels, "conv2d: output size"), p.out_plane(),
                          "conv2d: output size"),
              4, "conv2d: output bytes");
  checked_mul(checked_mul(checked_mul(batch, in_channels, "conv2d: input size"), p.in_plane(),
                          "conv2d: input size"),
              4, "conv2d: input bytes");
  checked_mul(checked_mul(out_channels, p.reduction(), "conv2d: weight size"), 4, "conv2d: weight bytes");
  // The column matrix of one image and one group: reduction x output positions.
  checked_mul(checked_mul(p.reduction(), p.out_plane(), "conv2d: column size"), 4, "conv2d: column bytes");
  return p;
}

}  // namespace cnnkit
