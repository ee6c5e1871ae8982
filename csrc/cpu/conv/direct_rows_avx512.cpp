// Direct stride-1 convolution over extended rows (direct_rows_impl.h) with
// AVX-512: 16 lanes, a 6-channel x 4-vector tile (24 accumulators, 4 loads,
// one broadcast: 29 of the 32 zmm registers).
// Weight gradient: a 4-channel x 6-tap weight-gradient tile (24 accumulators, 4 dy
// vectors, one input vector: 29 of the 32 zmm registers).
#include <immintrin.h>

#include "cpu/conv/direct_rows_impl.h"

namespace cnnkit {
namespace {

struct Avx512 {
  static constexpr int kLanes = 16;
  using V = __m512;
  static V zero() { return _mm512_setzero_ps(); }
  static V load(const float* p) { return _mm512_loadu_ps(p); }
  static V bcast(const float* p) { return _mm512_set1_ps(*p); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static void store(float* p, V v) { _mm512_storeu_ps(p, v); }
};

}  // namespace

CNNKIT_CONV2D_FORWARD_SIGNATURE(conv2d_forward_direct_rows_avx512) {
  conv2d_forward_direct_rows<Avx512, 6, 4>(p, x, w, bias, y);
}

CNNKIT_CONV2D_WEIGHT_GRAD_ROWS_SIGNATURE(conv2d_weight_grad_rows_avx512) {
  conv2d_weight_grad_rows<Avx512, 4, 6>(p, chunk, dw, accumulate);
}

}  // namespace cnnkit
