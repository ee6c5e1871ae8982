// Fully connected layer on float32 buffers, built on cnnkit::sgemm.
#pragma once
#include <cstdint>

#include "cnnkit/gemm.h"

namespace cnnkit {

// y[M, out] = x[M, in] * weight[out, in]^T + bias[out]; bias may be null.
void linear_forward(const float* x, const float* weight, const float* bias, float* y, int64_t M,
                    int64_t in, int64_t out);

// linear_forward with the weight packed once (PackedMatrix(false, out, in,
// weight, in)): computed as y^T = weight * x^T, the weight the packed operand
// and the batch the narrow one, then y written from y^T with the bias added.
// Throws a Value error where `weight` is not usable() (a changed ISA cap).
void linear_forward_packed(const float* x, const PackedMatrix& weight, const float* bias, float* y, int64_t M);

// From dy[M, out]: dx[M, in] = dy * weight, dweight[out, in] = dy^T * x,
// dbias[out] = column sums of dy. A null output pointer skips that gradient.
void linear_backward(const float* dy, const float* x, const float* weight, int64_t M, int64_t in,
                     int64_t out, float* dx, float* dweight, float* dbias);

}  // namespace cnnkit
