// Direct stride-1 convolution over "extended rows", for few input channels
// (first layers such as LeNet's), included by one file per ISA.
//
// Each image's (group's) input planes are copied once into a zero-padded
// buffer of width Wp = W + pad_left + pad_right. Output position (oh, ow) is
// then computed at extended index e = oh*Wp + ow, and tap (c, r, s) reads the
// padded input at e + c*plane + r*dh*Wp + s*dw: for a fixed tap, consecutive
// extended indices read consecutive inputs, so one unaligned vector load feeds
// V positions at once, with no padding tests. The columns ow >= Wo of the
// extended output are computed and dropped (Wo/Wp of the work is useful:
// 28/32 for LeNet c1, 10/14 for c2). A register tile of KB output channels x
// NB vectors of positions reuses each load KB times and each weight broadcast
// NB times.
//
// Zero padding is read as 0*w, as im2col does (an infinite weight on a
// padded tap gives NaN, unlike the scalar direct loops that skip such taps).
//
// Vec must provide: kLanes, type V, zero(), load(const float*), bcast(const float*),
// fma(a, b, c) = a*b + c, store(float*, V).
#pragma once
#include <cstdint>
#include <cstring>

#include "core/parallel.h"
#include "core/workspace.h"
#include "cpu/conv/kernels.h"

namespace cnnkit {
namespace {

// Accumulates KB output channels x NB vectors starting at extended index e0
// over every (c, r, s) tap; stores them to ext[k * ext_stride + e0 + ...].
template <class Vec, int KB, int NB>
inline void rows_tile(const float* xp, int64_t plane, int64_t cg, const int64_t* tap_off,
                      int64_t taps, const float* w, int64_t red, int64_t e0, float* ext,
                      int64_t ext_stride) {
  using V = typename Vec::V;
  constexpr int L = Vec::kLanes;
  V acc[KB][NB];
  for (int k = 0; k < KB; ++k)
    for (int j = 0; j < NB; ++j) acc[k][j] = Vec::zero();
  for (int64_t c = 0; c < cg; ++c) {
    const float* xc = xp + c * plane + e0;
    const float* wc = w + c * taps;
    for (int64_t t = 0; t < taps; ++t) {
      const float* src = xc + tap_off[t];
      V xv[NB];
      for (int j = 0; j < NB; ++j) xv[j] = Vec::load(src + j * L);
      for (int k = 0; k < KB; ++k) {
        const V wv = Vec::bcast(wc + k * red + t);
        for (int j = 0; j < NB; ++j) acc[k][j] = Vec::fma(wv, xv[j], acc[k][j]);
      }
    }
  }
  for (int k = 0; k < KB; ++k)
    for (int j = 0; j < NB; ++j) Vec::store(ext + k * ext_stride + e0 + j * L, acc[k][j]);
}

template <class Vec, int KB, int NBMax>
inline void rows_tile_tail(int nb, const float* xp, int64_t plane, int64_t cg,
                           const int64_t* tap_off, int64_t taps, const float* w, int64_t red,
                           int64_t e0, float* ext, int64_t ext_stride) {
  if constexpr (NBMax > 1) {
    if (nb < NBMax) {
      rows_tile_tail<Vec, KB, NBMax - 1>(nb, xp, plane, cg, tap_off, taps, w, red, e0, ext, ext_stride);
      return;
    }
  }
  rows_tile<Vec, KB, NBMax>(xp, plane, cg, tap_off, taps, w, red, e0, ext, ext_stride);
}

// All extended positions of `kb` (<= KBMax) output channels.
template <class Vec, int KBMax, int NB>
inline void rows_channels(int kb, const float* xp, int64_t plane, int64_t cg,
                          const int64_t* tap_off, int64_t taps, const float* w, int64_t red,
                          int64_t ext_len, float* ext, int64_t ext_stride) {
  if constexpr (KBMax > 1) {
    if (kb < KBMax) {
      rows_channels<Vec, KBMax - 1, NB>(kb, xp, plane, cg, tap_off, taps, w, red, ext_len, ext,
                                        ext_stride);
      return;
    }
  }
  constexpr int64_t L = Vec::kLanes;
  const int64_t vectors = (ext_len + L - 1) / L;
  int64_t v = 0;
  for (; v + NB <= vectors; v += NB) {
    rows_tile<Vec, KBMax, NB>(xp, plane, cg, tap_off, taps, w, red, v * L, ext, ext_stride);
  }
  if (v < vectors) {
    rows_tile_tail<Vec, KBMax, NB>(static_cast<int>(vectors - v), xp, plane, cg, tap_off, taps, w,
                                   red, v * L, ext, ext_stride);
  }
}

template <class Vec, int KB, int NB>
void conv2d_forward_direct_rows(const Conv2dParams& p, const float* x, const float* w,
                                const float* bias, float* y) {
  constexpr int64_t L = Vec::kLanes;
  // Sizes come from the baseline-compiled planner: this file calls no inline
  // helper or STL template that the linker could share with scalar code.
  const DirectRowsPlan plan = plan_direct_rows(p, L * NB);
  const int64_t cg = plan.group_in_channels, kg = plan.group_out_channels, red = plan.reduction;
  const int64_t Wp = plan.padded_w, plane = plan.plane, Ho = p.out_h, Wo = p.out_w;
  const int64_t taps = p.kernel_h * p.kernel_w;
  parallel_for(plan.items, plan.work_per_item, [&](int64_t begin, int64_t end) {
    float* xp = thread_workspace(WorkspaceSlot::Scratch0, static_cast<size_t>(plan.input_floats));
    float* ext = thread_workspace(WorkspaceSlot::Scratch1, static_cast<size_t>(KB * plan.ext_stride));
    int64_t tap_off[kDirectRowsMaxTaps];
    for (int64_t r = 0; r < p.kernel_h; ++r)
      for (int64_t s = 0; s < p.kernel_w; ++s)
        tap_off[r * p.kernel_w + s] = r * p.dilation_h * Wp + s * p.dilation_w;
    // The padding stays zero across items (only the interior is rewritten);
    // the last vectors read up to one tile past the planes: dropped positions.
    std::memset(xp, 0, static_cast<size_t>(plan.input_floats) * sizeof(float));
    for (int64_t item = begin; item < end; ++item) {
      const int64_t n = item / p.groups, g = item % p.groups;
      const float* xg = x + (n * p.in_channels + g * cg) * p.in_h * p.in_w;
      for (int64_t c = 0; c < cg; ++c) {
        for (int64_t ih = 0; ih < p.in_h; ++ih) {
          std::memcpy(xp + c * plane + (ih + p.pad_top) * Wp + p.pad_left,
                      xg + (c * p.in_h + ih) * p.in_w, static_cast<size_t>(p.in_w) * sizeof(float));
        }
      }
      for (int64_t o0 = 0; o0 < kg; o0 += KB) {
        const int kb = static_cast<int>(kg - o0 < KB ? kg - o0 : KB);
        const int64_t o_first = g * kg + o0;
        rows_channels<Vec, KB, NB>(kb, xp, plane, cg, tap_off, taps, w + o_first * red, red,
                                   plan.ext_len, ext, plan.ext_stride);
        for (int k = 0; k < kb; ++k) {
          const float b = bias != nullptr ? bias[o_first + k] : 0.0f;
          float* yk = y + (n * p.out_channels + o_first + k) * Ho * Wo;
          const float* ek = ext + k * plan.ext_stride;
          for (int64_t oh = 0; oh < Ho; ++oh) {
            for (int64_t ow = 0; ow < Wo; ++ow) yk[oh * Wo + ow] = ek[oh * Wp + ow] + b;
          }
        }
      }
    }
  });
}

}  // namespace
}  // namespace cnnkit
