// The timing of the measurement programs in this folder and the next session's: the fastest of
// `runs` runs, each `reps` calls of f, in seconds.
#pragma once

#include <chrono>

template <class F>
double Best(F f, int reps = 1, int runs = 7) {
  double best = 1e9;
  for (int r = 0; r < runs; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < reps; ++i) f();
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (dt < best) best = dt;
  }
  return best;
}
