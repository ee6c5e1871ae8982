// Per-thread scratch buffers reused across calls, so hot loops never allocate.
// Each thread keeps at most one buffer per slot, grown to the largest request
// it has seen: memory stays bounded across repeated calls.
#pragma once
#include <cstddef>

namespace cnnkit {

// PackedWeights holds a direct kernel's repacked weights on the calling thread
// for the length of one call (tap_gemm's: each tap's matrix packed for the GEMM
// kernel), FlippedWeights the flipped, transposed weights that a stride-1
// input gradient passes to such a kernel (tap_gemm's: the weights and their
// gradient laid out tap by tap).
enum class WorkspaceSlot {
  GemmPackA = 0,
  GemmPackB,
  Im2col,
  Scratch0,
  Scratch1,
  Scratch2,
  PackedWeights,
  FlippedWeights,
  PlanImage,  // an inference plan's activations of one image, on each thread that runs whole images
  Count
};

// 64-byte aligned, uninitialised, valid until the same thread asks for the same slot again.
float* thread_workspace(WorkspaceSlot slot, std::size_t floats);

}  // namespace cnnkit
