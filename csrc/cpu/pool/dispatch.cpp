// Pooling: the ordered list of implementations, widest ISA first, reference
// last, and the checks every entry point runs before a kernel sees the data.
#include "core/registry.h"
#include "cpu/pool/kernels.h"

namespace cnnkit {
namespace {

using PoolImpl = KernelImpl<Pool2dShape, const PoolKernels*>;

// The vector kernels size their row buffers by the padding and walk every
// kernel column per row (the average's backward); the scalar loops clip each
// window to the input first. A kernel of 2^31 columns (padding 2^30) would
// have them allocate gigabytes, so they take kernels up to this size.
constexpr int64_t kVectorMaxKernel = 1 << 12;
bool vector_fits(const Pool2dShape& s) {
  return s.kernel_h <= kVectorMaxKernel && s.kernel_w <= kVectorMaxKernel;
}

const PoolImpl kPoolImpls[] = {
#ifdef CNNKIT_X86
    {"vector_avx512", Isa::Avx512, vector_fits, &pool_vector_avx512},
    {"vector_avx2", Isa::Avx2, vector_fits, &pool_vector_avx2},
#endif
    {"direct_scalar", Isa::Scalar, nullptr, &pool_direct_scalar},
    {"reference", Isa::Scalar, nullptr, &pool_reference},
};

const PoolKernels& selected(const Pool2dShape& s) { return *select_kernel(kPoolImpls, s).run; }

void require_no_dilation(const Pool2dShape& s) {
  CNNKIT_CHECK(s.dilation_h == 1 && s.dilation_w == 1, ErrorKind::Value,
        "avg_pool2d: dilation must be 1");
}

}  // namespace

void max_pool2d(const Pool2dShape& s, const float* input, float* out, int64_t* indices) {
  selected(s).max_forward(s, input, out, indices);
}

void max_pool2d_backward(const Pool2dShape& s, const float* grad_out, const int64_t* indices,
                         float* grad_input) {
  check_pool_indices(s, indices);
  selected(s).max_backward(s, grad_out, indices, grad_input);
}

void avg_pool2d(const Pool2dShape& s, bool count_include_pad, const float* input, float* out) {
  require_no_dilation(s);
  selected(s).avg_forward(s, count_include_pad, input, out);
}

void avg_pool2d_backward(const Pool2dShape& s, bool count_include_pad, const float* grad_out,
                         float* grad_input) {
  require_no_dilation(s);
  selected(s).avg_backward(s, count_include_pad, grad_out, grad_input);
}

void max_pool2d_reference(const Pool2dShape& s, const float* input, float* out, int64_t* indices) {
  pool_reference.max_forward(s, input, out, indices);
}

void max_pool2d_backward_reference(const Pool2dShape& s, const float* grad_out,
                                   const int64_t* indices, float* grad_input) {
  check_pool_indices(s, indices);
  pool_reference.max_backward(s, grad_out, indices, grad_input);
}

void avg_pool2d_reference(const Pool2dShape& s, bool count_include_pad, const float* input,
                          float* out) {
  require_no_dilation(s);
  pool_reference.avg_forward(s, count_include_pad, input, out);
}

void avg_pool2d_backward_reference(const Pool2dShape& s, bool count_include_pad,
                                   const float* grad_out, float* grad_input) {
  require_no_dilation(s);
  pool_reference.avg_backward(s, count_include_pad, grad_out, grad_input);
}

const char* pool2d_implementation() { return select_kernel(kPoolImpls, Pool2dShape{}).name; }

}  // namespace cnnkit
