// The item loop shared by the direct_cvec and direct_walk forward kernels.
// Included by per-ISA files: everything here has internal linkage.
#pragma once
#include <cstdint>
#include <cstring>

#include "core/parallel.h"
#include "core/workspace.h"
#include "cpu/conv/kernels.h"

namespace cnnkit {
namespace {

// Threads take (image, group, band of `band` output rows) items; a thread pads
// an image's group once and keeps it while its consecutive bands need it.
// Only the interior is rewritten per image: the padding stays zero.
// body(xp, n, g, oh, rows) computes output rows [oh, oh + rows) of group g of
// image n from the padded group xp; rows < band only for an image's last band.
template <class Body>
void for_each_padded_band(const Conv2dParams& p, const CvecPlan& plan, const float* x, int64_t band,
                          int64_t work_per_row, Body&& body) {
  const int64_t cg = p.in_channels / p.groups, Ho = p.out_h, bands = (Ho + band - 1) / band;
  // Without padding the input planes already have the padded layout: the
  // kernels read them in place (LeNet c2, one thread: 180 -> 150 us per call).
  const bool in_place = p.pad_top == 0 && p.pad_bottom == 0 && p.pad_left == 0 && p.pad_right == 0;
  parallel_for(p.batch * p.groups * bands, work_per_row * band, [&](int64_t begin, int64_t end) {
    float* xp = nullptr;
    if (!in_place) {
      xp = thread_workspace(WorkspaceSlot::Scratch0, static_cast<size_t>(plan.input_floats));
      std::memset(xp, 0, static_cast<size_t>(plan.input_floats) * sizeof(float));
    }
    int64_t padded = -1;
    for (int64_t item = begin; item < end; ++item) {
      const int64_t ng = item / bands, oh = item % bands * band, n = ng / p.groups, g = ng % p.groups;
      const float* xg = x + (n * p.in_channels + g * cg) * p.in_h * p.in_w;
      if (!in_place && ng != padded) {
        copy_into_padded(p, xg, cg, xp, plan.plane, plan.padded_w);
        padded = ng;
      }
      body(in_place ? xg : xp, n, g, oh, Ho - oh < band ? Ho - oh : band);
    }
  });
}

}  // namespace
}  // namespace cnnkit
