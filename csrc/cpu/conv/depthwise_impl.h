// Depthwise convolution (one input channel per group, any channel multiplier,
// stride, dilation and padding), forward and backward, vectorised along the
// output rows; included by one file per ISA.
//
// Each input plane is copied once into a zero-padded buffer whose rows are
// split into stride_w phases: phase q of a padded row holds its columns q,
// q + sw, q + 2 sw, ... Output column ow reads, for tap s, padded column
// ow * sw + s * dw, which is element ow + (s * dw) / sw of phase
// (s * dw) % sw. So for every tap consecutive outputs read consecutive floats
// and one unaligned load feeds a vector of outputs, at any stride. Rows need
// no splitting: output row oh reads padded rows oh * sh + r * dh.
//
// A register tile holds QR output rows x NV vectors of one output channel;
// each tap's weight is broadcast once for the whole tile, and the rows give
// the FMA chains (one per accumulator, R * S long) independent neighbours.
//
// The backward: dx gathers, per phase of each input row, the dy rows and
// columns that reach it (depthwise_input_grad); dw sums dy rows times the
// buffer's phase rows, per output channel over every image in a fixed order
// (the result does not depend on the thread count). Zero padding is read as
// 0 * w, as im2col does.
//
// Vec must provide kWidth, F, set1, zero, load, load_partial, store,
// store_partial, fma and sum.
#pragma once
#include <cstdint>
#include <cstring>

#include "cnnkit/errors.h"
#include "core/parallel.h"
#include "core/workspace.h"
#include "cpu/conv/kernels.h"
#include "cpu/conv/tile_size.h"

namespace cnnkit {
namespace {

struct PhaseRows {
  int64_t phase_len;  // floats per phase of a padded row
  int64_t row_len;    // floats per padded row: stride_w phases
  int64_t floats;     // the whole padded plane, with one tile of slack
};

PhaseRows phase_rows(const Conv2dParams& p, int64_t slack) {
  const int64_t wp = p.in_w + p.pad_left + p.pad_right;
  const int64_t phase_len = (wp + p.stride_w - 1) / p.stride_w;
  const int64_t rows = p.in_h + p.pad_top + p.pad_bottom;
  return {phase_len, phase_len * p.stride_w, rows * phase_len * p.stride_w + slack};
}

// Padded column c of row `row` in the phase layout.
inline float* phase_at(const Conv2dParams& p, const PhaseRows& l, float* row, int64_t c) {
  return row + c % p.stride_w * l.phase_len + c / p.stride_w;
}

// Copies plane x into the interior of buf (the padding is left as it is: zero).
void copy_to_phases(const Conv2dParams& p, const PhaseRows& l, const float* x, float* buf) {
  for (int64_t ih = 0; ih < p.in_h; ++ih) {
    float* row = buf + (ih + p.pad_top) * l.row_len;
    const float* xr = x + ih * p.in_w;
    if (p.stride_w == 1) {
      std::memcpy(row + p.pad_left, xr, static_cast<size_t>(p.in_w) * sizeof(float));
      continue;
    }
    for (int64_t q = 0; q < p.stride_w; ++q) {
      // Input columns whose padded column is congruent to q.
      const int64_t first = ((q - p.pad_left) % p.stride_w + p.stride_w) % p.stride_w;
      float* dst = phase_at(p, l, row, first + p.pad_left);
      const int64_t count = first < p.in_w ? (p.in_w - first + p.stride_w - 1) / p.stride_w : 0;
      // A scalar loop at stride 2 was a third of a stride-2 weight gradient.
      gather_strided(xr + first, p.stride_w, dst, count);
    }
  }
}

// taps[r * kw + s]: the offset of tap (r, s) from the start of padded row
// oh * sh in the phase layout.
void tap_offsets(const Conv2dParams& p, const PhaseRows& l, int64_t* taps) {
  for (int64_t r = 0; r < p.kernel_h; ++r) {
    for (int64_t s = 0; s < p.kernel_w; ++s) {
      const int64_t c = s * p.dilation_w;
      taps[r * p.kernel_w + s] = r * p.dilation_h * l.row_len + c % p.stride_w * l.phase_len + c / p.stride_w;
    }
  }
}

// Output rows oh .. oh + QR - 1, vectors [ow0, ow0 + NV * L) of one channel.
template <class Vec, int QR, int NV>
void depthwise_tile(const Conv2dParams& p, const PhaseRows& l, const float* buf, const int64_t* taps,
                    const float* w, float b, int64_t oh, int64_t ow0, float* y) {
  using V = typename Vec::F;
  constexpr int64_t L = Vec::kWidth;
  const int64_t rs = p.kernel_h * p.kernel_w, Wo = p.out_w;
  const int64_t step = p.stride_h * l.row_len;
  const float* base = buf + oh * step + ow0;
  V acc[QR][NV];
  for (int q = 0; q < QR; ++q)
    for (int v = 0; v < NV; ++v) acc[q][v] = Vec::set1(b);
  for (int64_t t = 0; t < rs; ++t) {
    const V wv = Vec::set1(w[t]);
    const float* src = base + taps[t];
    for (int q = 0; q < QR; ++q)
      for (int v = 0; v < NV; ++v) acc[q][v] = Vec::fma(wv, Vec::load(src + q * step + v * L), acc[q][v]);
  }
  for (int q = 0; q < QR; ++q) {
    float* yq = y + (oh + q) * Wo + ow0;
    for (int v = 0; v < NV; ++v) {
      const int64_t n = Wo - ow0 - v * L;
      if (n >= L) {
        Vec::store(yq + v * L, acc[q][v]);
      } else {
        Vec::store_partial(yq + v * L, acc[q][v], n);
      }
    }
  }
}

template <class Vec, int QR, int NV>
void conv2d_forward_depthwise(const Conv2dParams& p, const float* x, const float* w, const float* bias, float* y) {
  constexpr int64_t L = Vec::kWidth;
  const int64_t kg = p.out_channels / p.groups, rs = p.kernel_h * p.kernel_w;
  const int64_t Ho = p.out_h, Wo = p.out_w, planes = p.batch * p.groups;
  // Loads run up to a tile past the last output column: slack at the end.
  const PhaseRows l = phase_rows(p, NV * L);
  parallel_for(planes, kg * Ho * Wo * rs, [&](int64_t begin, int64_t end) {
    float* buf = thread_workspace(WorkspaceSlot::Scratch0, static_cast<size_t>(l.floats));
    std::memset(buf, 0, static_cast<size_t>(l.floats) * sizeof(float));
    int64_t taps[kDirectRowsMaxTaps];
    tap_offsets(p, l, taps);
    for (int64_t plane = begin; plane < end; ++plane) {
      copy_to_phases(p, l, x + plane * p.in_h * p.in_w, buf);
      const int64_t n = plane / p.groups, g = plane % p.groups;
      for (int64_t o = g * kg; o < (g + 1) * kg; ++o) {
        float* yo = y + (n * p.out_channels + o) * Ho * Wo;
        const float b = bias != nullptr ? bias[o] : 0.0f;
        for (int64_t oh = 0; oh < Ho; oh += QR) {
          for (int64_t ow0 = 0; ow0 < Wo; ow0 += NV * L) {
            with_tile_size<QR>(static_cast<int>(Ho - oh), [&](auto q) {
              with_tile_size<NV>(static_cast<int>((Wo - ow0 + L - 1) / L), [&](auto v) {
                depthwise_tile<Vec, decltype(q)::value, decltype(v)::value>(p, l, buf, taps, w + o * rs, b, oh, ow0,
                                                                            yo);
              });
            });
          }
        }
      }
    }
  });
}

// Kernel taps 0 .. count-1 along one axis (dilation d) grouped by their phase
// modulo the stride: tap[first[q] .. first[q + 1]) are those with
// k * d % stride == q, in order, each with shift k * d / stride.
struct TapsByPhase {
  int64_t tap[kDirectRowsMaxTaps], shift[kDirectRowsMaxTaps], first[kDirectRowsMaxTaps + 1];
  TapsByPhase(int64_t count, int64_t dilation, int64_t stride) {
    int64_t n = 0;
    for (int64_t q = 0; q < stride; ++q) {
      first[q] = n;
      for (int64_t k = 0; k < count; ++k) {
        if (k * dilation % stride == q) {
          tap[n] = k;
          shift[n++] = k * dilation / stride;
        }
      }
    }
    first[stride] = n;
  }
};

// dx of one input plane, gathered: padded input column c = q + j * sw (phase
// q) receives w[r][s] * dy[..][j - s * dw / sw] from the taps with
// s * dw % sw == q, and padded row qr + i * sh receives dy row
// i - r * dh / sh from the rows with r * dh % sh == qr. For each (row, phase)
// that is a real input row and phase, the sum runs over vectors of j, reading
// dy rows copied into a zero-padded buffer (M zeros before each row, zeros
// after), so every tap is one unaligned load per vector: no scatter, no
// read-modify-write of dx.
template <class Vec, int NV>
void depthwise_input_grad(const Conv2dParams& p, const float* dy, const float* w, float* dx) {
  using V = typename Vec::F;
  constexpr int64_t L = Vec::kWidth;
  const int64_t kg = p.out_channels / p.groups, R = p.kernel_h, S = p.kernel_w, rs = R * S;
  const int64_t Ho = p.out_h, Wo = p.out_w, planes = p.batch * p.groups;
  const int64_t sw = p.stride_w, sh = p.stride_h;
  const PhaseRows l = phase_rows(p, 0);
  const int64_t lead = (S - 1) * p.dilation_w / sw;  // zeros before each dy row
  // Each padded dy row: lead zeros, the row, zeros up to a phase's length, a vector of slack.
  const int64_t dy_row = lead + (Wo > l.phase_len ? Wo : l.phase_len) + NV * L;
  const int64_t dy_floats = kg * Ho * dy_row;
  // Padded column q + j * sw takes the kernel columns cols.tap[cols.first[q] ..
  // cols.first[q + 1]), each from dy column j - its shift; rows likewise.
  const TapsByPhase cols(S, p.dilation_w, sw), rows_by_phase(R, p.dilation_h, sh);
  // Each phase's sums for one input row, at out + q * out_len.
  const int64_t out_len = l.phase_len + NV * L;
  parallel_for(planes, kg * Ho * Wo * rs, [&](int64_t begin, int64_t end) {
    float* dyp = thread_workspace(WorkspaceSlot::Scratch0, static_cast<size_t>(dy_floats));
    float* out = thread_workspace(WorkspaceSlot::Scratch1, static_cast<size_t>(sw * out_len));
    std::memset(dyp, 0, static_cast<size_t>(dy_floats) * sizeof(float));
    int64_t row_r[kDirectRowsMaxTaps], row_dy[kDirectRowsMaxTaps];
    for (int64_t plane = begin; plane < end; ++plane) {
      const int64_t n = plane / p.groups, g = plane % p.groups;
      for (int64_t k = 0; k < kg; ++k) {
        const float* dyo = dy + (n * p.out_channels + g * kg + k) * Ho * Wo;
        for (int64_t oh = 0; oh < Ho; ++oh) {
          std::memcpy(dyp + (k * Ho + oh) * dy_row + lead, dyo + oh * Wo, static_cast<size_t>(Wo) * sizeof(float));
        }
      }
      float* dxp = dx + plane * p.in_h * p.in_w;
      for (int64_t ih = 0; ih < p.in_h; ++ih) {
        // The kernel rows that reach padded row ih + pad_top, and the dy row each reads.
        const int64_t rho = ih + p.pad_top, qr = rho % sh;
        int64_t rows = 0;
        for (int64_t t = rows_by_phase.first[qr]; t < rows_by_phase.first[qr + 1]; ++t) {
          const int64_t oh = rho / sh - rows_by_phase.shift[t];
          if (oh >= 0 && oh < Ho) {
            row_r[rows] = rows_by_phase.tap[t];
            row_dy[rows++] = oh;
          }
        }
        float* dxr = dxp + ih * p.in_w;
        for (int64_t q = 0; q < sw; ++q) {
          float* outq = out + q * out_len;
          // Phase q's elements j that are real input columns: iw = q + j * sw - pad_left in [0, in_w).
          const int64_t j_lo = q >= p.pad_left ? 0 : (p.pad_left - q + sw - 1) / sw;
          const int64_t j_hi = (p.in_w + p.pad_left - q + sw - 1) / sw;  // exclusive
          if (j_lo >= j_hi) continue;
          for (int64_t j0 = j_lo; j0 < j_hi; j0 += NV * L) {
            with_tile_size<NV>(static_cast<int>((j_hi - j0 + L - 1) / L), [&](auto nv_c) {
              constexpr int nv = decltype(nv_c)::value;
              V acc[nv];
              for (int v = 0; v < nv; ++v) acc[v] = Vec::zero();
              for (int64_t k = 0; k < kg; ++k) {
                const float* wk = w + (g * kg + k) * rs;
                for (int64_t i = 0; i < rows; ++i) {
                  const float* src = dyp + (k * Ho + row_dy[i]) * dy_row + lead + j0;
                  const float* wr = wk + row_r[i] * S;
                  for (int64_t t = cols.first[q]; t < cols.first[q + 1]; ++t) {
                    const V wv = Vec::set1(wr[cols.tap[t]]);
                    for (int v = 0; v < nv; ++v) acc[v] = Vec::fma(wv, Vec::load(src - cols.shift[t] + v * L), acc[v]);
                  }
                }
              }
              for (int v = 0; v < nv; ++v) Vec::store(outq + j0 + v * L, acc[v]);
            });
          }
        }
        // Input column iw is element (iw + pad_left) / sw of phase (iw + pad_left) % sw.
        if (sw == 2) {
          // Interleaved: columns 2k and 2k + 1 from the two phases (a loop the compiler vectorises).
          const float* even = out + (p.pad_left % 2) * out_len + p.pad_left / 2;
          const float* odd = out + ((p.pad_left + 1) % 2) * out_len + (p.pad_left + 1) / 2;
          const int64_t pairs = p.in_w / 2;
          for (int64_t k = 0; k < pairs; ++k) {
            dxr[2 * k] = even[k];
            dxr[2 * k + 1] = odd[k];
          }
          if (p.in_w % 2 != 0) dxr[p.in_w - 1] = even[pairs];
        } else {
          for (int64_t iw = 0; iw < p.in_w; ++iw) {
            const int64_t c = iw + p.pad_left;
            dxr[iw] = out[c % sw * out_len + c / sw];
          }
        }
      }
    }
  });
}

// dw[o][t] = sum over images and output positions of dy * the input the tap
// reads. The sums of a block of TB taps stay in registers over a whole image
// (each dy vector loaded once for the block), and in `acc` between images.
template <class Vec, int TB>
void depthwise_weight_grad_taps(const float* buf, const float* dyo, int64_t Ho, int64_t Wo, int64_t row_step,
                                const int64_t* taps, float* acc) {
  using V = typename Vec::F;
  constexpr int64_t L = Vec::kWidth;
  V a[TB];
  for (int t = 0; t < TB; ++t) a[t] = Vec::load(acc + t * L);
  for (int64_t oh = 0; oh < Ho; ++oh) {
    const float* dyr = dyo + oh * Wo;
    const float* row = buf + oh * row_step;
    int64_t ow = 0;
    for (; ow + L <= Wo; ow += L) {
      const V d = Vec::load(dyr + ow);
      for (int t = 0; t < TB; ++t) a[t] = Vec::fma(d, Vec::load(row + taps[t] + ow), a[t]);
    }
    if (ow < Wo) {
      // Partial loads on both sides: past the row, the buffer holds other
      // columns, whose inf would turn 0 * inf into NaN.
      const V d = Vec::load_partial(dyr + ow, Wo - ow);
      for (int t = 0; t < TB; ++t) a[t] = Vec::fma(d, Vec::load_partial(row + taps[t] + ow, Wo - ow), a[t]);
    }
  }
  for (int t = 0; t < TB; ++t) Vec::store(acc + t * L, a[t]);
}

template <class Vec, int TB>
void depthwise_weight_grad(const Conv2dParams& p, const float* dy, const float* x, float* dw) {
  constexpr int64_t L = Vec::kWidth;
  const int64_t kg = p.out_channels / p.groups, rs = p.kernel_h * p.kernel_w;
  const int64_t Ho = p.out_h, Wo = p.out_w;
  const PhaseRows l = phase_rows(p, 0);
  // One item per output channel: its sums over the whole batch, in order.
  parallel_for(p.out_channels, p.batch * Ho * Wo * rs, [&](int64_t begin, int64_t end) {
    float* buf = thread_workspace(WorkspaceSlot::Scratch0, static_cast<size_t>(l.floats));
    float* acc = thread_workspace(WorkspaceSlot::Scratch1, static_cast<size_t>(rs * L));
    std::memset(buf, 0, static_cast<size_t>(l.floats) * sizeof(float));
    int64_t taps[kDirectRowsMaxTaps];
    tap_offsets(p, l, taps);
    for (int64_t o = begin; o < end; ++o) {
      const int64_t g = o / kg;
      std::memset(acc, 0, static_cast<size_t>(rs * L) * sizeof(float));
      for (int64_t n = 0; n < p.batch; ++n) {
        copy_to_phases(p, l, x + (n * p.groups + g) * p.in_h * p.in_w, buf);
        const float* dyo = dy + (n * p.out_channels + o) * Ho * Wo;
        for (int64_t t0 = 0; t0 < rs; t0 += TB) {
          with_tile_size<TB>(static_cast<int>(rs - t0), [&](auto tb) {
            depthwise_weight_grad_taps<Vec, decltype(tb)::value>(buf, dyo, Ho, Wo, p.stride_h * l.row_len, taps + t0,
                                                                 acc + t0 * L);
          });
        }
      }
      for (int64_t t = 0; t < rs; ++t) dw[o * rs + t] = Vec::sum(Vec::load(acc + t * L));
    }
  });
}

// dw when each input channel feeds several output channels (a channel
// multiplier: LeNet's first layer, 1 -> 6). The one-channel kernel above
// would load every input vector once per output channel; here the sums of KB
// channels x TB taps stay in registers over a whole image, so a tap's input
// vector feeds KB FMAs and a dy vector TB. `acc` holds the KB channels' sums
// of every tap, `acc_channel` floats apart.
template <class Vec, int KB, int TB>
void multiplier_weight_grad_taps(const float* buf, const float* dyo, int64_t dy_channel, int64_t Ho, int64_t Wo,
                                 int64_t row_step, const int64_t* taps, float* acc, int64_t acc_channel) {
  using V = typename Vec::F;
  constexpr int64_t L = Vec::kWidth;
  V a[KB][TB];
  for (int k = 0; k < KB; ++k)
    for (int t = 0; t < TB; ++t) a[k][t] = Vec::load(acc + k * acc_channel + t * L);
  for (int64_t oh = 0; oh < Ho; ++oh) {
    const float* dyr = dyo + oh * Wo;
    const float* row = buf + oh * row_step;
    int64_t ow = 0;
    for (; ow + L <= Wo; ow += L) {
      V d[KB];
      for (int k = 0; k < KB; ++k) d[k] = Vec::load(dyr + k * dy_channel + ow);
      for (int t = 0; t < TB; ++t) {
        const V xv = Vec::load(row + taps[t] + ow);
        for (int k = 0; k < KB; ++k) a[k][t] = Vec::fma(d[k], xv, a[k][t]);
      }
    }
    if (ow < Wo) {
      // Partial loads on both sides, as in depthwise_weight_grad_taps.
      V d[KB];
      for (int k = 0; k < KB; ++k) d[k] = Vec::load_partial(dyr + k * dy_channel + ow, Wo - ow);
      for (int t = 0; t < TB; ++t) {
        const V xv = Vec::load_partial(row + taps[t] + ow, Wo - ow);
        for (int k = 0; k < KB; ++k) a[k][t] = Vec::fma(d[k], xv, a[k][t]);
      }
    }
  }
  for (int k = 0; k < KB; ++k)
    for (int t = 0; t < TB; ++t) Vec::store(acc + k * acc_channel + t * L, a[k][t]);
}

// Work items of multiplier_weight_grad: (group, block of channels, share of
// the batch). The shares are a fixed count that depends on the shape only
// (enough items for a few threads when there are few channel blocks), and
// their sums are added in share order: the result does not depend on the
// thread count.
constexpr int64_t kMultiplierItems = 8;

template <class Vec, int KB, int TB>
void multiplier_weight_grad(const Conv2dParams& p, const float* dy, const float* x, float* dw) {
  constexpr int64_t L = Vec::kWidth;
  const int64_t kg = p.out_channels / p.groups, rs = p.kernel_h * p.kernel_w;
  const int64_t Ho = p.out_h, Wo = p.out_w;
  const PhaseRows l = phase_rows(p, 0);
  const int64_t blocks = (kg + KB - 1) / KB;
  const int64_t wanted = (kMultiplierItems + p.groups * blocks - 1) / (p.groups * blocks);
  const int64_t shares = p.batch < 1 ? 1 : p.batch < wanted ? p.batch : wanted;
  // sums[(share * out_channels + o) * rs + t]: one vector per tap.
  float* sums = thread_workspace(WorkspaceSlot::Scratch1,
                                 static_cast<size_t>(checked_mul(shares * p.out_channels, rs * L, "conv2d weight sums")));
  parallel_for(p.groups * blocks * shares, p.batch / shares * kg / blocks * Ho * Wo * rs, [&](int64_t begin,
                                                                                               int64_t end) {
    float* buf = thread_workspace(WorkspaceSlot::Scratch0, static_cast<size_t>(l.floats));
    std::memset(buf, 0, static_cast<size_t>(l.floats) * sizeof(float));
    int64_t taps[kDirectRowsMaxTaps];
    tap_offsets(p, l, taps);
    for (int64_t item = begin; item < end; ++item) {
      const int64_t share = item % shares, gb = item / shares, g = gb / blocks, b = gb % blocks;
      // Balanced blocks: 32 channels in blocks of at most 6 are 6, 6, 5, 5, 5, 5.
      const int64_t k0 = kg * b / blocks, k1 = kg * (b + 1) / blocks, o0 = g * kg + k0;
      float* acc = sums + (share * p.out_channels + o0) * rs * L;
      std::memset(acc, 0, static_cast<size_t>((k1 - k0) * rs * L) * sizeof(float));
      for (int64_t n = p.batch * share / shares; n < p.batch * (share + 1) / shares; ++n) {
        copy_to_phases(p, l, x + (n * p.groups + g) * p.in_h * p.in_w, buf);
        const float* dyo = dy + (n * p.out_channels + o0) * Ho * Wo;
        for (int64_t t0 = 0; t0 < rs; t0 += TB) {
          with_tile_size<KB>(static_cast<int>(k1 - k0), [&](auto kb) {
            with_tile_size<TB>(static_cast<int>(rs - t0), [&](auto tb) {
              multiplier_weight_grad_taps<Vec, decltype(kb)::value, decltype(tb)::value>(
                  buf, dyo, Ho * Wo, Ho, Wo, p.stride_h * l.row_len, taps + t0, acc + t0 * L, rs * L);
            });
          });
        }
      }
    }
  });
  parallel_for(p.out_channels, shares * rs * L, [&](int64_t begin, int64_t end) {
    for (int64_t o = begin; o < end; ++o) {
      for (int64_t t = 0; t < rs; ++t) {
        auto total = Vec::load(sums + (o * rs + t) * L);
        for (int64_t share = 1; share < shares; ++share) {
          total = Vec::add(total, Vec::load(sums + ((share * p.out_channels + o) * rs + t) * L));
        }
        dw[o * rs + t] = Vec::sum(total);
      }
    }
  });
}

// dx of stride-1 layers is the forward of the flipped kernel over dy, which
// for one output channel per group runs the depthwise forward (2 threads,
// MobileNet 3x3 dx at 14x14 and 112x112: 0.32 and 1.07 ms, against 0.84 and
// 2.71 for a one-vector version of the gather, whose per-phase bookkeeping
// is there for strides).
template <class Vec, int NV, int TB, int MB, int MT>
void conv2d_backward_depthwise(const Conv2dParams& p, const float* dy, const float* x, const float* w, float* dx,
                               float* dw, float* db) {
  if (dx != nullptr) {
    if (direct_rows_backward_fits(p)) {
      conv2d_input_grad_transposed(p, dy, w, dx);
    } else {
      depthwise_input_grad<Vec, NV>(p, dy, w, dx);
    }
  }
  if (dw != nullptr) {
    if (p.out_channels == p.groups) {
      depthwise_weight_grad<Vec, TB>(p, dy, x, dw);
    } else {
      multiplier_weight_grad<Vec, MB, MT>(p, dy, x, dw);
    }
  }
  if (db != nullptr) conv2d_bias_grad(p, dy, db);
}

}  // namespace
}  // namespace cnnkit
