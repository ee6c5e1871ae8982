// The definition of conv2d and its gradients: one sum per output element, in
// double, straight from the formula. Slow, obviously correct, accepts every call.
#include "cpu/conv/kernels.h"

namespace cnnkit {
namespace {

// x[n, c, ih, iw] with zero padding: taps outside the input contribute nothing.
bool inside(const Conv2dParams& p, int64_t ih, int64_t iw) {
  return ih >= 0 && ih < p.in_h && iw >= 0 && iw < p.in_w;
}

}  // namespace

CNNKIT_CONV2D_FORWARD_SIGNATURE(conv2d_forward_reference) {
  const int64_t cg = p.group_in_channels(), kg = p.group_out_channels();
  for (int64_t n = 0; n < p.batch; ++n) {
    for (int64_t o = 0; o < p.out_channels; ++o) {
      const int64_t c0 = o / kg * cg;
      for (int64_t oh = 0; oh < p.out_h; ++oh) {
        for (int64_t ow = 0; ow < p.out_w; ++ow) {
          double acc = bias != nullptr ? bias[o] : 0.0;
          for (int64_t c = 0; c < cg; ++c) {
            for (int64_t r = 0; r < p.kernel_h; ++r) {
              for (int64_t s = 0; s < p.kernel_w; ++s) {
                const int64_t ih = oh * p.stride_h - p.pad_top + r * p.dilation_h;
                const int64_t iw = ow * p.stride_w - p.pad_left + s * p.dilation_w;
                if (!inside(p, ih, iw)) continue;
                acc += double(x[((n * p.in_channels + c0 + c) * p.in_h + ih) * p.in_w + iw]) *
                       double(w[((o * cg + c) * p.kernel_h + r) * p.kernel_w + s]);
              }
            }
          }
          y[((n * p.out_channels + o) * p.out_h + oh) * p.out_w + ow] = float(acc);
        }
      }
    }
  }
}

CNNKIT_CONV2D_BACKWARD_SIGNATURE(conv2d_backward_reference) {
  const int64_t cg = p.group_in_channels(), kg = p.group_out_channels();
  auto dy_at = [&](int64_t n, int64_t o, int64_t oh, int64_t ow) {
    return double(dy[((n * p.out_channels + o) * p.out_h + oh) * p.out_w + ow]);
  };
  if (dx != nullptr) {
    // dx[n, c, ih, iw] sums w * dy over every (o, r, s) whose tap reads (ih, iw).
    for (int64_t n = 0; n < p.batch; ++n) {
      for (int64_t c = 0; c < p.in_channels; ++c) {
        const int64_t g = c / cg;
        for (int64_t ih = 0; ih < p.in_h; ++ih) {
          for (int64_t iw = 0; iw < p.in_w; ++iw) {
            double acc = 0.0;
            for (int64_t o = g * kg; o < (g + 1) * kg; ++o) {
              for (int64_t r = 0; r < p.kernel_h; ++r) {
                for (int64_t s = 0; s < p.kernel_w; ++s) {
                  const int64_t th = ih + p.pad_top - r * p.dilation_h;
                  const int64_t tw = iw + p.pad_left - s * p.dilation_w;
                  if (th < 0 || tw < 0 || th % p.stride_h != 0 || tw % p.stride_w != 0) continue;
                  const int64_t oh = th / p.stride_h, ow = tw / p.stride_w;
                  if (oh >= p.out_h || ow >= p.out_w) continue;
                  acc += double(w[((o * cg + c - g * cg) * p.kernel_h + r) * p.kernel_w + s]) *
                         dy_at(n, o, oh, ow);
                }
              }
            }
            dx[((n * p.in_channels + c) * p.in_h + ih) * p.in_w + iw] = float(acc);
          }
        }
      }
    }
  }
  if (dw != nullptr) {
    for (int64_t o = 0; o < p.out_channels; ++o) {
      const int64_t c0 = o / kg * cg;
      for (int64_t c = 0; c < cg; ++c) {
        for (int64_t r = 0; r < p.kernel_h; ++r) {
          for (int64_t s = 0; s < p.kernel_w; ++s) {
            double acc = 0.0;
            for (int64_t n = 0; n < p.batch; ++n) {
              for (int64_t oh = 0; oh < p.out_h; ++oh) {
                for (int64_t ow = 0; ow < p.out_w; ++ow) {
                  const int64_t ih = oh * p.stride_h - p.pad_top + r * p.dilation_h;
                  const int64_t iw = ow * p.stride_w - p.pad_left + s * p.dilation_w;
                  if (!inside(p, ih, iw)) continue;
                  acc += double(x[((n * p.in_channels + c0 + c) * p.in_h + ih) * p.in_w + iw]) *
                         dy_at(n, o, oh, ow);
                }
              }
            }
            dw[((o * cg + c) * p.kernel_h + r) * p.kernel_w + s] = float(acc);
          }
        }
      }
    }
  }
  if (db != nullptr) {
    for (int64_t o = 0; o < p.out_channels; ++o) {
      double acc = 0.0;
      for (int64_t n = 0; n < p.batch; ++n) {
        for (int64_t oh = 0; oh < p.out_h; ++oh) {
          for (int64_t ow = 0; ow < p.out_w; ++ow) acc += dy_at(n, o, oh, ow);
        }
      }
      db[o] = float(acc);
    }
  }
}

}  // namespace cnnkit
