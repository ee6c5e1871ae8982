// The dropout implementations, declared once for the dispatcher.
#pragma once
#include <cstdint>

#include "cnnkit/dropout.h"

namespace cnnkit {

// Units [begin, end) of dropout_forward, serially; built per ISA from mask_impl.h
// (plain loops the compiler vectorises for the file's ISA).
using DropoutRangeFn = void (*)(const DropoutShape&, const float* x, float* y, float* mask,
                                double p, float scale, uint64_t key, int64_t begin, int64_t end);
void dropout_range_scalar(const DropoutShape&, const float*, float*, float*, double, float,
                          uint64_t, int64_t, int64_t);
void dropout_range_avx2(const DropoutShape&, const float*, float*, float*, double, float,
                        uint64_t, int64_t, int64_t);
void dropout_range_avx512(const DropoutShape&, const float*, float*, float*, double, float,
                          uint64_t, int64_t, int64_t);

}  // namespace cnnkit
