// Cache-blocked SGEMM driver (Goto/BLIS structure), shared by every ISA build.
//
// C's columns go in panels; each panel of B (all of K) is packed once into a
// buffer the threads share, in NR-wide strips. Units of work then pack an
// MC x KC block of A in MR-tall strips (L2) and run the micro-kernel's
// MR x NR register tile over KC while its B strip stays in L1. The threads
// take the units on demand (see GemmPlan), so a slowed thread does not hold
// up the call.
//
// With a pre-packed op(A) (pack_a_blocked, below) the units skip packing A and
// read the rows straight from that buffer: a weight matrix used by many calls
// is then packed once, not once per call.
//
// A `Kernel` supplies the tile sizes, the blocking, two packing routines and
// the micro-kernel. Included by one file per ISA, each compiled with its own
// flags; everything here has internal linkage so the linker can never mix
// code built for different ISAs (and no STL template is instantiated here).
#pragma once
#include <sched.h>

#include <cstdint>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#include "core/parallel.h"
#include "core/thread_pool.h"
#include "core/workspace.h"

namespace cnnkit {
namespace {

inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
inline int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }
inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Splits `n` into the fewest chunks of at most `block` whose size is a
// multiple of `unit`, as even as possible (K = 257 becomes 129 + 128, not 256 + 1).
inline int64_t balanced_block(int64_t n, int64_t block, int64_t unit) {
  const int64_t chunks = ceil_div(n, block);
  return min64(block, ceil_div(ceil_div(n, chunks), unit) * unit);
}

// Packs `count` lines of an operand (rows of op(A) or columns of op(B)) from
// line l0, depth p0 .. p0+kc, into W-wide strips, zero padded. Line i at
// depth k is M[k * ld + i] when `lines_contiguous` (neighbouring lines are
// neighbours in memory: op(A) = Aᵀ, op(B) = B; the strips are copies), else
// M[i * ld + k] (each line is a row of M: transposed into the strips).
template <class Kernel, int W>
void pack_strips(bool lines_contiguous, const float* M, int64_t ld, int64_t l0, int64_t count, int64_t p0,
                 int64_t kc, float* dst) {
  for (int64_t i = 0; i < count; i += W) {
    const int64_t valid = min64(W, count - i);
    if (lines_contiguous) {
      Kernel::template pack_copy<W>(M + p0 * ld + l0 + i, ld, kc, valid, dst + i * kc);
    } else {
      Kernel::template pack_transpose<W>(M + (l0 + i) * ld + p0, ld, kc, valid, dst + i * kc);
    }
  }
}

// Waits until *counter reaches target. The awaited units are running on
// another thread (they precede the waiter's own unit in ticket order), so the
// wait is at most one unit long; yielding keeps an oversubscribed machine moving.
inline void wait_for_count(const int64_t* counter, int64_t target) {
  for (unsigned spins = 0; __atomic_load_n(counter, __ATOMIC_ACQUIRE) < target; ++spins) {
#if defined(__x86_64__) || defined(__i386__)
    _mm_pause();
#endif
    if ((spins & 255u) == 255u) sched_yield();
  }
}

// The work of one call, cut into units that the threads take in ticket order.
// C's columns go in panels of nc_max; B's panel (all of K x nc) is packed once,
// shared, by `pack_units` units, then `compute_units` units each pack their own
// block of A rows and multiply it with a range of the panel's strips. Units
// are small and taken on demand, so a thread that loses its core (to another
// library's spinning threads, say) does fewer of them instead of holding
// everyone up, and no part of B is packed twice.
template <class Kernel>
struct GemmPlan {
  bool trans_a, trans_b;
  int64_t M, N, K;
  float alpha, beta;
  const float* A;
  int64_t lda;
  const float* B;
  int64_t ldb;
  float* C;
  int64_t ldc;
  const float* a_packed;  // op(A) in pack_a_blocked's layout, or nullptr: pack per unit

  int64_t kc_max = 0, nc_max = 0, strips_max = 0, panels = 0;
  int64_t m_tiles = 0, row_blocks = 0, col_blocks = 0, mc_max = 0;
  int64_t short_blocks = 0;  // the last row blocks, half as tall as the others
  int64_t pack_units = 0, compute_units = 0;
  float* bpack[2] = {};  // panel q is packed into bpack[q % 2]
  int64_t next_ticket = 0;
  // Units finished per buffer, counted over every panel that used it.
  int64_t packed[2] = {};
  int64_t computed[2] = {};

  int64_t tickets() const { return panels * (pack_units + compute_units); }

  // First MR-row tile of row block rb. The short blocks come last, so the
  // final units of a panel are small and the threads finish close together.
  int64_t row_tile(int64_t rb) const {
    const int64_t tall = row_blocks - short_blocks;
    const int64_t weight = 2 * min64(rb, tall) + (rb > tall ? rb - tall : 0);
    return m_tiles * weight / (2 * tall + short_blocks);
  }

  // Unit u of panel q packs a share of the panel's (depth block, strip)
  // pieces, depth-major: a unit reads its rows of op(B) from end to end and
  // fills the packed buffer in order. (Strip-major read each strip's 16
  // floats from every one of K rows in turn: with rows 4 KiB or more apart,
  // a TLB miss per row, and packing took a quarter of a 64 x 1024 x 3136
  // product.) A panel of one or two strips (the few columns of a batch-1
  // conv on a small plane) still splits over the threads by depth.
  void pack_unit(int64_t q, int64_t u) const {
    constexpr int NR = Kernel::NR;
    const int64_t jc = q * nc_max;
    const int64_t strips = ceil_div(min64(nc_max, N - jc), NR);
    const int64_t depths = ceil_div(K, kc_max);
    const int64_t p0 = strips * depths * u / pack_units;
    const int64_t p1 = strips * depths * (u + 1) / pack_units;
    for (int64_t piece = p0; piece < p1; ++piece) {
      const int64_t s = piece % strips;
      const int64_t pc = piece / strips * kc_max;
      const int64_t kc = min64(kc_max, K - pc);
      const int64_t c0 = jc + s * NR;
      // op(B)[pc .. pc+kc, c0 .. c0+NR) as one NR-column strip.
      pack_strips<Kernel, NR>(!trans_b, B, ldb, c0, min64(NR, N - c0), pc, kc,
                              bpack[q % 2] + pc * strips_max * NR + s * NR * kc);
    }
  }

  void compute_unit(int64_t q, int64_t u, float* ap) const {
    constexpr int MR = Kernel::MR;
    constexpr int NR = Kernel::NR;
    const int64_t jc = q * nc_max;
    const int64_t strips = ceil_div(min64(nc_max, N - jc), NR);
    const int64_t rb = u / col_blocks;
    const int64_t cb = u % col_blocks;
    const int64_t i0 = row_tile(rb) * MR;
    const int64_t i1 = min64(M, row_tile(rb + 1) * MR);
    const int64_t s0 = strips * cb / col_blocks;
    const int64_t s1 = strips * (cb + 1) / col_blocks;
    if (i0 >= i1 || s0 >= s1) return;
    const int64_t mc = i1 - i0;
    for (int64_t pc = 0; pc < K; pc += kc_max) {
      const int64_t kc = min64(kc_max, K - pc);
      // Later depth blocks add onto what the first one wrote.
      const float beta_pc = pc == 0 ? beta : 1.0f;
      // op(A)[i0 .. i0+mc, pc .. pc+kc) in MR-row strips.
      const float* as = ap;
      if (a_packed != nullptr) {
        as = a_packed + pc * m_tiles * MR + i0 * kc;
      } else {
        pack_strips<Kernel, MR>(trans_a, A, lda, i0, mc, pc, kc, ap);
      }
      const float* bp = bpack[q % 2] + pc * strips_max * NR;
      for (int64_t s = s0; s < s1; ++s) {
        const int64_t j = jc + s * NR;
        const int64_t cols = min64(NR, N - j);
        for (int64_t ir = 0; ir < mc; ir += MR) {
          Kernel::tile(kc, as + ir * kc, bp + s * NR * kc, alpha, beta_pc, C + (i0 + ir) * ldc + j,
                       ldc, min64(MR, mc - ir), cols);
        }
      }
    }
  }

  // One thread's share: take tickets until none are left. Every unit depends
  // only on units with earlier tickets, so some thread can always proceed
  // (a lone thread simply runs them all in order).
  void work() {
    float* ap = a_packed != nullptr
                    ? nullptr
                    : thread_workspace(WorkspaceSlot::GemmPackA, static_cast<size_t>(mc_max * kc_max));
    const int64_t per_panel = pack_units + compute_units;
    for (int64_t t = __atomic_fetch_add(&next_ticket, 1, __ATOMIC_RELAXED); t < tickets();
         t = __atomic_fetch_add(&next_ticket, 1, __ATOMIC_RELAXED)) {
      const int64_t q = t / per_panel;
      const int64_t u = t % per_panel;
      const int64_t slot = q % 2;
      if (u < pack_units) {
        // The buffer is free once every product with panel q - 2 is done.
        wait_for_count(&computed[slot], q / 2 * compute_units);
        pack_unit(q, u);
        __atomic_fetch_add(&packed[slot], 1, __ATOMIC_RELEASE);
      } else {
        wait_for_count(&packed[slot], (q / 2 + 1) * pack_units);
        compute_unit(q, u - pack_units, ap);
        __atomic_fetch_add(&computed[slot], 1, __ATOMIC_RELEASE);
      }
    }
  }
};

// The depth of each block of A that the driver packs for a K-deep product:
// pack_a_blocked must cut K the same way.
template <class Kernel>
int64_t depth_block(int64_t K) {
  return balanced_block(K, Kernel::KC, 1);
}

// Floats of pack_a_blocked's buffer for op(A) of M x K: rows padded to whole tiles.
template <class Kernel>
int64_t packed_a_floats(int64_t M, int64_t K) {
  return ceil_div(M, Kernel::MR) * Kernel::MR * K;
}

// Packs all of op(A) as the driver's units would, once: the depth block at
// pc (of depth_block(K) depth, the last one shorter) starts at pc * Mpad
// (Mpad = M rounded up to MR), and within it each MR-row strip of that depth
// follows the previous one, zero padded. The layout depends on the kernel and
// K only, never on N or the thread count.
template <class Kernel>
void pack_a_blocked(bool trans_a, int64_t M, int64_t K, const float* A, int64_t lda, float* dst) {
  constexpr int MR = Kernel::MR;
  const int64_t kc_max = depth_block<Kernel>(K);
  const int64_t m_pad = ceil_div(M, MR) * MR;
  const int64_t tiles = ceil_div(M, MR);
  // Tiles of rows at a time, every depth block of each: the work items are
  // independent and each thread writes its own part of dst.
  parallel_for(tiles, MR * K, [&](int64_t t0, int64_t t1) {
    for (int64_t pc = 0; pc < K; pc += kc_max) {
      const int64_t kc = min64(kc_max, K - pc);
      const int64_t i0 = t0 * MR;
      pack_strips<Kernel, MR>(trans_a, A, lda, i0, min64(t1 * MR, M) - i0, pc, kc, dst + pc * m_pad + i0 * kc);
    }
  });
}

// C = alpha * op(A) * op(B) + beta * C, with op(A) either packed here unit by
// unit (a_packed == nullptr) or read from pack_a_blocked's buffer (then A,
// lda and trans_a are not used).
template <class Kernel>
void sgemm_blocked(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                   const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
                   int64_t ldc, const float* a_packed = nullptr) {
  constexpr int MR = Kernel::MR;
  constexpr int NR = Kernel::NR;
  // Below ~1 MFLOP per thread, waking a thread costs more than it saves.
  // (double: the product of three int64 sizes may not fit in int64.)
  const double flops = 2.0 * static_cast<double>(M) * static_cast<double>(N) * static_cast<double>(K);
  int64_t threads = in_parallel_region() ? 1 : num_threads();
  if (flops < 1e15) threads = min64(threads, 1 + static_cast<int64_t>(flops / (1 << 20)));
  GemmPlan<Kernel> plan{trans_a, trans_b, M, N, K, alpha, beta, A, lda, B, ldb, C, ldc, a_packed};
  plan.kc_max = depth_block<Kernel>(K);
  // The shared panel holds all of K, within the kernel's KC x NC budget (sized
  // for the last-level cache), and is at least one strip wide.
  const int64_t width = min64(Kernel::NC, (Kernel::KC * Kernel::NC / K) / NR * NR);
  plan.nc_max = balanced_block(N, width < NR ? NR : width, NR);
  plan.strips_max = ceil_div(plan.nc_max, NR);
  plan.panels = ceil_div(N, plan.nc_max);
  // Row blocks keep the A block within L2 (MC rows). With several threads a
  // panel is cut into ~6 units per thread, so that the last units even out
  // the threads' speeds: first into more row blocks (down to two tiles each),
  // then into column ranges (each of which repacks its rows of A).
  plan.m_tiles = ceil_div(M, MR);
  const int64_t wanted = threads > 1 ? 6 * threads : 1;
  const int64_t l2_blocks = ceil_div(plan.m_tiles, Kernel::MC / MR);
  const int64_t finest = ceil_div(plan.m_tiles, 2);
  plan.row_blocks = l2_blocks >= wanted ? l2_blocks : min64(wanted, finest > l2_blocks ? finest : l2_blocks);
  plan.col_blocks = min64(plan.strips_max, ceil_div(wanted, plan.row_blocks));
  // One short block per thread ends each panel, where there are enough blocks.
  plan.short_blocks = threads > 1 && plan.row_blocks >= 3 * threads ? threads : 0;
  for (int64_t rb = 0; rb < plan.row_blocks; ++rb) {
    plan.mc_max = max64(plan.mc_max, (plan.row_tile(rb + 1) - plan.row_tile(rb)) * MR);
  }
  plan.pack_units = min64(plan.strips_max * ceil_div(K, plan.kc_max), 2 * threads);
  plan.compute_units = plan.row_blocks * plan.col_blocks;
  const int64_t panel_floats = K * plan.strips_max * NR;
  const int64_t buffers = plan.panels > 1 ? 2 : 1;
  plan.bpack[0] = thread_workspace(WorkspaceSlot::GemmPackB, static_cast<size_t>(buffers * panel_floats));
  plan.bpack[1] = plan.bpack[0] + (buffers - 1) * panel_floats;
  // One chunk per thread, each taking units until none are left. The thread
  // count was settled above, so the work estimate is set high enough that
  // parallel_for does not second-guess it.
  parallel_for(threads, int64_t{1} << 30, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) plan.work();
  });
}

// sgemm_blocked with op(A) read from pack_a_blocked's buffer: a
// PackedSgemmKernel's run (cpu/gemm/kernels.h) for each ISA build.
template <class Kernel>
void sgemm_blocked_packed(const float* a_packed, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                          const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  sgemm_blocked<Kernel>(false, trans_b, M, N, K, alpha, nullptr, 0, B, ldb, beta, C, ldc, a_packed);
}

// The portable kernel: plain loops that the compiler vectorises for whatever
// the including file is built for. Used by the scalar build.
template <int MR_, int NR_>
struct GenericKernel {
  static constexpr int MR = MR_;
  static constexpr int NR = NR_;
  static constexpr int64_t MC = 120;
  static constexpr int64_t KC = 256;
  static constexpr int64_t NC = 2048;

  // dst[k * W + c] = src[k * ld + c] for c < valid, zero beyond.
  template <int W>
  static void pack_copy(const float* src, int64_t ld, int64_t kc, int64_t valid, float* dst) {
    for (int64_t k = 0; k < kc; ++k) {
      for (int64_t c = 0; c < W; ++c) dst[k * W + c] = c < valid ? src[k * ld + c] : 0.0f;
    }
  }

  // dst[k * W + c] = src[c * ld + k] for c < valid, zero beyond.
  template <int W>
  static void pack_transpose(const float* src, int64_t ld, int64_t kc, int64_t valid, float* dst) {
    for (int64_t k = 0; k < kc; ++k) {
      for (int64_t c = 0; c < W; ++c) dst[k * W + c] = c < valid ? src[c * ld + k] : 0.0f;
    }
  }

  // acc = sum_k a[k] (x) b[k]; then C = alpha*acc + beta*C on the valid part.
  static void tile(int64_t kc, const float* a, const float* b, float alpha, float beta, float* C,
                   int64_t ldc, int64_t rows, int64_t cols) {
    float acc[MR][NR] = {};
    for (int64_t k = 0; k < kc; ++k) {
      for (int r = 0; r < MR; ++r) {
        const float av = a[r];
        for (int c = 0; c < NR; ++c) acc[r][c] += av * b[c];
      }
      a += MR;
      b += NR;
    }
    for (int64_t r = 0; r < rows; ++r) {
      float* crow = C + r * ldc;
      if (beta == 0.0f) {
        for (int64_t c = 0; c < cols; ++c) crow[c] = alpha * acc[r][c];
      } else {
        for (int64_t c = 0; c < cols; ++c) crow[c] = alpha * acc[r][c] + beta * crow[c];
      }
    }
  }
};

}  // namespace
}  // namespace cnnkit
