// The plan's direct convolution (plan_direct.h), included by one file per ISA.
//
// A register tile holds one vector of output channels (the lanes) for NB
// positions of each of ROWS output rows. For every input channel and kernel
// row, the KW weight vectors are loaded once; then each input column the
// tile reads is broadcast once per row and feeds every accumulator it
// contributes to (up to KW with horizontal stride 1, fewer with stride 2):
// one broadcast per several FMAs. Everything is unrolled at compile time.
// With few registers (AVX2's 16) and two or more channel blocks, a tile
// instead holds NV vectors of channels and goes tap by tap
// (plan_direct_tile_taps): 12 accumulators, each taking one FMA per tap.
//
// Threads take (image, band of ROWS output rows, group of NV channel blocks)
// items, so a
// single image is split by bands: 16 bands of a 32-row image, times the
// channel blocks. Within an image the items go band by band (a band's input
// rows serve every channel block while they are in L1) or, block_major,
// block by block (a block's weights serve every band while they are in L1/L2:
// large weight blocks, which otherwise stream from L3 once per band). A
// bordered input (PlanDirectLayout) is read in place, as is one without
// padding; otherwise each thread makes a zero-padded copy of only the input
// rows its items of an image read, kept across its chunks of a call.
// The residual and a ReLU are applied to each tile's outputs as they are
// stored; another activation, after the tiles of an item, by the same thread
// to the rows it just wrote.
//
// Padded taps are read as 0*w, as im2col and the other direct kernels do,
// except in a tile that is a whole 3x3 plane padded by 1 (WHOLE, below).
//
// Vec must provide: kWidth, kRegisters, type F, load, store, load_partial,
// store_partial, zero, add, lt, select, broadcast, fma and store_transposed
// (dst[k * stride + j] = lane k of rows[j], j < n); for tiles of several
// channel blocks (NV > 1), broadcast_in_place<offset>(p).
#pragma once
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <vector>

#include "core/parallel.h"
#include "core/workspace.h"
#include "cpu/conv/direct_walk_impl.h"  // walk_unroll
#include "cpu/conv/tile_size.h"
#include "cpu/plan/plan_direct.h"

namespace cnnkit {
namespace {

// Input column iw of a tile feeds position j = (iw - s) / SW through kernel
// column s when that division is exact and j is in the tile.
template <int KW, int SW, int NB>
constexpr bool column_used(int iw) {
  for (int s = 0; s < KW; ++s) {
    const int d = iw - s;
    if (d >= 0 && d % SW == 0 && d / SW < NB) return true;
  }
  return false;
}

struct PlanTileArgs {
  int64_t channels, kernel_h;
  int64_t plane, row_step, out_row_step;  // input plane (blocked: block), next kernel row, next output row
  int64_t out_w, channel_stride, kb;      // output row and plane pitches, channels to store
  int64_t residual_w, residual_plane;     // the residual's row and plane pitches
  bool out_blocked, residual_blocked;     // vectors of channels stored / read per position
  bool relu;                              // max(0, .) on each value stored (after the residual)
  // Floats from one block of L output channels to the next: packed weights, outputs, residual.
  int64_t weight_block, out_block, residual_block;
  // Positions from the tile's first to the end of its rows, which the same
  // item writes tile by tile from left to right: a plain output's transposed
  // stores may run over into them (store_transposed's `writable`).
  int64_t row_left;
};

// Stores a tile's accumulators for one vector of output channels, the first
// kb of them (plan_direct_tile's y and r): a residual added and a ReLU applied
// in registers, the rows transposed unless the output is blocked.
template <class Vec, int NB, int ROWS>
__attribute__((always_inline)) inline void store_tile(const PlanTileArgs& a, typename Vec::F (&acc)[ROWS][NB],
                                                      float* y, const float* r, int64_t kb) {
  using V = typename Vec::F;
  constexpr int L = Vec::kWidth;
  // A blocked residual lies as the accumulators do: added to them here.
  if (r != nullptr && a.residual_blocked) {
    for (int q = 0; q < ROWS; ++q)
      for (int j = 0; j < NB; ++j) acc[q][j] = Vec::add(acc[q][j], Vec::load(r + q * a.residual_w + j * L));
    r = nullptr;
  }
  // Without a plain residual, ReLU costs fewer instructions on the
  // accumulators than on the transposed rows.
  const bool relu_in_store = a.relu && r != nullptr;
  if (a.relu && r == nullptr) {
    const V zero = Vec::zero();
    for (int q = 0; q < ROWS; ++q)
      for (int j = 0; j < NB; ++j) acc[q][j] = Vec::select(Vec::lt(acc[q][j], zero), zero, acc[q][j]);
  }
  if (a.out_blocked) {
    for (int q = 0; q < ROWS; ++q)
      for (int j = 0; j < NB; ++j) Vec::store(y + q * a.out_w + j * L, acc[q][j]);
    return;
  }
  for (int q = 0; q < ROWS; ++q) {
    float* yq = y + q * a.out_w;
    const float* rq = r != nullptr ? r + q * a.residual_w : nullptr;
    if (kb == L) {
      if (relu_in_store) {
        Vec::template store_transposed<true, true>(acc[q], NB, yq, a.channel_stride, a.row_left, rq,
                                                   a.residual_plane);
      } else if (rq != nullptr) {
        Vec::template store_transposed<true, false>(acc[q], NB, yq, a.channel_stride, a.row_left, rq,
                                                    a.residual_plane);
      } else {
        Vec::store_transposed(acc[q], NB, yq, a.channel_stride, a.row_left);
      }
    } else {
      float t[L * NB];
      for (int j = 0; j < NB; ++j) Vec::store(t + j * L, acc[q][j]);
      for (int64_t k = 0; k < kb; ++k) {
        for (int j = 0; j < NB; ++j) {
          float v = t[j * L + k] + (rq != nullptr ? rq[k * a.residual_plane + j] : 0.0f);
          yq[k * a.channel_stride + j] = a.relu && v < 0.0f ? 0.0f : v;
        }
      }
    }
  }
}

// One tile: row q's first tap is x0 + q * out_row_step (input channel c
// `plane` floats further on or, BLOCKED, in block c / L at lane c % L, the
// columns L floats apart); its outputs go to y + q * out_w, channel k at
// k * channel_stride (blocked: position j's vector at j * L), plus the
// residual at r + q * residual_w + k * residual_plane (blocked: at j * L),
// when r is not null.
//
// WHOLE: the tile is a whole plane of a 3x3 stride-1 layer padded by 1 on
// every side (ROWS x NB outputs; vgg11's 4x4 and 2x2 planes): the multiply-adds
// that read the padding are left out at compile time (the first and last
// columns; kernel row 0 for the first row, row 2 for the last), 31% of them on
// a 4x4 plane.
template <int ROWS, int R, int Q>
constexpr bool row_in_plane() {
  return !(R == 0 && Q == 0) && !(R == 2 && Q == ROWS - 1);
}

template <class Vec, int KW, int SW, int NB, int ROWS, bool BLOCKED, bool WHOLE = false>
void plan_direct_tile(const PlanTileArgs& a, const float* x0, const float* wb, const float* bb, float* y,
                      const float* r) {
  using V = typename Vec::F;
  constexpr int L = Vec::kWidth;
  constexpr int kColumn = BLOCKED ? L : 1;
  V acc[ROWS][NB];
  const V b = Vec::load(bb);
  for (int q = 0; q < ROWS; ++q)
    for (int j = 0; j < NB; ++j) acc[q][j] = b;
  // Weights from L1 as memory operands where they do not fit beside the
  // accumulators and a broadcast.
  constexpr bool kWeightsInRegisters = ROWS * NB + KW + 1 <= Vec::kRegisters;
  const float* w = wb;
  for (int64_t c = 0; c < a.channels; ++c) {
    // One pointer per row: every broadcast is then pointer + constant.
    const float* xc = BLOCKED ? x0 + c / L * a.plane + c % L : x0 + c * a.plane;
    const float* xrow[ROWS];
    for (int q = 0; q < ROWS; ++q) xrow[q] = xc + q * a.out_row_step;
    if constexpr (WHOLE) {
      static_assert(KW == 3 && SW == 1, "a whole padded plane of a 3x3 stride-1 layer");
      walk_unroll<3>([&](auto r_c) __attribute__((always_inline)) {
        constexpr int kr = decltype(r_c)::value;
        V wv[KW];
        if constexpr (kWeightsInRegisters) {
          for (int s = 0; s < KW; ++s) wv[s] = Vec::load(w + (kr * KW + s) * L);
        }
        // Columns 1 .. NB: 0 and NB + 1 are the padding.
        walk_unroll<NB>([&](auto i_c) __attribute__((always_inline)) {
          constexpr int iw = decltype(i_c)::value + 1;
          walk_unroll<ROWS>([&](auto q_c) __attribute__((always_inline)) {
            constexpr int q = decltype(q_c)::value;
            if constexpr (row_in_plane<ROWS, kr, q>()) {
              const V xb = Vec::broadcast(xrow[q] + kr * a.row_step + iw * kColumn);
              walk_unroll<KW>([&](auto s_c) __attribute__((always_inline)) {
                constexpr int s = decltype(s_c)::value, d = iw - s;
                if constexpr (d >= 0 && d < NB) {
                  const V weight = kWeightsInRegisters ? wv[s] : Vec::load(w + (kr * KW + s) * L);
                  acc[q][d] = Vec::fma(weight, xb, acc[q][d]);
                }
              });
            }
          });
        });
      });
      w += 3 * KW * L;
      continue;
    }
    for (int64_t r = 0; r < a.kernel_h; ++r, w += KW * L) {
      V wv[KW];
      if constexpr (kWeightsInRegisters) {
        for (int s = 0; s < KW; ++s) wv[s] = Vec::load(w + s * L);
      }
      walk_unroll<(NB - 1) * SW + KW>([&](auto iw_c) __attribute__((always_inline)) {
        constexpr int iw = decltype(iw_c)::value;
        if constexpr (column_used<KW, SW, NB>(iw)) {
          walk_unroll<ROWS>([&](auto q_c) __attribute__((always_inline)) {
            constexpr int q = decltype(q_c)::value;
            const V xb = Vec::broadcast(xrow[q] + iw * kColumn);
            walk_unroll<KW>([&](auto s_c) __attribute__((always_inline)) {
              constexpr int s = decltype(s_c)::value, d = iw - s;
              if constexpr (d >= 0 && d % SW == 0 && d / SW < NB) {
                const V weight = kWeightsInRegisters ? wv[s] : Vec::load(w + s * L);
                acc[q][d / SW] = Vec::fma(weight, xb, acc[q][d / SW]);
              }
            });
          });
        }
      });
      for (int q = 0; q < ROWS; ++q) xrow[q] += a.row_step;
    }
  }
  store_tile<Vec, NB, ROWS>(a, acc, y, r, a.kb);
}

// The taps of one kernel row (KR when WHOLE, else -1) for plan_direct_tile_taps:
// xr is its first input, wr its weights.
template <class Vec, int NV, int KW, int SW, int NB, int ROWS, bool BLOCKED, bool WHOLE, int KR>
__attribute__((always_inline)) inline void tap_row(const PlanTileArgs& a, const float* xr, const float* wr,
                                                   typename Vec::F (&acc)[NV][ROWS][NB]) {
  using V = typename Vec::F;
  constexpr int L = Vec::kWidth;
  constexpr int kColumn = BLOCKED ? L : 1;
  walk_unroll<KW>([&](auto s_c) __attribute__((always_inline)) {
    constexpr int s = decltype(s_c)::value;
    const float* xs = xr + s * kColumn;
    V wv[NV];
    for (int v = 0; v < NV; ++v) wv[v] = Vec::load(wr + v * a.weight_block + s * L);
    walk_unroll<ROWS>([&](auto q_c) __attribute__((always_inline)) {
      constexpr int q = decltype(q_c)::value;
      if constexpr (!WHOLE || row_in_plane<ROWS, KR, q>()) {
        const float* xq = xs + q * a.out_row_step;
        walk_unroll<NB>([&](auto j_c) __attribute__((always_inline)) {
          constexpr int j = decltype(j_c)::value;
          if constexpr (!WHOLE || (j + s >= 1 && j + s <= NB)) {
            // In place: otherwise GCC shares the broadcast of an input
            // column between the taps that read it and hoists broadcasts
            // ahead of their turn, which keeps more weight vectors and
            // broadcasts live than the registers hold and spills accumulators.
            const V xb = Vec::template broadcast_in_place<j * SW * kColumn>(xq);
            for (int v = 0; v < NV; ++v) acc[v][q][j] = Vec::fma(wv[v], xb, acc[v][q][j]);
          }
        });
      }
    });
  });
}

// A tile of NV vectors of output channels (NV consecutive blocks, each
// `weight_block` floats of packed weights after the last) for NB positions of
// ROWS rows, in tap order: for each input channel and tap (r, s), the NV
// weight vectors are loaded once and every input value the tap reads is
// broadcast once and feeds NV accumulators. With 16 registers this keeps 12
// accumulators with one multiply-add each per tap, where plan_direct_tile's
// column walk (one broadcast for up to KW multiply-adds, KW weight vectors
// live) fits 8 to 12 accumulators that each take KW multiply-adds in a row.
// WHOLE as for plan_direct_tile: the taps that read the padding are left out.
template <class Vec, int NV, int KW, int SW, int NB, int ROWS, bool BLOCKED, bool WHOLE = false>
void plan_direct_tile_taps(const PlanTileArgs& a, const float* x0, const float* wb, const float* bb, float* y,
                           const float* r) {
  using V = typename Vec::F;
  constexpr int L = Vec::kWidth;
  static_assert(!WHOLE || (KW == 3 && SW == 1), "a whole padded plane of a 3x3 stride-1 layer");
  V acc[NV][ROWS][NB];
  for (int v = 0; v < NV; ++v) {
    const V b = Vec::load(bb + v * L);
    for (int q = 0; q < ROWS; ++q)
      for (int j = 0; j < NB; ++j) acc[v][q][j] = b;
  }
  const float* w = wb;
  for (int64_t c = 0; c < a.channels; ++c) {
    const float* xc = BLOCKED ? x0 + c / L * a.plane + c % L : x0 + c * a.plane;
    if constexpr (WHOLE) {
      walk_unroll<3>([&](auto kr_c) __attribute__((always_inline)) {
        constexpr int kr = decltype(kr_c)::value;
        tap_row<Vec, NV, KW, SW, NB, ROWS, BLOCKED, true, kr>(a, xc + kr * a.row_step, w + kr * KW * L, acc);
      });
      w += 3 * KW * L;
    } else {
      for (int64_t kr = 0; kr < a.kernel_h; ++kr, w += KW * L) {
        tap_row<Vec, NV, KW, SW, NB, ROWS, BLOCKED, false, -1>(a, xc + kr * a.row_step, w, acc);
      }
    }
  }
  for (int v = 0; v < NV; ++v) {
    store_tile<Vec, NB, ROWS>(a, acc[v], y + v * a.out_block, r != nullptr ? r + v * a.residual_block : nullptr,
                              std::min<int64_t>(a.kb - v * L, L));
  }
}

// dst[i] = 0 for i < n, by vectors: short rows, where a memset call per row
// (GCC turns zeroing loops into memset calls) costs more than the stores.
template <class Vec>
inline void zero_row(float* dst, int64_t n) {
  constexpr int64_t L = Vec::kWidth;
  int64_t i = 0;
  for (; i + L <= n; i += L) Vec::store(dst + i, Vec::zero());
  if (i < n) Vec::store_partial(dst + i, Vec::zero(), n - i);
}

// Which floats of the padded rows [r0, r1) of a plane, one run of
// (r1 - r0) * wp floats, are input values rather than padding: bit l of
// word k for float 16 k + l. The same for every channel: built once per fill
// in a per-thread buffer.
inline const uint16_t* padding_masks(const Conv2dParams& p, int64_t wp, int64_t r0, int64_t r1) {
  thread_local std::vector<uint16_t> masks;
  const int64_t n = (r1 - r0) * wp;
  masks.assign(static_cast<size_t>((n + 15) / 16), 0);
  for (int64_t pr = r0; pr < r1; ++pr) {
    const int64_t ih = pr - p.pad_top;
    if (ih < 0 || ih >= p.in_h) continue;
    for (int64_t i = (pr - r0) * wp + p.pad_left, end = i + p.in_w; i < end; ++i) {
      masks[static_cast<size_t>(i / 16)] |= static_cast<uint16_t>(1u << (i % 16));
    }
  }
  return masks.data();
}

// dst[0, n) = the padded rows whose input values are src[0, ...) in order,
// placed by `masks` (padding_masks): one expanding load and one store per 16.
template <class Vec>
void expand_rows(const uint16_t* masks, const float* src, float* dst, int64_t n) {
  constexpr int64_t L = Vec::kWidth;
  int64_t k = 0;
  for (; (k + 1) * L <= n; ++k) {
    Vec::store(dst + k * L, Vec::expand_load(masks[k], src));
    src += __builtin_popcount(masks[k]);
  }
  if (k * L < n) Vec::store_partial(dst + k * L, Vec::expand_load(masks[k], src), n - k * L);
}

// Rows [r0, r1) of every channel's padded plane. With an expanding load
// (AVX-512) the rows of a channel are one run: each 16 floats one load that
// spreads the next input values over the lanes padding_masks marks, and one
// store (resnet20 at batch 1 ran 11% faster than filling row by row: its rows
// are 10 to 34 floats). Without, each vector of a padded row is one load of
// the input lanes it covers (zero in the padding) and one store.
template <class Vec>
void fill_padded_rows(const Conv2dParams& p, const float* xn, int64_t plane, int64_t wp, int64_t r0, int64_t r1,
                      float* xp) {
  constexpr int64_t L = Vec::kWidth;
  const int64_t pl = p.pad_left, w = p.in_w;
  // The input rows of the next channel are asked for while this one's are
  // copied: they are one short run per channel, a plane apart, which the
  // hardware prefetchers do not fetch ahead.
  const int64_t ih0 = std::max<int64_t>(r0 - p.pad_top, 0), ih1 = std::min<int64_t>(r1 - p.pad_top, p.in_h);
  constexpr int64_t kLine = 64 / sizeof(float);
  const uint16_t* masks = Vec::kExpandLoad ? padding_masks(p, wp, r0, r1) : nullptr;
  for (int64_t c = 0; c < p.in_channels; ++c) {
    if (c + 1 < p.in_channels) {
      const float* next = xn + ((c + 1) * p.in_h + ih0) * w;
      for (int64_t i = 0; i < (ih1 - ih0) * w; i += kLine) __builtin_prefetch(next + i, 0, 3);
    }
    if constexpr (Vec::kExpandLoad) {
      expand_rows<Vec>(masks, xn + (c * p.in_h + ih0) * w, xp + c * plane + r0 * wp, (r1 - r0) * wp);
    } else {
      for (int64_t pr = r0; pr < r1; ++pr) {
        float* dst = xp + c * plane + pr * wp;
        const int64_t ih = pr - p.pad_top;
        if (ih < 0 || ih >= p.in_h) {
          zero_row<Vec>(dst, wp);
          continue;
        }
        // Padded column j holds input column j - pl where 0 <= j - pl < w.
        const float* src = xn + (c * p.in_h + ih) * w - pl;
        for (int64_t j0 = 0; j0 < wp; j0 += L) {
          const int64_t lo = std::clamp<int64_t>(pl - j0, 0, L), hi = std::clamp<int64_t>(pl + w - j0, lo, L);
          const typename Vec::F v = lo < hi ? Vec::load_lanes(src + j0, lo, hi) : Vec::zero();
          if (wp - j0 >= L) {
            Vec::store(dst + j0, v);
          } else {
            Vec::store_partial(dst + j0, v, wp - j0);
          }
        }
      }
    }
  }
}

// What a thread's padded copy of an input image holds: rows [lo, hi) of
// image n, filled during call number `call` into `buffer`. A thread keeps it
// across its chunks of one call: at batch 1 each of its 4 chunks would
// otherwise fill its rows again (resnet20 at batch 1, 2 threads, ran 11%
// faster keeping them).
struct PaddedRows {
  uint64_t call = 0;
  const float* buffer = nullptr;
  int64_t n = -1, lo = 0, hi = 0;
};
thread_local PaddedRows t_padded;
std::atomic<uint64_t> g_plan_direct_calls{0};

// Makes rows [r0, r1) of image n (and any rows between them and those
// already held) present in xp.
template <class Vec>
void hold_padded_rows(const Conv2dParams& p, uint64_t call, int64_t n, const float* xn, int64_t plane, int64_t wp,
                      int64_t r0, int64_t r1, float* xp) {
  PaddedRows& f = t_padded;
  if (f.call != call || f.buffer != xp || f.n != n) {
    fill_padded_rows<Vec>(p, xn, plane, wp, r0, r1, xp);
    f = PaddedRows{call, xp, n, r0, r1};
    return;
  }
  if (r0 < f.lo) {
    fill_padded_rows<Vec>(p, xn, plane, wp, r0, f.lo, xp);
    f.lo = r0;
  }
  if (r1 > f.hi) {
    fill_padded_rows<Vec>(p, xn, plane, wp, f.hi, r1, xp);
    f.hi = r1;
  }
}

// Where the values of one image of a plan value lie (PlanValueLayout), for
// c channels of h x w positions and L lanes: from `at(n, k)`, the first
// channel k's plane (blocked: its block's), pixel (i, j) of its interior is
// `origin + i * row + j * column` floats further on.
struct PlanValueView {
  int64_t column, row, plane, image, origin;
  bool blocked;

  PlanValueView(const PlanValueLayout& v, int64_t c, int64_t h, int64_t w, int64_t L) : blocked(v.blocked) {
    const int64_t b = v.border, wp = w + 2 * b;
    column = blocked ? L : 1;
    row = wp * column;
    plane = (h + 2 * b) * row;  // per channel, or per block of L channels
    image = c * (h + 2 * b) * wp;
    origin = b * row + b * column;
  }
  int64_t at(int64_t n, int64_t k) const { return n * image + (blocked ? k / column : k) * plane; }
};

// Zeros the border of output rows [oh, oh + rows) of `channels` planes
// (blocked: one block) inside a border of b: the columns beside those rows,
// and the rows above or below them where they are the first or last.
template <class Vec>
void zero_border(float* y0, const PlanValueView& v, int64_t channels, int64_t b, int64_t oh, int64_t rows,
                 int64_t Ho, int64_t Wo) {
  const int64_t planes = v.blocked ? (channels + v.column - 1) / v.column : channels;
  for (int64_t k = 0; k < planes; ++k) {
    float* yk = y0 + k * v.plane;
    if (oh == 0) zero_row<Vec>(yk, b * v.row);
    for (int64_t q = oh; q < oh + rows; ++q) {
      float* row = yk + (q + b) * v.row;
      zero_row<Vec>(row, b * v.column);
      zero_row<Vec>(row + (b + Wo) * v.column, b * v.column);
    }
    if (oh + rows == Ho) zero_row<Vec>(yk + (Ho + b) * v.row, b * v.row);
  }
}

// Splits n positions (or tiles) into even groups of at most NB: a 32-wide row
// in groups of at most 6 is 6 6 5 5 5 5, not 6 6 6 6 6 2, and 7 Winograd
// tiles 4 + 3, not 6 + 1, whose 2 accumulators would wait on each FMA's
// latency. Calls f(first, count) for each group in order.
template <int NB, class F>
__attribute__((always_inline)) inline void for_even_groups(int64_t n, F&& f) {
  const int64_t groups = (n + NB - 1) / NB, narrow = n / groups, wider = n % groups;
  for (int64_t g = 0, first = 0, count; g < groups; ++g, first += count) {
    count = narrow + (g < wider ? 1 : 0);
    f(first, count);
  }
}

// What a kernel does to output rows [oh, oh + rows) of `channels` channels
// (blocked: blocks) after its tiles: an activation other than ReLU (which the
// tiles apply as they store) over the rows from yb, the first row's interior
// of the first channel, and the border around them zeroed (y0: the first
// channel's plane, border included).
template <class Vec>
void finish_rows(const ActParams* act, const PlanValueView& out, float* y0, float* yb, int64_t channels,
                 int64_t border, int64_t oh, int64_t rows, int64_t Ho, int64_t Wo) {
  if (act != nullptr && act->kind != Activation::Relu) {
    // Rows oh .. oh + rows of a plain, unbordered channel are one run of
    // rows * Wo floats; a blocked row is one run of Wo * L.
    const int64_t planes = out.blocked ? (channels + out.column - 1) / out.column : channels;
    for (int64_t k = 0; k < planes; ++k) {
      float* yk = yb + k * out.plane;
      if (border == 0 && !out.blocked) {
        activation_forward(*act, yk, yk, rows * Wo);
      } else {
        for (int64_t q = 0; q < rows; ++q) {
          activation_forward(*act, yk + q * out.row, yk + q * out.row, Wo * out.column);
        }
      }
    }
  }
  if (border > 0) zero_border<Vec>(y0, out, channels, border, oh, rows, Ho, Wo);
}

// NV: tiles of NV blocks of output channels (plan_direct_tile_taps; a last
// group of fewer blocks, and NV = 1, run the tiles for that many). FULL_TILES:
// the caller has checked that the rows split into tiles of NB positions, so
// no narrower tile is instantiated.
template <class Vec, int NV, int KW, int SW, int NB, int ROWS, bool BLOCKED, bool FULL_TILES>
void plan_direct_run(const Conv2dParams& p, const PlanDirectConv& c, const float* x, const PlanDirectEpilogue& e,
                     float* y, const PlanDirectLayout& layout) {
  constexpr int64_t L = Vec::kWidth;
  const int64_t C = p.in_channels, K = p.out_channels, Ho = p.out_h, Wo = p.out_w, KH = p.kernel_h;
  // A bordered input is read in place from (border - pad) rows and columns
  // into its border, a plain one too where the layer has no padding; another
  // through the padded copy, in its own (plain) layout.
  const int64_t bi = layout.in.border;
  const bool in_place = bi > 0 || BLOCKED ||
                        (p.pad_top == 0 && p.pad_bottom == 0 && p.pad_left == 0 && p.pad_right == 0);
  const PlanValueView in = in_place ? PlanValueView(layout.in, C, p.in_h, p.in_w, L)
                                    : PlanValueView({}, C, p.in_h + p.pad_top + p.pad_bottom,
                                                    p.in_w + p.pad_left + p.pad_right, L);
  const int64_t in_origin = in_place ? in.origin - p.pad_top * in.row - p.pad_left * in.column : 0;
  const PlanValueView out(layout.out, K, Ho, Wo, L);
  const PlanValueView res(layout.residual, K, Ho, Wo, L);
  const int64_t bo = layout.out.border;
  // Items go by groups of NV channel blocks.
  const int64_t bands = (Ho + ROWS - 1) / ROWS, blocks = (c.blocks + NV - 1) / NV, items = p.batch * bands * blocks;
  const int64_t block_floats = C * KH * KW * L;
  // The residual and a ReLU are applied to the transposed rows in registers
  // as they are stored: a pass over the rows just stored cost 10% of a
  // 16-channel 32x32 layer, 13% with a residual (its channels' rows lie 4 KiB
  // apart and evict each other from L1). Other activations take that pass.
  const bool relu = e.act != nullptr && e.act->kind == Activation::Relu;
  PlanTileArgs args{C,         KH, in.plane, p.dilation_h * in.row, p.stride_h * in.row, out.row,
                    out.plane, L,  res.row,  res.plane,             out.blocked,         res.blocked,
                    relu,      block_floats, out.blocked ? out.plane : L * out.plane,
                    res.blocked ? res.plane : L * res.plane, Wo};
  // One tile is the whole output plane of a 3x3 layer padded by 1: its padding taps are left out.
  const bool whole_plane = KW == 3 && SW == 1 && KH == 3 && p.stride_h == 1 && p.dilation_h == 1 &&
                           p.dilation_w == 1 && p.pad_top == 1 && p.pad_bottom == 1 && p.pad_left == 1 &&
                           p.pad_right == 1 && Ho <= ROWS && Wo <= NB;
  const uint64_t call = g_plan_direct_calls.fetch_add(1, std::memory_order_relaxed) + 1;
  parallel_for(items, work_per_item(items, {ROWS * Wo, NV * L, C, KH * KW}), [&](int64_t begin, int64_t end) {
    float* xp = in_place ? nullptr : thread_workspace(WorkspaceSlot::Scratch0, static_cast<size_t>(in.image));
    int64_t held = -1;  // the image whose rows xp holds
    PlanTileArgs t = args;
    for (int64_t item = begin; item < end; ++item) {
      const int64_t n = item / (blocks * bands);
      const int64_t blk = c.block_major ? item / bands % blocks : item % blocks;
      const int64_t band = c.block_major ? item % bands : item / blocks % bands;
      const int64_t oh = band * ROWS, rows = Ho - oh < ROWS ? Ho - oh : ROWS;
      const float* src = xp;
      if (in_place) {
        src = x + n * in.image + in_origin;
      } else {
        if (n != held) {
          // Every row this thread's items of image n read, filled before any
          // tile reads them (filled band by band, just ahead of the tiles,
          // 64 channels on 8x8 ran 10% slower).
          const int64_t last = std::min(end, (n + 1) * bands * blocks) - 1;
          // With bands innermost, items of two channel blocks read every band.
          const bool one_block = !c.block_major || last / bands == item / bands;
          const int64_t first_oh = one_block ? oh : 0;
          const int64_t last_oh =
              (!one_block ? bands - 1 : c.block_major ? last % bands : last / blocks % bands) * ROWS;
          const int64_t last_rows = std::min<int64_t>(ROWS, Ho - last_oh);
          const int64_t r0 = first_oh * p.stride_h;
          const int64_t r1 = (last_oh + last_rows - 1) * p.stride_h + (KH - 1) * p.dilation_h + 1;
          hold_padded_rows<Vec>(p, call, n, x + n * C * p.in_h * p.in_w, in.plane, in.row, r0, r1, xp);
          held = n;
        }
      }
      const int64_t k0 = blk * NV * L, group_blocks = std::min<int64_t>(NV, c.blocks - blk * NV);
      t.kb = std::min(K - k0, NV * L);
      const float* wb = c.packed.data() + blk * NV * block_floats;
      const float* bb = c.packed.data() + c.weight_floats + blk * NV * L;
      float* y0 = y + out.at(n, k0);
      float* yb = y0 + out.origin + oh * out.row;
      const float* rb = e.residual != nullptr ? e.residual + res.at(n, k0) + res.origin + oh * res.row : nullptr;
      for_even_groups<NB>(Wo, [&](int64_t ow0, int64_t nb) {
        const float* x0 = src + oh * t.out_row_step + ow0 * SW * in.column;
        float* yt = yb + ow0 * out.column;
        const float* rt = rb != nullptr ? rb + ow0 * res.column : nullptr;
        t.row_left = Wo - ow0;
        with_tile_size<NV>(static_cast<int>(group_blocks), [&](auto v) {
          with_tile_size<ROWS>(static_cast<int>(rows), [&](auto q) {
            with_tile_size<NB, FULL_TILES ? NB : 1>(static_cast<int>(nb), [&](auto j) {
              constexpr int kNv = decltype(v)::value, kNb = decltype(j)::value, kRows = decltype(q)::value;
              constexpr bool kCanBeWhole = KW == 3 && SW == 1;
              if constexpr (kNv == 1) {
                if (kCanBeWhole && whole_plane) {
                  plan_direct_tile<Vec, KW, SW, kNb, kRows, BLOCKED, kCanBeWhole>(t, x0, wb, bb, yt, rt);
                } else {
                  plan_direct_tile<Vec, KW, SW, kNb, kRows, BLOCKED>(t, x0, wb, bb, yt, rt);
                }
              } else if (kCanBeWhole && whole_plane) {
                plan_direct_tile_taps<Vec, kNv, KW, SW, kNb, kRows, BLOCKED, kCanBeWhole>(t, x0, wb, bb, yt, rt);
              } else {
                plan_direct_tile_taps<Vec, kNv, KW, SW, kNb, kRows, BLOCKED>(t, x0, wb, bb, yt, rt);
              }
            });
          });
        });
      });
      finish_rows<Vec>(e.act, out, y0, yb, t.kb, bo, oh, rows, Ho, Wo);
    }
  });
}

// Runs the instance for the layer's kernel width and horizontal stride
// (plan_direct_fits lists them) and its input's layout (blocked only for
// kernels at most 3 wide: plan_direct_reads_blocked). FULL_TILES: out_w is a
// multiple of NB.
template <class Vec, int NV, int NB, int ROWS, bool FULL_TILES = false>
void plan_direct_dispatch(const Conv2dParams& p, const PlanDirectConv& c, const float* x,
                          const PlanDirectEpilogue& e, float* y, const PlanDirectLayout& layout) {
  const bool blocked = layout.in.blocked;
  if (p.stride_w == 1) {
    switch (p.kernel_w) {
      case 1:
        return blocked ? plan_direct_run<Vec, NV, 1, 1, NB, ROWS, true, FULL_TILES>(p, c, x, e, y, layout)
                       : plan_direct_run<Vec, NV, 1, 1, NB, ROWS, false, FULL_TILES>(p, c, x, e, y, layout);
      case 3:
        return blocked ? plan_direct_run<Vec, NV, 3, 1, NB, ROWS, true, FULL_TILES>(p, c, x, e, y, layout)
                       : plan_direct_run<Vec, NV, 3, 1, NB, ROWS, false, FULL_TILES>(p, c, x, e, y, layout);
      default: return plan_direct_run<Vec, NV, 5, 1, NB, ROWS, false, FULL_TILES>(p, c, x, e, y, layout);
    }
  } else if (p.kernel_w == 1) {
    return blocked ? plan_direct_run<Vec, NV, 1, 2, NB, ROWS, true, FULL_TILES>(p, c, x, e, y, layout)
                   : plan_direct_run<Vec, NV, 1, 2, NB, ROWS, false, FULL_TILES>(p, c, x, e, y, layout);
  }
  return blocked ? plan_direct_run<Vec, NV, 3, 2, NB, ROWS, true, FULL_TILES>(p, c, x, e, y, layout)
                 : plan_direct_run<Vec, NV, 3, 2, NB, ROWS, false, FULL_TILES>(p, c, x, e, y, layout);
}

}  // namespace
}  // namespace cnnkit
