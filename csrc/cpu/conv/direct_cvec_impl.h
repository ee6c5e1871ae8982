// Direct convolution vectorised over output channels, included by one file per
// ISA. Suits layers with few output positions per row or strides, where the
// extended rows of direct_rows waste most lanes (LeNet c2: 100 useful of 192).
//
// The weights are repacked (direct_cvec.cpp) to [group][block][c][r][s][NV*L]
// with zeros past the group's channels, so one tap of one input channel is NV
// vector loads covering NV*L output channels. A register tile of NV vectors x
// NB output positions of one output row broadcasts each input value once per
// tap and reuses each weight load NB times; the tile starts from the bias, is
// stored position-major, and is transposed into the NCHW output.
//
// Reads go through a zero-padded copy of the image (row width Wp): no
// padding tests. Padded taps are read as 0*w, as im2col and direct_rows do.
//
// Vec must provide: kWidth, type F, zero(), load(const float*), broadcast(const float*),
// fma(a, b, c) = a*b + c, store(float*, V).
#pragma once
#include <algorithm>
#include <cstdint>

#include "core/workspace.h"
#include "cpu/conv/kernels.h"
#include "cpu/conv/padded_rows.h"
#include "cpu/conv/tile_size.h"

namespace cnnkit {
namespace {

// One tile over input channels [0, channels) of x0 / wb (a chunk): starts
// from init (position j at init + j * init_stride: stride 0 repeats the bias)
// and stores the sums position-major to out.
template <class Vec, int NV, int NB>
inline void cvec_tile(const Conv2dParams& p, const CvecPlan& plan, int64_t channels, const float* x0,
                      const float* wb, const float* init, int64_t init_stride, float* out) {
  using V = typename Vec::F;
  constexpr int L = Vec::kWidth;
  const int64_t sw = p.stride_w, dw = p.dilation_w, row_step = p.dilation_h * plan.padded_w;
  const int64_t R = p.kernel_h, S = p.kernel_w;
  V acc[NV][NB];
  for (int j = 0; j < NB; ++j)
    for (int v = 0; v < NV; ++v) acc[v][j] = Vec::load(init + j * init_stride + v * L);
  const float* w = wb;
  for (int64_t c = 0; c < channels; ++c) {
    for (int64_t r = 0; r < R; ++r) {
      const float* xr = x0 + c * plan.plane + r * row_step;
      for (int64_t s = 0; s < S; ++s, w += NV * L) {
        V wv[NV];
        for (int v = 0; v < NV; ++v) wv[v] = Vec::load(w + v * L);
        const float* xs = xr + s * dw;
        for (int j = 0; j < NB; ++j) {
          const V xb = Vec::broadcast(xs + j * sw);
          for (int v = 0; v < NV; ++v) acc[v][j] = Vec::fma(wv[v], xb, acc[v][j]);
        }
      }
    }
  }
  for (int j = 0; j < NB; ++j)
    for (int v = 0; v < NV; ++v) Vec::store(out + (j * NV + v) * L, acc[v][j]);
}

// Input channels per pass over an output row, for kernels whose packed
// weights per input channel reach kCvecChunkMinFloats: as many as fit
// kCvecChunkFloats (16 KiB), which then stay in L1 while every tile of the
// row runs over them, the partial sums waiting in a row buffer. Forward, 2
// threads, one process, time without / with: AlexNet c1 (11x11, 3 channels)
// 1.07, ResNet conv1 (7x7 stride 2) 1.16; on 3x3 layers (128 -> 256 stride 2)
// the chunks lost (0.94), so small kernels take all channels in one pass.
constexpr int64_t kCvecChunkFloats = 4096;
constexpr int64_t kCvecChunkMinFloats = 1024;

template <class Vec, int NV, int NB>
void conv2d_forward_cvec(const Conv2dParams& p, const CvecPlan& plan, const float* x, float* y) {
  constexpr int64_t L = Vec::kWidth, BL = NV * L;
  const int64_t cg = p.in_channels / p.groups, kg = p.out_channels / p.groups;
  const int64_t Ho = p.out_h, Wo = p.out_w, Wp = plan.padded_w, taps = p.kernel_h * p.kernel_w;
  const int64_t taps_per_block = cg * taps * BL;
  const int64_t row_tiles = (Wo + NB - 1) / NB, nb_size = (Wo + row_tiles - 1) / row_tiles;
  const int64_t chunk = taps * BL < kCvecChunkMinFloats ? cg : std::max<int64_t>(1, kCvecChunkFloats / (taps * BL));
  for_each_padded_band(p, plan, x, 1, plan.blocks * taps_per_block * Wo, [&](const float* xp, int64_t n,
                                                                            int64_t g, int64_t oh, int64_t) {
    float* row = thread_workspace(WorkspaceSlot::Scratch1, static_cast<size_t>(Wo * BL));
    const float* x_row = xp + oh * p.stride_h * Wp;
    for (int64_t blk = 0; blk < plan.blocks; ++blk) {
      const float* wb = plan.weights + (g * plan.blocks + blk) * taps_per_block;
      const float* bb = plan.bias + (g * plan.blocks + blk) * BL;
      for (int64_t c0 = 0; c0 < cg; c0 += chunk) {
        const int64_t channels = std::min(chunk, cg - c0);
        for (int64_t ow0 = 0; ow0 < Wo; ow0 += nb_size) {
          const int nb = static_cast<int>(std::min(nb_size, Wo - ow0));
          float* out = row + ow0 * BL;
          with_tile_size<NB>(nb, [&](auto n) {
            cvec_tile<Vec, NV, decltype(n)::value>(p, plan, channels, x_row + c0 * plan.plane + ow0 * p.stride_w,
                                                   wb + c0 * taps * BL, c0 == 0 ? bb : out, c0 == 0 ? 0 : BL, out);
          });
        }
      }
      const int64_t k0 = blk * BL, kb = kg - k0 < BL ? kg - k0 : BL;
      for (int64_t k = 0; k < kb; ++k) {
        float* yk = y + ((n * p.out_channels + g * kg + k0 + k) * Ho + oh) * Wo;
        for (int64_t j = 0; j < Wo; ++j) yk[j] = row[j * BL + k];
      }
    }
  });
}

}  // namespace
}  // namespace cnnkit
