// Validation of conv2d parameters: every shape that reaches a conv kernel has passed here.
#include <limits>
#include <string>

#include "cnnkit/conv.h"
#include "cnnkit/errors.h"

namespace cnnkit {
namespace {

std::string str(int64_t v) { return std::to_string(v); }

int64_t checked_add(int64_t a, int64_t b, const char* what) {
  if (b > 0 && a > std::numeric_limits<int64_t>::max() - b) {
    fail(ErrorKind::Overflow, std::string(what) + ": size overflows 64-bit integers");
  }
  return a + b;
}

// Output length along one axis; `axis` is "height" or "width" for the messages.
int64_t output_size(const char* axis, int64_t in, int64_t pad_before, int64_t pad_after,
                    int64_t kernel, int64_t stride, int64_t dilation) {
  const int64_t padded =
      checked_add(checked_add(in, pad_before, "conv2d padded input"), pad_after, "conv2d padded input");
  const int64_t span =
      checked_add(checked_mul(dilation, kernel - 1, "conv2d dilated kernel"), 1, "conv2d dilated kernel");
  if (span > padded) {
    fail(ErrorKind::Value,
         std::string("conv2d: kernel ") + axis + " " + str(span) + " (kernel " + str(kernel) +
             ", dilation " + str(dilation) + ") is larger than the padded input " + axis + " " +
             str(padded) + " (input " + str(in) + " + padding " + str(pad_before) + "+" +
             str(pad_after) + ")");
  }
  return (padded - span) / stride + 1;
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
  p.stride_h = stride_h;
  p.stride_w = stride_w;
  p.pad_top = pad_top;
  p.pad_bottom = pad_bottom;
  p.pad_left = pad_left;
  p.pad_right = pad_right;
  p.dilation_h = dilation_h;
  p.dilation_w = dilation_w;
  p.out_h = output_size("height", in_h, pad_top, pad_bottom, kernel_h, stride_h, dilation_h);
  p.out_w = output_size("width", in_w, pad_left, pad_right, kernel_w, stride_w, dilation_w);

  // Every product a kernel forms from these sizes must fit in int64 (and in bytes).
  int64_t out_count = checked_mul(checked_mul(batch, out_channels, "conv2d output size"),
                                  checked_mul(p.out_h, p.out_w, "conv2d output size"),
                                  "conv2d output size");
  checked_mul(out_count, 4, "conv2d output bytes");
  const int64_t in_count = checked_mul(checked_mul(batch, in_channels, "conv2d input size"),
                                       checked_mul(in_h, in_w, "conv2d input size"),
                                       "conv2d input size");
  checked_mul(in_count, 4, "conv2d input bytes");
  const int64_t w_count = checked_mul(checked_mul(out_channels, weight_in_channels, "conv2d weight size"),
                                      checked_mul(kernel_h, kernel_w, "conv2d weight size"),
                                      "conv2d weight size");
  checked_mul(w_count, 4, "conv2d weight bytes");
  // The column matrix of one image and one group: reduction x output positions.
  checked_mul(checked_mul(p.reduction(), p.out_plane(), "conv2d column size"), 4,
              "conv2d column bytes");
  return p;
}

}  // namespace cnnkit
