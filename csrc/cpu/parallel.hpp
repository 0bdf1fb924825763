// Internal to the CPU module: how many threads a parallel region gets.
#pragma once

#include <omp.h>

#include <algorithm>

namespace fastlatent::cpu::detail {

// Threads for a parallel region doing `work` multiply-adds (or comparable steps): one per
// 2^23 of work, at least one, at most omp_get_max_threads(). Waking a thread costs
// microseconds on an idle machine but up to a scheduler time slice on a busy one, and small
// regions follow each other quickly (an EM iteration on small data is a few of them). Measured
// on the 2-core machine under load: five GaussianMixture fits of the digits (1,797 x 16, K=10)
// took 21 s with every region on two threads, 0.2 s with one. Work below ~1 ms of one core
// now runs on the calling thread alone.
inline int threads_for(double work) {
  const double max_threads = std::max(1, omp_get_max_threads());
  return int(std::clamp(work / double(1 << 23), 1.0, max_threads));
}

}  // namespace fastlatent::cpu::detail
