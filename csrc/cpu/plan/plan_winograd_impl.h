// The plan's Winograd convolution F(2x2, 3x3) (plan_direct.h's third
// order), included by one file per ISA after plan_direct_impl.h.
//
// Each 2x2 block of outputs (a tile) comes from a 4x4 block of the padded
// input d: y = A^T [(G g G^T) . (B^T d B)] A, 16 products per input channel
// where the direct convolution takes 36 (Lavin and Gray, "Fast Algorithms
// for Convolutional Neural Networks", 2016). The weights' transforms U =
// G g G^T are packed once (PlanDirectConv::winograd_packed); the kernel
// transforms the input V = B^T d B with the input channels across the lanes,
// multiplies U and V point by point as 16 small GEMMs reducing over the input
// channels (output channels across the lanes, the tiles broadcast), and
// transforms the products back, adding the bias, a residual and a ReLU in
// registers as plan_direct_tile does (store_tile).
//
// A 5-wide (or 5-tall) kernel runs as the 3x3 parts of its 6-wide zero
// extension, their products summed before the output's transform: the
// reduction then runs over parts and input channels, 64 products per 2x2
// outputs and input channel for a 5x5 kernel where the direct sum takes 100.
//
// Threads take (image, band of tile rows, part of the output channel groups)
// items: a band is transformed once per item (the parts split the output
// channels only where an image has too few bands to go round); its tiles go
// through the products in register tiles of NT whatever the rows' width.
// The input is read in place where it is blocked and its border covers the
// padding and the last tile's overhang (a tile past an odd output size reads
// one row or column beyond it, a 5-wide kernel's parts one more); otherwise
// each item first copies the padded input rows its band reads, blocked, into
// a per-thread buffer.
//
// The weights' transforms are packed times 4 (G's halves make quarters) and
// the outputs scaled back by 1/4, exactly: every step of small integers is
// then an integer sum, so integer fills give the oracle's bits as long as the
// sums stay below 2^24 (before the 1/4, up to 36 times the magnitude of the
// direct sums). With random data the error stays within the tolerance rule.
#pragma once

namespace cnnkit {
namespace {

// V = B^T d B of one 4x4 block of input vectors (d[i][j] at x + i * row + j * L),
// its 16 points stored `point` floats apart.
template <class Vec>
__attribute__((always_inline)) inline void winograd_input_tile(const float* x, int64_t row, float* v,
                                                               int64_t point) {
  using V = typename Vec::F;
  constexpr int L = Vec::kWidth;
  V w[4][4];
  for (int j = 0; j < 4; ++j) {
    const V d0 = Vec::load(x + j * L), d1 = Vec::load(x + row + j * L);
    const V d2 = Vec::load(x + 2 * row + j * L), d3 = Vec::load(x + 3 * row + j * L);
    w[0][j] = Vec::sub(d0, d2);
    w[1][j] = Vec::add(d1, d2);
    w[2][j] = Vec::sub(d2, d1);
    w[3][j] = Vec::sub(d1, d3);
  }
  for (int i = 0; i < 4; ++i) {
    Vec::store(v + (4 * i + 0) * point, Vec::sub(w[i][0], w[i][2]));
    Vec::store(v + (4 * i + 1) * point, Vec::add(w[i][1], w[i][2]));
    Vec::store(v + (4 * i + 2) * point, Vec::sub(w[i][2], w[i][1]));
    Vec::store(v + (4 * i + 3) * point, Vec::sub(w[i][1], w[i][3]));
  }
}

// One point's products for NT tiles and NV blocks of output channels, over
// the kernel's S parts and C input channels: m[t * MV + b] = sum over s, c of
// v[t * tile + s * part + c] * u[b * block + (s * C + c) * L] (m's entries
// L floats each; MV, at least NV, the blocks of a whole group).
template <class Vec, int NT, int NV, int MV>
__attribute__((always_inline)) inline void winograd_point(const float* v, int64_t tile, int64_t part, const float* u,
                                                          int64_t block, int64_t S, int64_t C, float* m) {
  using V = typename Vec::F;
  constexpr int L = Vec::kWidth;
  V acc[NT][NV];
  for (int t = 0; t < NT; ++t)
    for (int b = 0; b < NV; ++b) acc[t][b] = Vec::zero();
  for (int64_t s = 0; s < S; ++s, v += part, u += C * L) {
    for (int64_t c = 0; c < C; ++c) {
      V uc[NV];
      for (int b = 0; b < NV; ++b) uc[b] = Vec::load(u + b * block + c * L);
      for (int t = 0; t < NT; ++t) {
        const V x = Vec::broadcast(v + t * tile + c);
        for (int b = 0; b < NV; ++b) acc[t][b] = Vec::fma(uc[b], x, acc[t][b]);
      }
    }
  }
  for (int t = 0; t < NT; ++t)
    for (int b = 0; b < NV; ++b) Vec::store(m + (t * MV + b) * L, acc[t][b]);
}

// y = A^T m A / 4 + bias for one tile's 16 points (m[4 i + j], of the
// weights' transforms times 4), as out[r][2 t + s].
template <class Vec, int ROWS, int NB>
__attribute__((always_inline)) inline void winograd_output_tile(const typename Vec::F (&m)[16], typename Vec::F bias,
                                                                int t, typename Vec::F (&out)[ROWS][NB]) {
  using V = typename Vec::F;
  const V quarter = Vec::set1(0.25f);
  auto put = [&](V sum) { return Vec::fma(sum, quarter, bias); };
  V s[4], d[4];
  for (int j = 0; j < 4; ++j) {
    s[j] = Vec::add(Vec::add(m[j], m[4 + j]), m[8 + j]);
    d[j] = Vec::sub(Vec::sub(m[4 + j], m[8 + j]), m[12 + j]);
  }
  out[0][2 * t] = put(Vec::add(Vec::add(s[0], s[1]), s[2]));
  if (2 * t + 1 < NB) out[0][2 * t + 1] = put(Vec::sub(Vec::sub(s[1], s[2]), s[3]));
  if constexpr (ROWS == 2) {
    out[1][2 * t] = put(Vec::add(Vec::add(d[0], d[1]), d[2]));
    if (2 * t + 1 < NB) out[1][2 * t + 1] = put(Vec::sub(Vec::sub(d[1], d[2]), d[3]));
  }
}

// The outputs of NT tiles of one tile row (the last group of a row may be
// narrower) and NV blocks of output channels (the last group may have fewer)
// from their products (m: point p's at m + p * point, tile t's block b at
// (t * MV + b) * L from there), stored as ROWS rows (1 for the last tile row
// of an odd height) of NB positions (one fewer than 2 NT past an odd width).
template <class Vec, int NT, int NV, int MV, int ROWS, int NB>
__attribute__((always_inline)) inline void winograd_outputs(const PlanTileArgs& a, const float* m, int64_t point,
                                                            const float* bias, float* y, const float* r) {
  using V = typename Vec::F;
  constexpr int L = Vec::kWidth;
  for (int b = 0; b < NV; ++b) {
    V out[ROWS][NB];
    const V bb = Vec::load(bias + b * L);
    for (int t = 0; t < NT; ++t) {
      V mt[16];
      for (int p = 0; p < 16; ++p) mt[p] = Vec::load(m + p * point + (t * MV + b) * L);
      winograd_output_tile<Vec, ROWS, NB>(mt, bb, t, out);
    }
    store_tile<Vec, NB, ROWS>(a, out, y + b * a.out_block, r != nullptr ? r + b * a.residual_block : nullptr,
                              std::min<int64_t>(a.kb - b * L, L));
  }
}

// Copies padded input rows [r0, r0 + rows) of image n (columns [0, wp) of
// the padded plane), channels in blocks of L, zeros where the padding is (and
// past it), into xp: [block][rows][wp][L].
template <class Vec>
void winograd_stage_rows(const Conv2dParams& p, const PlanValueView& in, const float* xn, int64_t r0, int64_t rows,
                         int64_t wp, float* xp) {
  constexpr int64_t L = Vec::kWidth;
  const int64_t C = p.in_channels, blocks = (C + L - 1) / L;
  for (int64_t cb = 0; cb < blocks; ++cb) {
    const int64_t lanes = std::min(L, C - cb * L);
    for (int64_t q = 0; q < rows; ++q) {
      float* dst = xp + (cb * rows + q) * wp * L;
      const int64_t i = r0 + q - p.pad_top;
      if (i < 0 || i >= p.in_h) {
        zero_row<Vec>(dst, wp * L);
        continue;
      }
      for (int64_t col = 0; col < wp; ++col) {
        const int64_t j = col - p.pad_left;
        float* d = dst + col * L;
        if (j < 0 || j >= p.in_w) {
          Vec::store(d, Vec::zero());
        } else if (in.blocked) {
          Vec::store(d, Vec::load(xn + cb * in.plane + in.origin + i * in.row + j * L));
        } else {
          for (int64_t l = 0; l < L; ++l) d[l] = l < lanes ? xn[(cb * L + l) * in.plane + in.origin + i * in.row + j] : 0.0f;
        }
      }
    }
  }
}

// NT tiles and NV blocks of output channels per register tile.
template <class Vec, int NT, int NV>
void plan_winograd_run(const Conv2dParams& p, const PlanDirectConv& c, const float* x, const PlanDirectEpilogue& e,
                       float* y, const PlanDirectLayout& layout) {
  constexpr int64_t L = Vec::kWidth;
  const int64_t C = p.in_channels, K = p.out_channels, Ho = p.out_h, Wo = p.out_w;
  const int64_t tile_rows = (Ho + 1) / 2, tiles = (Wo + 1) / 2, cpad = (C + L - 1) / L * L;
  // Items take bands of tile rows, enough tiles for two whole register tiles
  // where the rows are short (an 8-wide plane's 4 tiles a row: bands of 3
  // rows, 12 tiles as 6 + 6, where single rows would run 4-tile tiles).
  const int64_t band_rows = std::min(tile_rows, (2 * NT + tiles - 1) / tiles);
  const int64_t bands = (tile_rows + band_rows - 1) / band_rows, band_tiles = band_rows * tiles;
  // The kernel's 3x3 parts (plan_winograd_fits): part (i, j) starts at kernel row 3 i, column 3 j.
  const int64_t parts_h = (p.kernel_h + 2) / 3, parts_w = (p.kernel_w + 2) / 3, S = parts_h * parts_w;
  // The padded input rows and columns a band's tiles read; beyond the padded
  // input by up to one tile's overhang and the parts' zero extension.
  const int64_t staged_rows = 2 * band_rows + 3 * parts_h - 1, wp = 2 * tiles + 3 * parts_w - 1;
  const int64_t over_h = 2 * tile_rows - Ho + 3 * parts_h - p.kernel_h;
  const int64_t over_w = 2 * tiles - Wo + 3 * parts_w - p.kernel_w;
  const PlanValueView in(layout.in, C, p.in_h, p.in_w, L);
  const PlanValueView out(layout.out, K, Ho, Wo, L);
  const PlanValueView res(layout.residual, K, Ho, Wo, L);
  const int64_t bi = layout.in.border, bo = layout.out.border;
  // In place: a blocked input whose border holds every padded row and column the tiles read.
  const bool in_place =
      layout.in.blocked && bi >= std::max({p.pad_top, p.pad_left, p.pad_bottom + over_h, p.pad_right + over_w});
  const int64_t groups = (c.blocks + NV - 1) / NV;
  // Parts of the channel groups: enough items for the threads to share.
  const int64_t parts = std::clamp<int64_t>((16 + p.batch * bands - 1) / (p.batch * bands), 1, groups);
  const int64_t items = p.batch * bands * parts;
  // vbuf: point q's transform of band tile i, part s, channel c at q * point + i * tile + s * cpad + c.
  const int64_t tile = S * cpad, point = band_tiles * tile, block = 16 * S * C * L;
  const bool relu = e.act != nullptr && e.act->kind == Activation::Relu;
  // store_tile's arguments (the input's pitches, plan_direct_tile's, unused).
  PlanTileArgs args{C,         3, 0,       0,         0,         out.row, out.plane, 0, res.row, res.plane,
                    out.blocked, res.blocked, relu, block * NV, out.blocked ? out.plane : L * out.plane,
                    res.blocked ? res.plane : L * res.plane, Wo};
  parallel_for(items, work_per_item(items, {16 * band_tiles, S * C, K / parts + 1}), [&](int64_t begin, int64_t end) {
    float* vbuf = thread_workspace(WorkspaceSlot::Scratch1, static_cast<size_t>(16 * point));
    float* mbuf = thread_workspace(WorkspaceSlot::Scratch2, static_cast<size_t>(16 * band_tiles * NV * L));
    float* xp =
        in_place ? nullptr : thread_workspace(WorkspaceSlot::Scratch0, static_cast<size_t>(cpad * staged_rows * wp));
    int64_t held = -1;  // the (image, band) whose transform vbuf holds
    PlanTileArgs t = args;
    for (int64_t item = begin; item < end; ++item) {
      const int64_t part = item % parts, band_of_image = item / parts;
      const int64_t n = band_of_image / bands, ty0 = band_of_image % bands * band_rows;
      const int64_t rows_here = std::min(band_rows, tile_rows - ty0), tiles_here = rows_here * tiles;
      const int64_t oh0 = 2 * ty0, out_rows = std::min(2 * rows_here, Ho - oh0);
      if (band_of_image != held) {
        const float* src;
        int64_t row, plane;
        if (in_place) {
          src = x + in.at(n, 0) + in.origin + (oh0 - p.pad_top) * in.row - p.pad_left * L;
          row = in.row;
          plane = in.plane;
        } else {
          winograd_stage_rows<Vec>(p, in, x + in.at(n, 0), oh0, staged_rows, wp, xp);
          src = xp;
          row = wp * L;
          plane = staged_rows * wp * L;
        }
        for (int64_t r = 0; r < rows_here; ++r) {
          for (int64_t s = 0; s < S; ++s) {
            const float* part_src = src + (2 * r + 3 * (s / parts_w)) * row + 3 * (s % parts_w) * L;
            for (int64_t cb = 0; cb < cpad / L; ++cb) {
              for (int64_t tx = 0; tx < tiles; ++tx) {
                winograd_input_tile<Vec>(part_src + cb * plane + 2 * tx * L, row,
                                         vbuf + (r * tiles + tx) * tile + s * cpad + cb * L, point);
              }
            }
          }
        }
        held = band_of_image;
      }
      const int64_t g0 = groups * part / parts, g1 = groups * (part + 1) / parts;
      for (int64_t g = g0; g < g1; ++g) {
        const int64_t k0 = g * NV * L, group_blocks = std::min<int64_t>(NV, c.blocks - g * NV);
        t.kb = std::min(K - k0, NV * L);
        const float* u = c.winograd_packed.data() + g * NV * block;
        const float* bias = c.packed.data() + c.weight_floats + k0;
        // Point by point over the whole band: a point's transformed weights
        // (S C NV L floats) stay in L1 across the band's tiles, taken in
        // register tiles of NT whatever the rows' width.
        for (int64_t q = 0; q < 16; ++q) {
          for_even_groups<NT>(tiles_here, [&](int64_t i, int64_t nt) {
            with_tile_size<NV>(static_cast<int>(group_blocks), [&](auto nv) {
              with_tile_size<NT>(static_cast<int>(nt), [&](auto nt_c) {
                constexpr int kNv = decltype(nv)::value, kNt = decltype(nt_c)::value;
                winograd_point<Vec, kNt, kNv, NV>(vbuf + q * point + i * tile, tile, cpad, u + q * S * C * L, block, S,
                                              C, mbuf + (q * band_tiles + i) * NV * L);
              });
            });
          });
        }
        // The outputs row by row, in the same even groups per row.
        for (int64_t r = 0; r < rows_here; ++r) {
          const int64_t oh = oh0 + 2 * r, rows = std::min<int64_t>(2, Ho - oh);
          float* yb = y + out.at(n, k0) + out.origin + oh * out.row;
          const float* rb =
              e.residual != nullptr ? e.residual + res.at(n, k0) + res.origin + oh * res.row : nullptr;
          for_even_groups<NT>(tiles, [&](int64_t tx, int64_t nt) {
            const int64_t ow0 = 2 * tx, cols = std::min<int64_t>(2 * nt, Wo - ow0);
            t.row_left = Wo - ow0;
            float* yt = yb + ow0 * out.column;
            const float* rt = rb != nullptr ? rb + ow0 * res.column : nullptr;
            const float* mt = mbuf + (r * tiles + tx) * NV * L;
            with_tile_size<NV>(static_cast<int>(group_blocks), [&](auto nv) {
              with_tile_size<NT>(static_cast<int>(nt), [&](auto nt_c) {
                constexpr int kNv = decltype(nv)::value, kNt = decltype(nt_c)::value;
                auto run = [&](auto rows_c, auto cols_c) {
                  winograd_outputs<Vec, kNt, kNv, NV, decltype(rows_c)::value, decltype(cols_c)::value>(
                      t, mt, band_tiles * NV * L, bias, yt, rt);
                };
                using Two = std::integral_constant<int, 2>;
                using One = std::integral_constant<int, 1>;
                using Full = std::integral_constant<int, 2 * kNt>;
                using Odd = std::integral_constant<int, 2 * kNt - 1>;
                if (rows == 2) {
                  cols == 2 * kNt ? run(Two{}, Full{}) : run(Two{}, Odd{});
                } else {
                  cols == 2 * kNt ? run(One{}, Full{}) : run(One{}, Odd{});
                }
              });
            });
          });
        }
        float* y0 = y + out.at(n, k0);
        finish_rows<Vec>(e.act, out, y0, y0 + out.origin + oh0 * out.row, t.kb, bo, oh0, out_rows, Ho, Wo);
      }
    }
  });
}

}  // namespace
}  // namespace cnnkit
