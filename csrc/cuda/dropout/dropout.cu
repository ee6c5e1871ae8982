#include "cuda/common/launch.cuh"
#include "cuda/dropout/dropout.h"
#include "cuda/dropout/philox.h"

namespace cnnkit::cuda {

namespace {

CNNKIT_HD float uniform_of(const DropoutKey& key, int64_t unit) {
  const uint64_t block = static_cast<uint64_t>(unit) / 4;
  const Philox4 r = philox4x32_10(Philox4{{static_cast<uint32_t>(block), static_cast<uint32_t>(block >> 32), 0u, 0u}},
                                  key.k0, key.k1);
  return uniform24(r.v[unit % 4]);
}

CNNKIT_HD float mask_of(const DropoutKey& key, int64_t unit, float p, float scale) {
  return uniform_of(key, unit) >= p ? scale : 0.0f;
}

// One element, with its unit's mask value (Philox recomputed per element: compute is cheap next
// to the memory traffic, and the elements of a unit stay coalesced).
struct Forward {
  const float* x;
  float* out;
  int64_t spatial;
  float p, scale;
  DropoutKey key;
  CNNKIT_HD void operator()(int64_t e) const { out[e] = x[e] * mask_of(key, e / spatial, p, scale); }
};

struct Mask {
  float* mask;
  float p, scale;
  DropoutKey key;
  CNNKIT_HD void operator()(int64_t unit) const { mask[unit] = mask_of(key, unit, p, scale); }
};

struct Backward {
  const float* dy;
  const float* mask;
  float* out;
  int64_t spatial;
  CNNKIT_HD void operator()(int64_t e) const { out[e] = dy[e] * mask[e / spatial]; }
};

}  // namespace

void dropout_forward(const float* x, float* out, float* mask, int64_t units, int64_t spatial, float p, float scale,
                     const DropoutKey& key, const Where& where) {
  if (mask) for_each(Mask{mask, p, scale, key}, units, where, "dropout");
  for_each(Forward{x, out, spatial, p, scale, key}, units * spatial, where, "dropout");
}

void dropout_backward(const float* dy, const float* mask, float* out, int64_t units, int64_t spatial,
                      const Where& where) {
  for_each(Backward{dy, mask, out, spatial}, units * spatial, where, "dropout_backward");
}

}  // namespace cnnkit::cuda
