// SGEMM packing with AVX2 (8-float) vectors, for the avx2 and avx512 builds.
// Packing is memory bound, so 8-wide moves already run at the cache's speed;
// the 16-wide registers would not make the avx512 build's packs faster.
// Internal linkage only: see blocked_impl.h.
#pragma once
#include <immintrin.h>

#include <cstdint>

namespace cnnkit {
namespace {

// Lanes l < n set (n clamped to 0..8), for maskload / maskstore.
inline __m256i lane_mask(int64_t n) {
  const int32_t count = static_cast<int32_t>(n < 0 ? 0 : (n > 8 ? 8 : n));
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(count), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// v[t] (row t) becomes column t.
inline void transpose8x8(__m256 v[8]) {
  const __m256 t0 = _mm256_unpacklo_ps(v[0], v[1]);
  const __m256 t1 = _mm256_unpackhi_ps(v[0], v[1]);
  const __m256 t2 = _mm256_unpacklo_ps(v[2], v[3]);
  const __m256 t3 = _mm256_unpackhi_ps(v[2], v[3]);
  const __m256 t4 = _mm256_unpacklo_ps(v[4], v[5]);
  const __m256 t5 = _mm256_unpackhi_ps(v[4], v[5]);
  const __m256 t6 = _mm256_unpacklo_ps(v[6], v[7]);
  const __m256 t7 = _mm256_unpackhi_ps(v[6], v[7]);
  const __m256 s0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 s1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 s2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 s3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 s4 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 s5 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 s6 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 s7 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(3, 2, 3, 2));
  v[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
  v[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
  v[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
  v[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
  v[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
  v[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
  v[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
  v[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

// dst[k * W + c] = src[k * ld + c] for c < valid, zero for valid <= c < W.
// Used where the strip is contiguous in memory (B as stored, or A transposed).
template <int W>
void pack_copy_avx2(const float* src, int64_t ld, int64_t kc, int64_t valid, float* dst) {
  constexpr int kChunks = (W + 7) / 8;
  // The last chunk of a W that is not a multiple of 8 (the A strips) must
  // not write into the next k's slot, let alone past the buffer.
  const __m256i store_tail = lane_mask(W - 8 * (kChunks - 1));
  if (valid == W && W % 8 == 0) {
    for (int64_t k = 0; k < kc; ++k) {
      for (int c = 0; c < kChunks; ++c) {
        _mm256_storeu_ps(dst + k * W + 8 * c, _mm256_loadu_ps(src + k * ld + 8 * c));
      }
    }
    return;
  }
  __m256i load_mask[kChunks];
  for (int c = 0; c < kChunks; ++c) load_mask[c] = lane_mask(valid - 8 * c);
  for (int64_t k = 0; k < kc; ++k) {
    for (int c = 0; c < kChunks; ++c) {
      const __m256 v = _mm256_maskload_ps(src + k * ld + 8 * c, load_mask[c]);
      if (c + 1 < kChunks || W % 8 == 0) {
        _mm256_storeu_ps(dst + k * W + 8 * c, v);
      } else {
        _mm256_maskstore_ps(dst + k * W + 8 * c, store_tail, v);
      }
    }
  }
}

// dst[k * W + c] = src[c * ld + k] for c < valid, zero for valid <= c < W.
// Used where the strip's elements are ld apart (A as stored, or B transposed):
// 8x8 blocks are loaded row by row and transposed in registers.
template <int W>
void pack_transpose_avx2(const float* src, int64_t ld, int64_t kc, int64_t valid, float* dst) {
  constexpr int kGroups = (W + 7) / 8;
  const __m256i store_tail = lane_mask(W - 8 * (kGroups - 1));
  int64_t k = 0;
  for (; k + 8 <= kc; k += 8) {
    for (int g = 0; g < kGroups; ++g) {
      __m256 v[8];
      for (int l = 0; l < 8; ++l) {
        const int64_t c = 8 * g + l;
        v[l] = c < valid ? _mm256_loadu_ps(src + c * ld + k) : _mm256_setzero_ps();
      }
      transpose8x8(v);
      for (int t = 0; t < 8; ++t) {
        float* out = dst + (k + t) * W + 8 * g;
        if (g + 1 < kGroups || W % 8 == 0) {
          _mm256_storeu_ps(out, v[t]);
        } else {
          _mm256_maskstore_ps(out, store_tail, v[t]);
        }
      }
    }
  }
  for (; k < kc; ++k) {
    for (int64_t c = 0; c < W; ++c) dst[k * W + c] = c < valid ? src[c * ld + k] : 0.0f;
  }
}

}  // namespace
}  // namespace cnnkit
