// Validation shared by every pooling implementation: output size, parameter
// bounds and the indices handed back to max_pool2d_backward.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <string>

#include "cnnkit/errors.h"
#include "cnnkit/pool.h"
#include "core/parallel.h"
#include "cpu/pool/kernels.h"

namespace cnnkit {
namespace {

std::string pair_str(int64_t a, int64_t b) {
  return "(" + std::to_string(a) + ", " + std::to_string(b) + ")";
}

// PyTorch's pooling_output_shape: floor or ceil division, and with ceil_mode a
// last window that would start in the right/bottom padding is dropped. Written
// without span + stride - 1 and (out - 1) * stride, which wrap for strides
// near 2^63: ceil(a / s) = (a - 1) / s + 1 for a > 0, and (out - 1) * stride
// >= in + pad exactly when out - 1 >= ceil((in + pad) / stride).
int64_t output_size(int64_t in, int64_t effective_kernel, int64_t stride, int64_t pad,
                    bool ceil_mode) {
  const int64_t span = in + 2 * pad - effective_kernel;  // >= 0, checked by the caller
  if (!ceil_mode) return span / stride + 1;
  int64_t out = (span == 0 ? 0 : (span - 1) / stride + 1) + 1;
  if (out - 1 >= (in + pad - 1) / stride + 1) --out;  // in + pad > 0: the caller has in > 0
  return out;
}

// A stride longer than the padded input leaves one window and is never
// stepped: clamped to that length (at least 2, so a strided call stays
// strided), it keeps the kernels' products of it (o * stride, their interior
// bounds) far from wrapping.
int64_t effective_stride(int64_t stride, int64_t padded) {
  return std::min(stride, std::max<int64_t>(padded, 2));
}

// With dilation a window that starts in the top/left padding can step over the
// whole input (e.g. in = 1, kernel 2, dilation 3, padding 2). Only windows that
// start before 0 can be empty: every other one starts inside the input.
bool has_window_in_padding_only(int64_t in, int64_t out, int64_t kernel, int64_t stride,
                                int64_t pad, int64_t dilation) {
  for (int64_t o = 0; o < out; ++o) {
    const int64_t start = o * stride - pad;
    if (start >= 0) break;
    const int64_t skipped = (-start + dilation - 1) / dilation;
    if (skipped >= kernel || start + skipped * dilation >= in) return true;
  }
  return false;
}

}  // namespace

Pool2dShape make_pool2d_shape(const char* op, int64_t planes, int64_t in_h, int64_t in_w,
                              int64_t kernel_h, int64_t kernel_w, int64_t stride_h,
                              int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t dilation_h,
                              int64_t dilation_w, bool ceil_mode) {
  const std::string name(op);
  CNNKIT_CHECK(planes >= 0 && in_h >= 0 && in_w >= 0, ErrorKind::Value, name + ": negative input size");
  CNNKIT_CHECK(kernel_h >= 1 && kernel_w >= 1, ErrorKind::Value,
        name + ": kernel_size must be >= 1, got " + pair_str(kernel_h, kernel_w));
  CNNKIT_CHECK(stride_h >= 1 && stride_w >= 1, ErrorKind::Value,
        name + ": stride must be >= 1, got " + pair_str(stride_h, stride_w));
  CNNKIT_CHECK(dilation_h >= 1 && dilation_w >= 1, ErrorKind::Value,
        name + ": dilation must be >= 1, got " + pair_str(dilation_h, dilation_w));
  CNNKIT_CHECK(pad_h >= 0 && pad_w >= 0, ErrorKind::Value,
        name + ": padding must be >= 0, got " + pair_str(pad_h, pad_w));
  // The average's divisor counts a window's taps.
  CNNKIT_CHECK(kernel_h <= INT64_MAX / kernel_w, ErrorKind::Overflow,
        name + ": kernel_size " + pair_str(kernel_h, kernel_w) +
            " has more taps than 64-bit integers count");
  const char* eff_what = "pooling: dilation times kernel_size";
  const int64_t eff_h = checked_add(checked_mul(kernel_h - 1, dilation_h, eff_what), 1, eff_what);
  const int64_t eff_w = checked_add(checked_mul(kernel_w - 1, dilation_w, eff_what), 1, eff_what);
  // PyTorch's CPU check uses the kernel size, not the dilated extent.
  CNNKIT_CHECK(pad_h <= kernel_h / 2 && pad_w <= kernel_w / 2, ErrorKind::Value,
        name + ": padding " + pair_str(pad_h, pad_w) +
            " should be at most half of kernel_size " + pair_str(kernel_h, kernel_w));
  // pad <= kernel / 2 <= eff / 2, so in + 2 * pad cannot overflow once in + eff does not.
  CNNKIT_CHECK(in_h <= INT64_MAX - eff_h && in_w <= INT64_MAX - eff_w, ErrorKind::Overflow,
        name + ": input size overflows 64-bit integers");

  Pool2dShape s{planes, in_h, in_w, 0, 0, kernel_h, kernel_w, stride_h, stride_w,
                pad_h,  pad_w, dilation_h, dilation_w};
  if (in_h > 0) {
    CNNKIT_CHECK(in_h + 2 * pad_h >= eff_h, ErrorKind::Value,
          name + ": effective kernel height " + std::to_string(eff_h) +
              " is larger than the padded input height " + std::to_string(in_h + 2 * pad_h));
    s.out_h = output_size(in_h, eff_h, stride_h, pad_h, ceil_mode);
  }
  if (in_w > 0) {
    CNNKIT_CHECK(in_w + 2 * pad_w >= eff_w, ErrorKind::Value,
          name + ": effective kernel width " + std::to_string(eff_w) +
              " is larger than the padded input width " + std::to_string(in_w + 2 * pad_w));
    s.out_w = output_size(in_w, eff_w, stride_w, pad_w, ceil_mode);
  }
  s.stride_h = effective_stride(stride_h, in_h + 2 * pad_h);
  s.stride_w = effective_stride(stride_w, in_w + 2 * pad_w);
  CNNKIT_CHECK(!has_window_in_padding_only(in_h, s.out_h, kernel_h, stride_h, pad_h, dilation_h) &&
            !has_window_in_padding_only(in_w, s.out_w, kernel_w, stride_w, pad_w, dilation_w),
        ErrorKind::Value,
        name + ": with kernel_size " + pair_str(kernel_h, kernel_w) + ", dilation " +
            pair_str(dilation_h, dilation_w) + " and padding " + pair_str(pad_h, pad_w) +
            " a window covers only padding of the " + pair_str(in_h, in_w) + " input");
  return s;
}

void check_pool_indices(const Pool2dShape& s, const int64_t* indices) {
  const int64_t plane = s.in_h * s.in_w;
  const int64_t count = s.planes * s.out_h * s.out_w;
  // Scanned in parallel without throwing inside the region; the first bad
  // position is looked up serially only when there is one.
  std::atomic<bool> bad{false};
  parallel_for(count, 1, [&](int64_t begin, int64_t end) {
    bool local = false;
    for (int64_t i = begin; i < end; ++i) local |= indices[i] < 0 || indices[i] >= plane;
    if (local) bad.store(true, std::memory_order_relaxed);
  });
  if (!bad) return;
  for (int64_t i = 0; i < count; ++i) {
    if (indices[i] < 0 || indices[i] >= plane) {
      fail(ErrorKind::Index, "max_pool2d_backward: indices[" + std::to_string(i) + "] = " +
                                 std::to_string(indices[i]) + " is outside the " +
                                 std::to_string(s.in_h) + "x" + std::to_string(s.in_w) +
                                 " input plane");
    }
  }
}

}  // namespace cnnkit
