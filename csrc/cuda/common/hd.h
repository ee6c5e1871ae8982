// CNNKIT_HD marks the per-thread (or per-block) work of a kernel: a function of its indices that
// nvcc compiles for the device and any C++ compiler compiles for the host. The GPU kernel is a
// thin launch around it; the emulator (csrc/cuda/python/bind_emulate.cpp) runs the same function
// over the whole grid on the CPU, so the index arithmetic and bounds are tested without a GPU.
#pragma once

#ifdef __CUDACC__
#define CNNKIT_HD __host__ __device__ __forceinline__
#else
#define CNNKIT_HD inline
#endif
