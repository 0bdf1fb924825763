// linkage: agglomerative clustering of the rows of X into SciPy's linkage matrix.
//
// Algorithms (SciPy's, with its tie-breaking, so merge orders agree up to ties):
// - Ward: the nearest-neighbour chain over cluster centroids and sizes. The Ward distance of
//   clusters a, b is sqrt(2 n_a n_b / (n_a + n_b)) ||c_a - c_b|| (SciPy's: for two points, their
//   euclidean distance); the chain compares the cost n_a n_b / (n_a + n_b) ||c_a - c_b||^2.
//   Centroids live in slots packed at the front of one [n x d] double array: a merged-away
//   cluster's slot is filled by the last slot, so each nearest-neighbour search is one
//   contiguous scan over the active clusters. The scan reads a 16-bit fixed-point copy with
//   proven error bounds and decides in double among the few clusters the bounds cannot rule
//   out (see ward_nn_chain). A cluster's re-search after its nearest neighbour merged replays
//   the merges since its last search against its 4 recorded nearest clusters instead of
//   scanning, when one of them is unchanged. Memory: n*d doubles + n*d int16 + O(n).
//   Cost: the chain makes about 3 searches per merge (~2 scans with the replays), each over the
//   m clusters still active: ~2-3 n^2/2 distance evaluations of d multiply-adds in all
//   (2.6e10-3.8e10 at 20,000 x 64), reading m*d*2 bytes per scan.
// - single: Prim's minimum spanning tree from row 0. Each step computes the distances from the
//   row added last to every row not yet in the tree (on the fly: no matrix), lowers their
//   distance to the tree and takes the nearest (lowest id among equals). Rows not in the tree
//   are packed at the front of a double copy of X, so the scan is contiguous. Euclidean and
//   sqeuclidean screen a 16-bit fixed-point copy as Ward does (single_prim_screened).
//   Memory: n*d doubles (+ n*d int16) plus O(n). Cost: n^2/2 distances of d multiply-adds.
// - average, complete: the nearest-neighbour chain over the condensed distance matrix (SciPy's
//   pdist layout, n(n-1)/2 doubles), updated by the Lance-Williams formula. Cost: n^2/2
//   distances to fill it, then O(n) scans and updates of a row (strided for the part before
//   the diagonal).
// Rows are merged in the chain's order, then sorted by height (stable) and numbered by a
// union-find pass: SciPy's `label`. Everything is double whatever X's dtype, as in SciPy.
// Thread count never changes the answer: every reduction is a (value, id) minimum, and the
// scans are shared between threads by ScanTeam.
#include "cpu/linkage.hpp"

#include <omp.h>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <atomic>
#include <exception>
#include <functional>
#include <thread>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

namespace fastlatent::cpu {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr int64_t kNoId = std::numeric_limits<int64_t>::max();
// A scan of fewer multiply-adds than this runs on one thread: a parallel region costs a few
// microseconds on an idle machine (far more when other processes share the cores and a thread
// waits for a descheduled one), about what 128k multiply-adds take.
constexpr int64_t kParallelWork = int64_t(1) << 17;
// Work of one item of a condensed-matrix scan, in multiply-adds: a strided read, mostly a
// cache miss.
constexpr int64_t kCondensedWork = 16;

struct Candidate {
  double value;
  int64_t id;
};

inline bool before(const Candidate& a, const Candidate& b) {
  return a.value < b.value || (a.value == b.value && a.id < b.id);
}

struct Merge {
  int64_t a, b;  // one member row of each cluster merged
  double height;
};

// Distances from row x to four rows at once: four independent accumulators hide the add
// latency (one accumulator per distance leaves the scan latency-bound, ~4x slower), and x is
// loaded once for the four. Every distance in this file comes from here, a single one with
// the same row four times, so a distance never depends on which rows it was computed with.
template <Metric M>
inline void distances4(const double* x, const double* r0, const double* r1, const double* r2,
                       const double* r3, int64_t d, double out[4]) {
  double a0 = 0.0, a1 = 0.0, a2 = 0.0, a3 = 0.0;
#pragma omp simd reduction(+ : a0, a1, a2, a3)
  for (int64_t j = 0; j < d; ++j) {
    const double xj = x[j];
    if constexpr (M == Metric::cosine) {
      a0 += xj * r0[j];
      a1 += xj * r1[j];
      a2 += xj * r2[j];
      a3 += xj * r3[j];
    } else if constexpr (M == Metric::manhattan) {
      a0 += std::abs(xj - r0[j]);
      a1 += std::abs(xj - r1[j]);
      a2 += std::abs(xj - r2[j]);
      a3 += std::abs(xj - r3[j]);
    } else {
      const double t0 = xj - r0[j], t1 = xj - r1[j], t2 = xj - r2[j], t3 = xj - r3[j];
      a0 += t0 * t0;
      a1 += t1 * t1;
      a2 += t2 * t2;
      a3 += t3 * t3;
    }
  }
  out[0] = a0;
  out[1] = a1;
  out[2] = a2;
  out[3] = a3;
  for (int k = 0; k < 4; ++k) {
    if constexpr (M == Metric::euclidean) out[k] = std::sqrt(out[k]);
    if constexpr (M == Metric::cosine) out[k] = std::clamp(1.0 - out[k], 0.0, 2.0);
  }
}

// Distances from x to the rows [begin, end) of R (packed, d columns); out[t - begin].
template <Metric M>
inline void distances_to_rows(const double* x, const double* R, int64_t begin, int64_t end,
                              int64_t d, double* out) {
  int64_t t = begin;
  for (; t + 4 <= end; t += 4) {
    const double* r = R + size_t(t) * d;
    distances4<M>(x, r, r + d, r + 2 * d, r + 3 * d, d, out + (t - begin));
  }
  for (; t < end; ++t) {
    const double* r = R + size_t(t) * d;
    double four[4];
    distances4<M>(x, r, r, r, r, d, four);
    out[t - begin] = four[0];
  }
}

template <Metric M>
inline double distance_one(const double* x, const double* r, int64_t d) {
  double four[4];
  distances4<M>(x, r, r, r, r, d, four);
  return four[0];
}

inline double dot(const double* a, const double* b, int64_t d) {
  double acc = 0.0;
#pragma omp simd reduction(+ : acc)
  for (int64_t j = 0; j < d; ++j) acc += a[j] * b[j];
  return acc;
}

// X in double; for cosine each row divided by its norm (a zero row stays zero: the Python
// layer refuses zero rows under cosine, as scikit-learn does).
template <class T>
std::vector<double> rows_as_double(const T* X, int64_t n, int64_t d, Metric metric) {
  std::vector<double> R(size_t(n) * size_t(d));
#pragma omp parallel for schedule(static) if (n * d >= kParallelWork)
  for (int64_t i = 0; i < n; ++i) {
    double* r = &R[size_t(i) * size_t(d)];
    for (int64_t j = 0; j < d; ++j) r[j] = double(X[size_t(i) * size_t(d) + size_t(j)]);
    if (metric == Metric::cosine) {
      const double norm = std::sqrt(dot(r, r, d));
      if (norm > 0.0)
        for (int64_t j = 0; j < d; ++j) r[j] /= norm;
    }
  }
  return R;
}

// A team of threads for the many short scans of one clustering (a chain step, a Prim step: a
// few hundred microseconds each). An OpenMP region per scan would cost little on idle cores,
// but where other processes share the cores a region waits at its barrier for a descheduled
// thread, every time (measured: Ward of 20,000 x 64 took 188 s on 2 threads at load 6, 12 s on
// one). So the team lives for the whole clustering: thread 0 drives the algorithm, and every
// thread claims chunks of each scan through an atomic counter; when a thread is descheduled,
// the driver computes its chunks itself and waits only for a chunk already claimed. Per-chunk
// results are kept by chunk, so the answer never depends on who computed what.
class ScanTeam {
 public:
  using Scan = std::function<Candidate(int64_t, int64_t)>;

  explicit ScanTeam(int n_threads) : n_threads_(std::max(1, n_threads)) {}

  // Runs body() on thread 0 while the other threads serve its scans; rethrows its exception.
  template <class Body>
  void run(const Body& body) {
    if (n_threads_ == 1) {
      body();
      return;
    }
    std::exception_ptr error;
#pragma omp parallel num_threads(n_threads_)
    {
      if (omp_get_thread_num() == 0) {
        try {
          body();
        } catch (...) {
          error = std::current_exception();
        }
        stop_.store(true, std::memory_order_release);
      } else {
        serve();
      }
    }
    if (error) std::rethrow_exception(error);
  }

  // The minimum by (value, id) of scan(begin, end) over chunks of [0, count); scan may update
  // state in its chunk. work_per_item: multiply-adds per item, to size the chunks.
  Candidate min(int64_t count, int64_t work_per_item, const Scan& scan) {
    const int64_t chunk = std::max<int64_t>(64, kChunkWork / std::max<int64_t>(1, work_per_item));
    const int64_t n_chunks = (count + chunk - 1) / chunk;
    if (n_threads_ == 1 || n_chunks <= 1) return scan(0, count);
    if (int64_t(results_.size()) < n_chunks) results_.resize(n_chunks);
    scan_ = &scan;
    count_ = count;
    chunk_ = chunk;
    n_chunks_ = n_chunks;
    done_.store(0, std::memory_order_relaxed);
    ++epoch_;
    claim_.store(epoch_ << 32, std::memory_order_release);  // publishes the fields above
    work(epoch_);
    for (int spins = 0; done_.load(std::memory_order_acquire) < n_chunks; ++spins) pause(spins);
    Candidate best{kInf, kNoId};
    for (int64_t c = 0; c < n_chunks; ++c)
      if (before(results_[c], best)) best = results_[c];
    return best;
  }

 private:
  static constexpr int64_t kChunkWork = int64_t(1) << 14;

  static void pause(int spins) {
    if (spins < 256)
      __builtin_ia32_pause();
    else
      std::this_thread::yield();
  }

  // Claims and computes chunks of scan `epoch` until none is left (or a newer scan started).
  void work(uint64_t epoch) {
    uint64_t seen = claim_.load(std::memory_order_acquire);
    while (true) {
      if ((seen >> 32) != epoch || int64_t(seen & 0xffffffffu) >= n_chunks_) return;
      if (!claim_.compare_exchange_weak(seen, seen + 1, std::memory_order_acq_rel)) continue;
      // The driver waits for this chunk, so the scan's fields stay valid until done_ counts it.
      const int64_t c = int64_t(seen & 0xffffffffu);
      const int64_t begin = c * chunk_, end = std::min(count_, begin + chunk_);
      results_[c] = (*scan_)(begin, end);
      done_.fetch_add(1, std::memory_order_release);
      seen = claim_.load(std::memory_order_acquire);
    }
  }

  void serve() {
    uint64_t served = 0;
    for (int spins = 0;; ++spins) {
      if (stop_.load(std::memory_order_acquire)) return;
      const uint64_t epoch = claim_.load(std::memory_order_acquire) >> 32;
      if (epoch != served) {
        served = epoch;
        work(epoch);
        spins = 0;
      } else {
        pause(spins);
      }
    }
  }

  const int n_threads_;
  uint64_t epoch_ = 0;                      // driver only
  std::atomic<uint64_t> claim_{0};          // (epoch << 32) | next chunk
  std::atomic<int64_t> done_{0};            // chunks finished in this epoch
  std::atomic<bool> stop_{false};
  const Scan* scan_ = nullptr;
  int64_t count_ = 0, chunk_ = 1, n_chunks_ = 0;
  std::vector<Candidate> results_;
};

// Rows per call of distances_to_rows inside a scan: a small buffer on the stack.
constexpr int64_t kScanBlock = 64;

// The Ward weight n_a n_b / (n_a + n_b); symmetric to the last bit.
inline double ward_weight(double na, double nb) { return na * nb / (na + nb); }

// The screening passes (Ward's searches, Prim's steps on euclidean distances) read a 16-bit
// fixed-point copy of the rows, centred and scaled into [-1, 1]: value v is stored as
// round(v * kScreenScale). Differences of two stored values fit int16 and their squares,
// summed in pairs (vpmaddwd), fit int32 exactly; the pair sums are accumulated in float32.
// A quarter of the bytes of a double scan, and half the instructions of a half-precision one
// (whose conversions bounded the scan). The rounding is absolute: each stored coordinate is
// within 0.5 / kScreenScale of its value, so a distance is within sqrt(d) / kScreenScale of
// the exact one (see ScreenBounds).
using ScreenValue = int16_t;
constexpr double kScreenScale = 16383.0;  // |difference| <= 32766: fits int16, its square pairs int32
inline ScreenValue to_screen(double v) { return ScreenValue(std::lrint(v * kScreenScale)); }

#if defined(__AVX2__)
inline float horizontal_sum(__m256 v) {
  const __m128 q = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 p = _mm_add_ps(q, _mm_movehl_ps(q, q));
  return _mm_cvtss_f32(_mm_add_ss(p, _mm_shuffle_ps(p, p, 1)));
}
#endif

// Squared distances (in stored units, kScreenScale^2 times the scaled ones) from x to four rows.
inline void screen_distances4(const ScreenValue* x, const ScreenValue* r0, const ScreenValue* r1,
                              const ScreenValue* r2, const ScreenValue* r3, int64_t d,
                              float out[4]) {
  float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
  int64_t j = 0;
#if defined(__AVX2__)
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  auto load = [](const ScreenValue* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); };
  for (; j + 16 <= d; j += 16) {
    const __m256i xv = load(x + j);
    const __m256i t0 = _mm256_sub_epi16(xv, load(r0 + j)), t1 = _mm256_sub_epi16(xv, load(r1 + j));
    const __m256i t2 = _mm256_sub_epi16(xv, load(r2 + j)), t3 = _mm256_sub_epi16(xv, load(r3 + j));
    a0 = _mm256_add_ps(a0, _mm256_cvtepi32_ps(_mm256_madd_epi16(t0, t0)));
    a1 = _mm256_add_ps(a1, _mm256_cvtepi32_ps(_mm256_madd_epi16(t1, t1)));
    a2 = _mm256_add_ps(a2, _mm256_cvtepi32_ps(_mm256_madd_epi16(t2, t2)));
    a3 = _mm256_add_ps(a3, _mm256_cvtepi32_ps(_mm256_madd_epi16(t3, t3)));
  }
  s0 = horizontal_sum(a0);
  s1 = horizontal_sum(a1);
  s2 = horizontal_sum(a2);
  s3 = horizontal_sum(a3);
#endif
  for (; j < d; ++j) {
    const int32_t t0 = int32_t(x[j]) - r0[j], t1 = int32_t(x[j]) - r1[j];
    const int32_t t2 = int32_t(x[j]) - r2[j], t3 = int32_t(x[j]) - r3[j];
    s0 += float(t0 * t0);
    s1 += float(t1 * t1);
    s2 += float(t2 * t2);
    s3 += float(t3 * t3);
  }
  out[0] = s0;
  out[1] = s1;
  out[2] = s2;
  out[3] = s3;
}

// Bounds of the exact squared distance (scaled space) given the screened one `stored` (stored
// units). The float32 sums of exact integer terms are within (d + 4) u of their value
// (relative: every term is positive); each distance is within e = sqrt(d) / kScreenScale of
// the exact one, and without square roots (a +- e)^2 lies within a^2 (1 +- eta) + e^2 (1 +- 1/eta).
struct ScreenBounds {
  double to_scaled, sum_low, sum_high, e2_low, e2_high;
  explicit ScreenBounds(int64_t d) {
    constexpr double u = 1.0 / (1 << 24), eta = 1.0 / 4096;
    const double sum_error = double(d + 4) * u;
    const double e = std::sqrt(double(d)) / kScreenScale * (1.0 + 1e-6);
    to_scaled = 1.0 / (kScreenScale * kScreenScale);
    sum_low = (1.0 - sum_error) * (1.0 - eta) * (1.0 - 1e-12);
    sum_high = (1.0 + 2.0 * sum_error) * (1.0 + eta) * (1.0 + 1e-12);
    e2_low = e * e * (1.0 / eta - 1.0);
    e2_high = e * e * (1.0 + 1.0 / eta) * (1.0 + 1e-12);
  }
  double low(float stored) const { return std::max(0.0, double(stored) * to_scaled * sum_low - e2_low); }
  double high(float stored) const { return double(stored) * to_scaled * sum_high + e2_high; }
};

// Ward by the nearest-neighbour chain over centroids (see the file comment). C is X in double,
// row i in slot i; it is overwritten.
//
// Each nearest-neighbour search screens in 16-bit fixed point and decides in double. The
// centroids are centred and scaled by a power of two (exact, and Ward's merges do not change) so
// that every value is at most 1 in magnitude; the fixed-point copy H (see ScreenValue) is scanned,
// giving for every cluster an interval that holds its exact double cost (ScreenBounds, then
// float32 arithmetic with margins). Only clusters whose lower end is within the smallest upper
// end are then costed in double (about 1.1 per search on random data), so the nearest neighbour,
// ties included, is the one an all-double scan finds. Far outliers coarsen the grid for all
// (the bound is absolute): more clusters are costed in double, the answer does not change.
std::vector<Merge> ward_nn_chain(std::vector<double>& C, int64_t n, int64_t d, ScanTeam& team) {
  // Centre and scale: at most 1 in magnitude, by a power of two.
  std::vector<double> mean(d, 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < d; ++j) mean[j] += C[size_t(i) * d + j];
  for (int64_t j = 0; j < d; ++j) mean[j] /= double(n);
  double largest = 0.0;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < d; ++j) {
      C[size_t(i) * d + j] -= mean[j];
      largest = std::max(largest, std::abs(C[size_t(i) * d + j]));
    }
  int exponent = 0;
  if (largest > 0.0) std::frexp(largest, &exponent);  // largest < 2^exponent
  for (double& value : C) value = std::ldexp(value, -exponent);

  std::vector<double> size(n, 1.0);  // by slot
  std::vector<int64_t> id_of(n), slot_of(n);
  std::iota(id_of.begin(), id_of.end(), 0);
  std::iota(slot_of.begin(), slot_of.end(), 0);
  std::vector<char> active(n, 1);  // by id
  std::vector<ScreenValue> H(C.size());
  for (size_t i = 0; i < C.size(); ++i) H[i] = to_screen(C[i]);
  // By slot: the lower end of the cost to the chain's top, and the sizes, in float32: the
  // screening arithmetic runs 8 wide in float32, its rounding (< 1e-6 relative) absorbed by
  // margins of 1e-5 on top of the bounds' own.
  std::vector<float> lower(n), size_float(n, 1.0f);
  const ScreenBounds bounds(d);
  const float to_scaled = float(bounds.to_scaled);
  const float sum_low = float(bounds.sum_low * (1.0 - 1e-5)), e2_low = float(bounds.e2_low * (1.0 + 1e-5));
  const float sum_high = float(bounds.sum_high * (1.0 + 1e-5)), e2_high = float(bounds.e2_high * (1.0 + 1e-5));
  constexpr float below = 1.0f - 1e-5f, above = 1.0f + 1e-5f;
  std::vector<int64_t> chain;
  chain.reserve(n);
  std::vector<Merge> merges;
  merges.reserve(n - 1);
  int64_t n_active = n, first_active = 0;

  auto cost = [&](int64_t slot_x, int64_t slot) {
    return ward_weight(size[slot], size[slot_x]) *
           distance_one<Metric::sqeuclidean>(&C[size_t(slot_x) * d], &C[size_t(slot) * d], d);
  };

  // What each cluster's last full search found: its kNear nearest clusters, exact, as of that
  // search (`time`, the number of merges then). About one search per merge is a cluster's
  // second one: the chain's new top after a merge, whose nearest neighbour was just merged.
  // Its costs to every cluster unchanged since then are the same, so when one of its recorded
  // neighbours is still unchanged, its nearest is the best of those and of the clusters grown
  // since (one exact cost per merge since): no scan. A cluster grows only as the survivor b of
  // a merge, which bumps its version.
  constexpr int kNear = 4;
  constexpr int64_t kMaxReplay = 64;
  struct Near {
    int64_t time = -1;
    uint32_t version = 0;
    int count = 0;
    Candidate entry[kNear];  // sorted by (cost, id); complete up to entry[count - 1]
    uint32_t entry_version[kNear];
  };
  std::vector<Near> near(n);
  std::vector<uint32_t> version(n, 0);  // by id

  for (int64_t k = 0; k < n - 1; ++k) {
    if (chain.empty()) {
      while (!active[first_active]) ++first_active;
      chain.push_back(first_active);
    }
    int64_t x, y;
    double best_cost;
    while (true) {
      x = chain.back();
      const int64_t sx = slot_of[x];
      const ScreenValue* fx = &H[size_t(sx) * d];
      const float nx_float = size_float[sx];
      Candidate best{kInf, kNoId};
      bool found = false;
      Near& cache = near[x];
      const int64_t now = int64_t(merges.size());
      if (cache.time >= 0 && cache.count > 0 && cache.version == version[x] &&
          now - cache.time <= kMaxReplay) {
        for (int i = 0; i < cache.count; ++i) {
          const Candidate& c = cache.entry[i];
          if (active[c.id] && version[c.id] == cache.entry_version[i] && before(c, best)) best = c;
        }
        for (int64_t m = cache.time; m < now; ++m) {
          const int64_t grown = merges[m].b;
          if (!active[grown] || grown == x) continue;
          const Candidate c{cost(sx, slot_of[grown]), grown};
          if (before(c, best)) best = c;
        }
        // Every unchanged cluster not recorded is beyond the last entry.
        found = best.id != kNoId && !before(cache.entry[cache.count - 1], best);
      }
      if (!found) {
      // Screening: lower ends of the cost intervals kept per slot, and V = the smallest, over
      // chunks, kNear-th smallest upper end: at least kNear clusters cost at most V, so every
      // cluster among the kNear nearest has its lower end within V.
      const Candidate bound = team.min(n_active, d / 2, [&](int64_t begin, int64_t end) {
        float top[kNear];
        std::fill(top, top + kNear, std::numeric_limits<float>::infinity());
        float squared[kScanBlock + 4];
        float upper[kScanBlock];
        for (int64_t b = begin; b < end; b += kScanBlock) {
          const int64_t e = std::min(end, b + kScanBlock);
          for (int64_t s = b; s < e; s += 4) {
            const int64_t m = std::min<int64_t>(4, e - s);
            const ScreenValue* r = &H[size_t(s) * d];
            screen_distances4(fx, r, m > 1 ? r + d : r, m > 2 ? r + 2 * d : r,
                                     m > 3 ? r + 3 * d : r, d, &squared[s - b]);
          }
#pragma omp simd
          for (int64_t slot = b; slot < e; ++slot) {
            const float ns = size_float[slot];
            const float w = ns * nx_float / (ns + nx_float);
            const float sq = squared[slot - b] * to_scaled;
            lower[slot] = w * std::max(0.0f, sq * sum_low - e2_low) * below * below;
            upper[slot - b] = w * (sq * sum_high + e2_high) * above * above;
          }
          if (sx >= b && sx < e) {
            lower[sx] = std::numeric_limits<float>::infinity();
            upper[sx - b] = std::numeric_limits<float>::infinity();
          }
          for (int64_t t = 0; t < e - b; ++t) {
            if (!(upper[t] < top[kNear - 1])) continue;
            int i = kNear - 1;
            for (; i > 0 && upper[t] < top[i - 1]; --i) top[i] = top[i - 1];
            top[i] = upper[t];
          }
        }
        return Candidate{double(top[kNear - 1]), 0};
      });
      // Decision in double among the clusters whose lower end is within V; the kNear nearest
      // are recorded for this cluster's next search.
      cache.time = now;
      cache.version = version[x];
      cache.count = 0;
      for (int64_t slot = 0; slot < n_active; ++slot) {
        if (slot == sx || double(lower[slot]) > bound.value) continue;
        Candidate c{cost(sx, slot), id_of[slot]};
        if (cache.count == kNear && !before(c, cache.entry[kNear - 1])) continue;
        int i = cache.count < kNear ? cache.count++ : kNear - 1;
        for (; i > 0 && before(c, cache.entry[i - 1]); --i) cache.entry[i] = cache.entry[i - 1];
        cache.entry[i] = c;
      }
      for (int i = 0; i < cache.count; ++i) cache.entry_version[i] = version[cache.entry[i].id];
      if (cache.count > 0) best = cache.entry[0];
      }
      if (chain.size() > 1) {  // SciPy keeps the previous element unless another is closer
        const int64_t previous = chain[chain.size() - 2];
        const double to_previous = cost(sx, slot_of[previous]);
        if (!(best.value < to_previous)) best = {to_previous, previous};
      }
      y = best.id;
      best_cost = best.value;
      if (chain.size() > 1 && y == chain[chain.size() - 2]) break;
      chain.push_back(y);
    }
    chain.pop_back();
    chain.pop_back();
    const int64_t a = std::min(x, y), b = std::max(x, y);
    merges.push_back({a, b, std::ldexp(std::sqrt(2.0 * best_cost), exponent)});

    // The merged cluster takes b's id (SciPy's convention); a's slot gets the last slot.
    const int64_t sa = slot_of[a], sb = slot_of[b];
    const double na = size[sa], nb = size[sb];
    double* ca = &C[size_t(sa) * d];
    double* cb = &C[size_t(sb) * d];
    for (int64_t j = 0; j < d; ++j) {
      cb[j] = (na * ca[j] + nb * cb[j]) / (na + nb);
      H[size_t(sb) * d + j] = to_screen(cb[j]);
    }
    size[sb] = na + nb;
    size_float[sb] = float(na + nb);
    ++version[b];
    const int64_t last = n_active - 1;
    if (sa != last) {
      std::memcpy(ca, &C[size_t(last) * d], sizeof(double) * size_t(d));
      std::memcpy(&H[size_t(sa) * d], &H[size_t(last) * d], sizeof(ScreenValue) * size_t(d));
      size[sa] = size[last];
      size_float[sa] = size_float[last];
      id_of[sa] = id_of[last];
      slot_of[id_of[sa]] = sa;
    }
    active[a] = 0;
    --n_active;
  }
  return merges;
}

// Single linkage by Prim's algorithm (see the file comment). R is X in double (normalised rows
// for cosine), row i in slot i; it is overwritten.
template <Metric M>
std::vector<Merge> single_prim(std::vector<double>& R, int64_t n, int64_t d, ScanTeam& team) {
  std::vector<double> to_tree(n, kInf);  // by slot: distance to the tree
  std::vector<int64_t> id_of(n), slot_of(n);
  std::iota(id_of.begin(), id_of.end(), 0);
  std::iota(slot_of.begin(), slot_of.end(), 0);
  std::vector<double> newest(d);
  std::vector<Merge> merges;
  merges.reserve(n - 1);
  int64_t count = n;  // rows not in the tree occupy slots [0, count)
  int64_t current = 0;
  for (int64_t k = 0; k < n - 1; ++k) {
    // `current` joins the tree: keep its row, give its slot to the last one.
    const int64_t s = slot_of[current], last = count - 1;
    std::memcpy(newest.data(), &R[size_t(s) * d], sizeof(double) * size_t(d));
    if (s != last) {
      std::memcpy(&R[size_t(s) * d], &R[size_t(last) * d], sizeof(double) * size_t(d));
      to_tree[s] = to_tree[last];
      id_of[s] = id_of[last];
      slot_of[id_of[s]] = s;
    }
    --count;
    const double* c = newest.data();
    const Candidate best = team.min(count, d, [&](int64_t begin, int64_t end) {
      Candidate local{kInf, kNoId};
      double distance[kScanBlock];
      for (int64_t b = begin; b < end; b += kScanBlock) {
        const int64_t e = std::min(end, b + kScanBlock);
        distances_to_rows<M>(c, R.data(), b, e, d, distance);
        for (int64_t t = b; t < e; ++t) {
          if (distance[t - b] < to_tree[t]) to_tree[t] = distance[t - b];
          const Candidate candidate{to_tree[t], id_of[t]};
          if (before(candidate, local)) local = candidate;
        }
      }
      return local;
    });
    merges.push_back({current, best.id, best.value});
    current = best.id;
  }
  return merges;
}

// Centres the rows of R and scales them by a power of two so that every value is at most 1 in
// magnitude (euclidean distances keep their order; scaling by 2^-exponent is exact). Returns
// the exponent: a distance in the scaled space times 2^exponent is the distance in X's.
int centre_and_scale(std::vector<double>& R, int64_t n, int64_t d) {
  std::vector<double> mean(d, 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < d; ++j) mean[j] += R[size_t(i) * d + j];
  for (int64_t j = 0; j < d; ++j) mean[j] /= double(n);
  double largest = 0.0;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < d; ++j) {
      R[size_t(i) * d + j] -= mean[j];
      largest = std::max(largest, std::abs(R[size_t(i) * d + j]));
    }
  int exponent = 0;
  if (largest > 0.0) std::frexp(largest, &exponent);  // largest < 2^exponent
  for (double& value : R) value = std::ldexp(value, -exponent);
  return exponent;
}

// Single linkage by Prim's algorithm for the euclidean and squared euclidean metrics, screened:
// the scan reads the 16-bit fixed-point copy H of the (centred, scaled) rows, which bounds each
// exact distance from below (as in Ward's search);
// only a row whose bound is below its distance to the tree gets its exact double distance (on
// random data a few per step, about n log n in all). The tree then grows exactly as in
// single_prim, a quarter of the bytes read per step.
template <Metric M>
std::vector<Merge> single_prim_screened(std::vector<double>& R, int64_t n, int64_t d,
                                        ScanTeam& team) {
  static_assert(M == Metric::euclidean || M == Metric::sqeuclidean);
  const int exponent = centre_and_scale(R, n, d);
  std::vector<ScreenValue> H(R.size());
  for (size_t i = 0; i < R.size(); ++i) H[i] = to_screen(R[i]);
  const ScreenBounds bounds(d);
  std::vector<double> to_tree(n, kInf);  // by slot: distance to the tree
  std::vector<int64_t> id_of(n), slot_of(n);
  std::iota(id_of.begin(), id_of.end(), 0);
  std::iota(slot_of.begin(), slot_of.end(), 0);
  std::vector<double> newest(d);
  std::vector<ScreenValue> query(d);
  std::vector<Merge> merges;
  merges.reserve(n - 1);

  int64_t count = n;  // rows not in the tree occupy slots [0, count)
  int64_t current = 0;
  for (int64_t k = 0; k < n - 1; ++k) {
    const int64_t s = slot_of[current], last = count - 1;
    std::memcpy(newest.data(), &R[size_t(s) * d], sizeof(double) * size_t(d));
    std::memcpy(query.data(), &H[size_t(s) * d], sizeof(ScreenValue) * size_t(d));
    if (s != last) {
      std::memcpy(&R[size_t(s) * d], &R[size_t(last) * d], sizeof(double) * size_t(d));
      std::memcpy(&H[size_t(s) * d], &H[size_t(last) * d], sizeof(ScreenValue) * size_t(d));
      to_tree[s] = to_tree[last];
      id_of[s] = id_of[last];
      slot_of[id_of[s]] = s;
    }
    --count;
    const double* c = newest.data();
    const ScreenValue* q = query.data();
    const Candidate best = team.min(count, d / 2, [&](int64_t begin, int64_t end) {
      Candidate local{kInf, kNoId};
      float squared[kScanBlock + 4];
      for (int64_t b = begin; b < end; b += kScanBlock) {
        const int64_t e = std::min(end, b + kScanBlock);
        for (int64_t t = b; t < e; t += 4) {
          const int64_t m = std::min<int64_t>(4, e - t);
          const ScreenValue* r = &H[size_t(t) * d];
          screen_distances4(q, r, m > 1 ? r + d : r, m > 2 ? r + 2 * d : r,
                            m > 3 ? r + 3 * d : r, d, &squared[t - b]);
        }
        for (int64_t t = b; t < e; ++t) {
          const double low = bounds.low(squared[t - b]);
          const double current_sq =
              M == Metric::euclidean ? to_tree[t] * to_tree[t] : to_tree[t];
          if (!(low > current_sq)) {  // may be closer: decide exactly
            const double distance = distance_one<M>(c, &R[size_t(t) * d], d);
            if (distance < to_tree[t]) to_tree[t] = distance;
          }
          const Candidate candidate{to_tree[t], id_of[t]};
          if (before(candidate, local)) local = candidate;
        }
      }
      return local;
    });
    const double scale = M == Metric::euclidean ? std::ldexp(1.0, exponent) : std::ldexp(1.0, 2 * exponent);
    merges.push_back({current, best.id, best.value * scale});
    current = best.id;
  }
  return merges;
}

// The condensed distance matrix (SciPy's pdist layout) of the rows of R.
template <Metric M>
void fill_condensed(const std::vector<double>& R, int64_t n, int64_t d, double* D) {
#pragma omp parallel for schedule(dynamic, 16)
  for (int64_t i = 0; i < n - 1; ++i) {
    const size_t start = size_t(n) * size_t(i) - size_t(i) * size_t(i + 1) / 2;
    distances_to_rows<M>(&R[size_t(i) * d], R.data(), i + 1, n, d, D + start);
  }
}

// The condensed distance matrix of the rows of R; std::bad_alloc (MemoryError) when it cannot
// fit (the Python layer checks the memory available first).
std::vector<double> condensed_distances(const std::vector<double>& R, int64_t n, int64_t d,
                                        Metric metric) {
  std::vector<double> D(size_t(n) * size_t(n - 1) / 2);
  switch (metric) {
    case Metric::euclidean: fill_condensed<Metric::euclidean>(R, n, d, D.data()); break;
    case Metric::sqeuclidean: fill_condensed<Metric::sqeuclidean>(R, n, d, D.data()); break;
    case Metric::manhattan: fill_condensed<Metric::manhattan>(R, n, d, D.data()); break;
    case Metric::cosine: fill_condensed<Metric::cosine>(R, n, d, D.data()); break;
  }
  return D;
}

// Average or complete linkage by the nearest-neighbour chain over the condensed matrix D,
// updated in place by the Lance-Williams formula.
std::vector<Merge> pairwise_nn_chain(std::vector<double>& D, int64_t n, LinkageMethod method,
                                     ScanTeam& team) {
  auto index = [n](int64_t i, int64_t j) {  // i < j
    return size_t(n) * size_t(i) - size_t(i) * size_t(i + 1) / 2 + size_t(j - i - 1);
  };
  auto at = [&](int64_t i, int64_t j) -> double& { return i < j ? D[index(i, j)] : D[index(j, i)]; };
  std::vector<double> size(n, 1.0);  // by id; 0 once merged away
  std::vector<int64_t> chain;
  chain.reserve(n);
  std::vector<Merge> merges;
  merges.reserve(n - 1);
  int64_t first_active = 0;
  for (int64_t k = 0; k < n - 1; ++k) {
    if (chain.empty()) {
      while (size[first_active] == 0.0) ++first_active;
      chain.push_back(first_active);
    }
    int64_t x, y;
    double best_distance;
    while (true) {
      x = chain.back();
      Candidate best = team.min(n, kCondensedWork, [&](int64_t begin, int64_t end) {
        Candidate local{kInf, kNoId};
        for (int64_t i = begin; i < end; ++i) {
          if (size[i] == 0.0 || i == x) continue;
          const Candidate c{at(x, i), i};
          if (before(c, local)) local = c;
        }
        return local;
      });
      if (chain.size() > 1) {
        const int64_t previous = chain[chain.size() - 2];
        const double to_previous = at(x, previous);
        if (!(best.value < to_previous)) best = {to_previous, previous};
      }
      y = best.id;
      best_distance = best.value;
      if (chain.size() > 1 && y == chain[chain.size() - 2]) break;
      chain.push_back(y);
    }
    chain.pop_back();
    chain.pop_back();
    const int64_t a = std::min(x, y), b = std::max(x, y);
    merges.push_back({a, b, best_distance});
    const double na = size[a], nb = size[b];
    team.min(n, kCondensedWork, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        if (size[i] == 0.0 || i == a || i == b) continue;
        const double to_a = at(i, a);
        double& to_b = at(i, b);
        to_b = method == LinkageMethod::average ? (na * to_a + nb * to_b) / (na + nb)
                                                : std::max(to_a, to_b);
      }
      return Candidate{kInf, kNoId};
    });
    size[b] = na + nb;
    size[a] = 0.0;
  }
  return merges;
}

// SciPy's `label`: sort the merges by height (stable), then number the clusters by union-find.
void label_merges(const std::vector<Merge>& merges, int64_t n, bool sort_pairs, double* Z) {
  std::vector<int64_t> order(merges.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t p, int64_t q) {
    return merges[p].height < merges[q].height;
  });
  std::vector<int64_t> parent(2 * n - 1), count(2 * n - 1, 1);
  std::iota(parent.begin(), parent.end(), 0);
  auto find = [&](int64_t node) {
    while (parent[node] != node) {
      parent[node] = parent[parent[node]];  // path halving
      node = parent[node];
    }
    return node;
  };
  for (int64_t i = 0; i < n - 1; ++i) {
    const Merge& m = merges[order[i]];
    int64_t ra = find(m.a), rb = find(m.b);
    if (sort_pairs && ra > rb) std::swap(ra, rb);
    const int64_t node = n + i;
    parent[ra] = parent[rb] = node;
    count[node] = count[ra] + count[rb];
    double* z = Z + 4 * i;
    z[0] = double(ra);
    z[1] = double(rb);
    z[2] = m.height;
    z[3] = double(count[node]);
  }
}

template <class T>
void linkage_impl(const T* X, int64_t n, int64_t d, LinkageMethod method, Metric metric,
                  double* Z) {
  const char* op = "linkage";
  if (n < 2 || d < 1)
    throw std::invalid_argument(std::string(op) + ": X must have at least 2 rows and 1 column, got " +
                                std::to_string(n) + " x " + std::to_string(d));
  if (method == LinkageMethod::ward && metric != Metric::euclidean)
    throw std::invalid_argument(std::string(op) + ": Ward linkage needs the euclidean metric");
  std::vector<double> R = rows_as_double(X, n, d, metric);
  std::vector<double> D;
  if (method == LinkageMethod::average || method == LinkageMethod::complete) {
    D = condensed_distances(R, n, d, metric);
    std::vector<double>().swap(R);  // the rows are not needed any more
  }
  // One team for all the scans when they are long enough to share (see ScanTeam).
  const bool share = n * (D.empty() ? d : kCondensedWork) >= kParallelWork;
  ScanTeam team(share ? omp_get_max_threads() : 1);
  std::vector<Merge> merges;
  team.run([&] {
    switch (method) {
      case LinkageMethod::ward:
        merges = ward_nn_chain(R, n, d, team);
        break;
      case LinkageMethod::single:
        switch (metric) {
          case Metric::euclidean: merges = single_prim_screened<Metric::euclidean>(R, n, d, team); break;
          case Metric::sqeuclidean: merges = single_prim_screened<Metric::sqeuclidean>(R, n, d, team); break;
          case Metric::manhattan: merges = single_prim<Metric::manhattan>(R, n, d, team); break;
          case Metric::cosine: merges = single_prim<Metric::cosine>(R, n, d, team); break;
        }
        break;
      case LinkageMethod::average:
      case LinkageMethod::complete:
        merges = pairwise_nn_chain(D, n, method, team);
        break;
    }
  });
  label_merges(merges, n, method != LinkageMethod::single, Z);
}

}  // namespace

LinkageMethod parse_linkage_method(const std::string& name, const char* op) {
  if (name == "ward") return LinkageMethod::ward;
  if (name == "complete") return LinkageMethod::complete;
  if (name == "average") return LinkageMethod::average;
  if (name == "single") return LinkageMethod::single;
  throw std::invalid_argument(std::string(op) +
                              ": method must be one of 'ward', 'complete', 'average', 'single', "
                              "got '" + name + "'");
}

void linkage(const float* X, int64_t n, int64_t n_features, LinkageMethod method, Metric metric,
             double* Z) {
  linkage_impl(X, n, n_features, method, metric, Z);
}

void linkage(const double* X, int64_t n, int64_t n_features, LinkageMethod method,
             Metric metric, double* Z) {
  linkage_impl(X, n, n_features, method, metric, Z);
}

}  // namespace fastlatent::cpu
