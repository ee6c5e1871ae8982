// The timing behind the measured algorithm choices (cnnkit/autotune.h),
// shared by conv2d's and linear's dispatch.
#pragma once
#include <algorithm>
#include <chrono>
#include <exception>
#include <limits>
#include <vector>

namespace cnnkit {

// Times run(impl) for each candidate (a non-empty list, the heuristic's pick
// first) and returns the fastest. On a shared machine a single timing is
// easily off by tens of percent, and a burst of someone else's load can last
// longer than all of one candidate's runs: so each candidate is run once
// untimed (first touch of its workspace, packing), then timed at least three
// and at most ten times while its runs add up to under kShortTotal, and the
// minimum counts (load only ever adds time). A candidate already three times
// slower than the best stops after one timed run; one whose warm run took over
// kLongCall counts that run alone. Then every candidate within kClose of the
// best is timed again in three rounds (two for long calls), in turn, so that a
// burst that slowed one candidate's first runs meets the others as well; a
// challenger must beat the heuristic's pick (the first) by kMargin: the rule
// is right more often than a close, noisy timing.
template <class Impl, class Run>
const Impl* measure_fastest(const std::vector<const Impl*>& cands, Run run) {
  using Clock = std::chrono::steady_clock;
  constexpr double kLongCall = 0.05, kShortTotal = 0.02, kClose = 2.0, kMargin = 0.95;
  // A candidate that throws (a workspace it cannot get, say) never wins; if
  // all do, the first is returned and the call itself reports the error.
  auto timed = [&](const Impl* impl) {
    const auto t0 = Clock::now();
    try {
      run(*impl);
    } catch (const std::exception&) {
      return std::numeric_limits<double>::infinity();
    }
    return std::chrono::duration<double>(Clock::now() - t0).count();
  };
  std::vector<double> times(cands.size());
  size_t best = 0;
  for (size_t c = 0; c < cands.size(); ++c) {
    double time = timed(cands[c]);
    if (time <= kLongCall) {
      double spent = 0.0;
      for (int rep = 0; rep < 10; ++rep) {
        const double t = timed(cands[c]);
        time = rep == 0 ? t : std::min(time, t);
        spent += t;
        if (c > 0 && time > 3 * times[best]) break;
        if (rep >= 2 && spent > kShortTotal) break;
      }
    }
    times[c] = time;
    if (time < times[best]) best = c;
  }
  std::vector<size_t> close;
  for (size_t c = 0; c < cands.size(); ++c) {
    if (times[c] < kClose * times[best]) close.push_back(c);
  }
  const size_t rounds = times[best] <= kLongCall ? 3 : 2;
  for (size_t round = 0; close.size() > 1 && round < rounds; ++round) {
    for (size_t i = 0; i < close.size(); ++i) {
      const size_t c = close[(i + round) % close.size()];
      times[c] = std::min(times[c], timed(cands[c]));
    }
  }
  best = 0;
  for (size_t c = 1; c < cands.size(); ++c) {
    if (times[c] < (best == 0 ? kMargin : 1.0) * times[best]) best = c;
  }
  return cands[best];
}

}  // namespace cnnkit
