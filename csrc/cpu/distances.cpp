// Distances between the rows of X [n_x x n_features] and Y [n_y x n_features], row-major:
// the full matrix (pairwise_distances), the nearest row (pairwise_distances_argmin_min) and the
// k nearest rows (kneighbors) of Y for every row of X.
//
// One tile engine serves all three. Y is packed once per call into panels of NR rows stored
// feature-major ([d][NR]); each thread packs a block of X rows (about 192 KiB, so it stays in
// L2) into panels of MR rows ([d][MR]). A register-blocked microkernel runs the whole feature
// loop for MR x NR pairs (6 x 16 float or 6 x 8 double: 12 AVX registers of accumulators, the
// BLIS Haswell shape); the Y panel (NR x n_features) stays in L1 while every X panel of the
// block passes it. An epilogue per op consumes the MR x NR tile: store it, or offer it to a
// bounded top-k list per row (a sorted array for small k, a heap beyond). No n_x x n_y matrix
// exists except pairwise_distances' output.
//
// Two accumulations:
// * exact: direct form (sum of (x-y)^2 or |x-y|, or x.y for cosine) in double, even for float
//   input, so near-coincident points do not cancel. Used for the full matrix, for manhattan, and
//   when k == n_y. Cost: 3 n_x n_y D flops in double; bytes: n_x D + n_y D in, n_x n_y out.
// * screened (argmin / kneighbors, euclidean / sqeuclidean / cosine, k < n_y): the key
//   s_j = |y_j|^2 - 2 x.y_j in float32 (float32 and float64 input alike), a pure GEMM (2 n_x n_y
//   D flops, FMA only), keeps the k+1 best keys per row; a rigorous bound on the key's rounding
//   error decides whether the top-k set is certain. Certain rows recompute k exact distances (2 k D flops each),
//   ambiguous rows recompute the whole row exactly. Bytes: n_x D + n_y D in, n_x k out.
// * nearest (argmin, euclidean / sqeuclidean): the same screening with k = 1, but on its own loop
//   (nearest_sqeuclidean in tile_engine.hpp, shared with the k-means step): X read in place,
//   not packed, and a vector top-1 epilogue, since with few Y panels packing X and offering
//   every key to a sorted list cost more than the GEMM itself.
// float64 input is screened in float32 by both (twice the GEMM rate), with the same exact
// float64 answers.
// The vector helpers, the exact accumulation, Y packing and the microkernel live in
// tile_engine.hpp, shared with kmeans_step.cpp.
// Results do not depend on the thread count: every row is computed by one thread, in the same
// order, whatever the partition.
#include "cpu/distances.hpp"

#include <type_traits>

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <vector>

#include "cpu/tile_engine.hpp"

namespace fastlatent::cpu {
namespace {

using namespace detail;

// ---- the tile engine ---------------------------------------------------------------------------

// Rows of X per block: the packed block stays in L2, and there are enough blocks to balance
// the threads. A multiple of MR so that only the last block has a partial panel.
inline int64_t block_rows_for(int64_t n_x, int64_t n_features, size_t element_size, int mr,
                              int n_threads) {
  const int64_t cache_rows = int64_t((192 << 10) / (size_t(n_features) * element_size));
  const int64_t balance_rows = (n_x + 4 * int64_t(n_threads) - 1) / (4 * int64_t(n_threads));
  int64_t rows = std::min(cache_rows / mr * mr, (balance_rows + mr - 1) / mr * mr);
  return std::max<int64_t>(rows, mr);
}

// Runs the microkernel over all (X panel, Y panel) pairs and hands each tile to the epilogue:
//   epilogue.prepare(n_threads, block_rows)             before the parallel region
//   epilogue.tile(thread, row0, row_in_block, rows, col0, cols, acc, x_squared_norms)
//   epilogue.end_block(thread, row0, rows, x_squared_norms)
// x_squared_norms points at the block's |x|^2 (double, unscaled rows).
template <class Op, int MR, int NV, class A, class T, class Epilogue>
void tile_engine(const T* X, int64_t n_x, int64_t n_features, bool normalise_x,
                 const A* y_packed, int64_t n_y, Epilogue& epilogue) {
  using V = typename Vec<A>::type;
  constexpr int NR = NV * Vec<A>::lanes;
  if (n_x == 0) return;
  const int max_threads = threads_for(double(n_x) * double(n_y) * double(n_features));
  const int64_t block_rows = block_rows_for(n_x, n_features, sizeof(A), MR, max_threads);
  const int64_t n_blocks = (n_x + block_rows - 1) / block_rows;
  const int n_threads = int(std::min<int64_t>(max_threads, n_blocks));
  const int64_t n_y_panels = (n_y + NR - 1) / NR;
  const size_t block_elements = size_t(block_rows) * size_t(n_features);
  // Allocated here, outside the parallel region, so that bad_alloc reaches Python.
  std::vector<A> x_packed_all(size_t(n_threads) * block_elements);
  std::vector<double> x_norms_all(size_t(n_threads) * size_t(block_rows));
  epilogue.prepare(n_threads, block_rows);

#pragma omp parallel num_threads(n_threads)
  {
    const int thread = omp_get_thread_num();
    A* x_packed = x_packed_all.data() + size_t(thread) * block_elements;
    double* x_norms = x_norms_all.data() + size_t(thread) * size_t(block_rows);
#pragma omp for schedule(static)
    for (int64_t block = 0; block < n_blocks; ++block) {
      const int64_t row0 = block * block_rows;
      const int64_t rows = std::min(block_rows, n_x - row0);
      const int64_t n_x_panels = (rows + MR - 1) / MR;
      for (int64_t p = 0; p < n_x_panels; ++p) {
        pack_panel<MR>(X + (row0 + p * MR) * n_features, std::min<int64_t>(MR, rows - p * MR),
                       n_features, normalise_x, x_packed + size_t(p) * MR * size_t(n_features),
                       x_norms + p * MR);
      }
      for (int64_t q = 0; q < n_y_panels; ++q) {
        const A* y_panel = y_packed + size_t(q) * NR * size_t(n_features);
        const int cols = int(std::min<int64_t>(NR, n_y - q * NR));
        for (int64_t p = 0; p < n_x_panels; ++p) {
          V acc[MR][NV];
          microkernel<Op, MR, NV>(PackedRows<A, MR>{x_packed + size_t(p) * MR * size_t(n_features)},
                                  y_panel, n_features, acc);
          epilogue.tile(thread, row0 + p * MR, p * MR, int(std::min<int64_t>(MR, rows - p * MR)),
                        q * NR, cols, acc, x_norms + p * MR);
        }
      }
      epilogue.end_block(thread, row0, rows, x_norms);
    }
  }
}

// Copies a tile of vector accumulators into a plain MR x NR array of doubles.
template <int MR, int NV, class V, int NR>
inline void tile_to_double(const V (&acc)[MR][NV], double (&out)[MR][NR]) {
  constexpr int L = NR / NV;
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v)
      for (int l = 0; l < L; ++l) out[r][v * L + l] = double(acc[r][v][l]);
}

// ---- top-k bookkeeping ------------------------------------------------------------------------

template <class Value>
struct Candidate {
  Value value;
  int64_t index;
};

// Lexicographic (value, index): equal values go to the lower index.
template <class Value>
inline bool before(const Candidate<Value>& a, const Candidate<Value>& b) {
  return a.value < b.value || (a.value == b.value && a.index < b.index);
}

// A bounded max-heap under `before`: heap[0] is the worst kept candidate. The sentinel loses to
// every real candidate, +inf included, so every slot ends up holding a row of Y.
template <class Value>
inline void heap_reset(Candidate<Value>* heap, int64_t size) {
  for (int64_t i = 0; i < size; ++i)
    heap[i] = {std::numeric_limits<Value>::infinity(), std::numeric_limits<int64_t>::max()};
}

template <class Value>
inline void heap_offer(Candidate<Value>* heap, int64_t size, Candidate<Value> c) {
  if (!before(c, heap[0])) return;
  int64_t i = 0;
  for (;;) {
    const int64_t left = 2 * i + 1;
    if (left >= size) break;
    const int64_t right = left + 1;
    const int64_t worst = (right < size && before(heap[left], heap[right])) ? right : left;
    if (!before(c, heap[worst])) break;
    heap[i] = heap[worst];
    i = worst;
  }
  heap[i] = c;
}

template <class Value>
inline void sort_candidates(Candidate<Value>* first, Candidate<Value>* last) {
  std::sort(first, last, before<Value>);
}

// ---- epilogues ---------------------------------------------------------------------------------

// Shared by the epilogues: y's inverse norms for cosine, 1 elsewhere (unused).
inline std::vector<double> inverse_norms(const std::vector<double>& squared_norms, Metric metric,
                                         int64_t n) {
  std::vector<double> inv(size_t(n), 1.0);
  if (metric == Metric::cosine)
    for (int64_t j = 0; j < n; ++j) inv[size_t(j)] = inverse_norm(squared_norms[size_t(j)]);
  return inv;
}

template <class T>
struct StoreDistances {
  Metric metric;
  const double* y_inverse_norms;
  int64_t n_y;
  T* out;

  void prepare(int, int64_t) {}
  template <int MR, int NV, class V>
  void tile(int, int64_t row0, int64_t, int rows, int64_t col0, int cols, const V (&acc)[MR][NV],
            const double* x_squared_norms) {
    constexpr int NR = NV * int(sizeof(V) / sizeof(double));
    double values[MR][NR];
    tile_to_double(acc, values);
    for (int r = 0; r < rows; ++r) {
      T* o = out + (row0 + r) * n_y + col0;
      const double* a = values[r];
      switch (metric) {
        case Metric::sqeuclidean:
          for (int c = 0; c < cols; ++c) o[c] = T(std::max(a[c], 0.0));
          break;
        case Metric::euclidean:
          for (int c = 0; c < cols; ++c) o[c] = T(std::sqrt(std::max(a[c], 0.0)));
          break;
        case Metric::manhattan:
          for (int c = 0; c < cols; ++c) o[c] = T(a[c]);
          break;
        case Metric::cosine: {
          const double xi = inverse_norm(x_squared_norms[r]);
          for (int c = 0; c < cols; ++c)
            o[c] = T(finish(Metric::cosine, a[c], xi, y_inverse_norms[col0 + c]));
          break;
        }
      }
    }
  }
  void end_block(int, int64_t, int64_t, const double*) {}
};

// Exact distances straight into a top-k heap per row (manhattan, or k == n_y).
template <class T>
struct ExactTopK {
  Metric metric;
  const double* y_inverse_norms;
  int64_t n_neighbors;
  T* out_distances;   // [n_x x n_neighbors]
  int64_t* out_indices;
  std::vector<Candidate<double>> heaps;
  int64_t block_rows = 0;

  void prepare(int n_threads, int64_t rows) {
    block_rows = rows;
    heaps.resize(size_t(n_threads) * size_t(rows) * size_t(n_neighbors));
  }
  Candidate<double>* heap(int thread, int64_t row_in_block) {
    return heaps.data() + (size_t(thread) * size_t(block_rows) + size_t(row_in_block)) *
                              size_t(n_neighbors);
  }
  template <int MR, int NV, class V>
  void tile(int thread, int64_t, int64_t row_in_block, int rows, int64_t col0, int cols,
            const V (&acc)[MR][NV], const double* x_squared_norms) {
    constexpr int NR = NV * int(sizeof(V) / sizeof(double));
    double values[MR][NR];
    tile_to_double(acc, values);
    for (int r = 0; r < rows; ++r) {
      Candidate<double>* h = heap(thread, row_in_block + r);
      if (col0 == 0) heap_reset(h, n_neighbors);
      const double xi = inverse_norm(x_squared_norms[r]);
      for (int c = 0; c < cols; ++c) {
        double d = finish(metric, values[r][c], xi, y_inverse_norms[col0 + c]);
        if (std::isnan(d)) d = std::numeric_limits<double>::infinity();
        if (d <= h[0].value) heap_offer(h, n_neighbors, {d, col0 + c});
      }
    }
  }
  void end_block(int thread, int64_t row0, int64_t rows, const double*) {
    for (int64_t r = 0; r < rows; ++r) {
      Candidate<double>* h = heap(thread, r);
      sort_candidates(h, h + n_neighbors);
      for (int64_t m = 0; m < n_neighbors; ++m) {
        out_distances[(row0 + r) * n_neighbors + m] = T(h[m].value);
        out_indices[(row0 + r) * n_neighbors + m] = h[m].index;
      }
    }
  }
};

// Screening in the precision S (float32, or float64 for float64 data past float32's range), then
// exact re-check in double (euclidean, sqeuclidean, cosine). Below, "T" in the bound is S.
//
// Key s_j = c_j - 2 x.y_j, minimised over j. euclidean: c_j = |y_j|^2, and s_j = |x - y_j|^2 -
// |x|^2. cosine: x and y_j are scaled to unit norm (in double, rounded to T) and c_j = 1 for
// every j, a zero y_j included: s_j = 1 - 2 cos(x, y_j), with a zero y_j at cos = 0 as in the
// reference; a zero x gives s_j = 1 for all j, a tie, sent to the exact path.
//
// Error bound, u = unit roundoff of T, D = n_features, computed k = fl(x.y) (one FMA chain):
//   |fl(x.y) - x.y| <= gamma_D sum_d |x_d y_d| <= gamma_D |x||y|,  gamma_D = D u / (1 - D u)
//   (Higham, Accuracy and Stability, 3.1 and Cauchy-Schwarz). c_j rounded from double: u |y|^2.
//   fl(c_j - 2k): one more rounding of a value <= |y|^2 + 2|x||y|.
//   Total <= (2 gamma_D + 2u)|x||y| + 2u |y|^2 + O(u^2) <= (2D + 6) u (|x|^2 + |y|^2) for D u
//   <= 1/4 (2|x||y| <= |x|^2 + |y|^2). Cosine adds the rounding of the unit vectors to T,
//   2(|dx| + |dy|) <= 4u, and uses |x|, |y| <= 1 + u. So
//       e_i = 2 (D + 8) u (|x_i|^2 + max_j |y_j|^2) + 4 (D + 8) denorm_min
//   bounds |s_j computed - s_j exact| for every j, gradual underflow included (each FMA adds at
//   most denorm_min / 2 absolute). If the (k+1)-th best computed key exceeds the k-th by more
//   than 2 e_i, every key kept is exactly smaller than every key dropped: the top-k set is
//   certain and only its order needs exact distances. Otherwise the row is recomputed exactly.
template <class T, class S>
struct ScreenedTopK {
  Metric metric;
  const T* X;
  const T* Y;
  int64_t n_y, n_features, n_neighbors;
  const S* key_offsets;             // c_j, padded with +inf to whole panels
  const double* y_inverse_norms;    // cosine only
  double bound_scale;               // 2 (D + 8) u
  double bound_floor;               // 4 (D + 8) denorm_min
  double max_y_squared;             // of the rows the kernel sees
  bool screening_valid;             // false when D u is too large or norms may overflow S
  T* out_distances;
  int64_t* out_indices;
  std::vector<Candidate<S>> heaps;      // per thread: block_rows x (k + 1), sorted or a heap
  std::vector<S> thresholds;            // per thread: block_rows, the worst key kept
  std::vector<Candidate<double>> exact; // per thread: n_y, for ambiguous rows
  int64_t block_rows = 0;

  // Up to this many kept keys a sorted array beats a heap: fewer unpredictable branches.
  static constexpr int64_t kSortedLimit = 32;
  int64_t kept() const { return n_neighbors + 1; }
  // Heaps start empty (sentinels) and are emptied again as each row is finished, so the tile
  // loop never asks whether it is a row's first tile.
  void prepare(int n_threads, int64_t rows) {
    block_rows = rows;
    heaps.resize(size_t(n_threads) * size_t(rows) * size_t(kept()));
    thresholds.assign(size_t(n_threads) * size_t(rows), std::numeric_limits<S>::infinity());
    exact.resize(size_t(n_threads) * size_t(n_y));
    for (size_t row = 0; row < size_t(n_threads) * size_t(rows); ++row)
      heap_reset(heaps.data() + row * size_t(kept()), kept());
  }
  Candidate<S>* heap(int thread, int64_t row_in_block) {
    return heaps.data() +
           (size_t(thread) * size_t(block_rows) + size_t(row_in_block)) * size_t(kept());
  }

  template <int MR, int NV, class V>
  void tile(int thread, int64_t, int64_t row_in_block, int rows, int64_t col0, int cols,
            const V (&acc)[MR][NV], const double*) {
    constexpr int L = int(sizeof(V) / sizeof(S));
    S* threshold = thresholds.data() + size_t(thread) * size_t(block_rows) + size_t(row_in_block);
    V offsets[NV];
    unsigned valid[NV];  // lanes that are rows of Y, not panel padding
    for (int v = 0; v < NV; ++v) {
      offsets[v] = load<V>(key_offsets + col0 + v * L);
      const int lanes = std::min(std::max(cols - v * L, 0), L);
      valid[v] = (1u << lanes) - 1u;
    }
    // One compare per vector rejects almost every key; offer() applies the exact rule to the
    // few lanes left. Unrolled for whole panels so the keys stay in registers.
    if (rows == MR) {
#pragma GCC unroll 8
      for (int r = 0; r < MR; ++r)
        filter_row<NV>(thread, row_in_block + r, col0, acc[r], offsets, valid, threshold[r]);
    } else {
      for (int r = 0; r < rows; ++r)
        filter_row<NV>(thread, row_in_block + r, col0, acc[r], offsets, valid, threshold[r]);
    }
  }

  template <int NV, class V>
  inline void filter_row(int thread, int64_t row_in_block, int64_t col0, const V (&acc)[NV],
                         const V (&offsets)[NV], const unsigned (&valid)[NV], S& threshold) {
    const V limit = splat(threshold);
    V keys[NV];
    unsigned bits[NV], any = 0;
    for (int v = 0; v < NV; ++v) {
      keys[v] = offsets[v] - (acc[v] + acc[v]);
      bits[v] = lane_bits(keys[v] <= limit) & valid[v];
      any |= bits[v];
    }
    if (__builtin_expect(any != 0, 0))
      offer<NV>(thread, row_in_block, col0, keys, bits, threshold);
  }

  template <int NV, class V>
  __attribute__((noinline)) void offer(int thread, int64_t row_in_block, int64_t col0,
                                       const V (&keys)[NV], const unsigned (&bits)[NV],
                                       S& threshold) {
    constexpr int L = int(sizeof(V) / sizeof(S));
    Candidate<S>* h = heap(thread, row_in_block);
    const int64_t n = kept();
    if (n <= kSortedLimit) {
      // A sorted array, worst last. Columns arrive in increasing index order, so a key equal to
      // one kept goes after it, and one equal to the worst is dropped: ties to the lower index.
      for (int v = 0; v < NV; ++v) {
        for (unsigned b = bits[v]; b != 0; b &= b - 1) {
          const int l = __builtin_ctz(b);
          const S key = keys[v][l];
          if (!(key < h[n - 1].value)) continue;
          int64_t p = n - 1;
          for (; p > 0 && key < h[p - 1].value; --p) h[p] = h[p - 1];
          h[p] = {key, col0 + v * L + l};
        }
      }
      threshold = h[n - 1].value;
    } else {
      for (int v = 0; v < NV; ++v) {
        for (unsigned b = bits[v]; b != 0; b &= b - 1) {
          const int l = __builtin_ctz(b);
          heap_offer(h, n, {S(keys[v][l]), col0 + v * L + l});
        }
      }
      threshold = h[0].value;
    }
  }

  void end_block(int thread, int64_t row0, int64_t rows, const double* x_squared_norms) {
    const int64_t k = n_neighbors;
    Candidate<double>* all = exact.data() + size_t(thread) * size_t(n_y);
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t i = row0 + r;
      const T* x = X + i * n_features;
      const double x_inv = inverse_norm(x_squared_norms[r]);
      Candidate<S>* h = heap(thread, r);
      sort_candidates(h, h + kept());
      const double seen_x_squared =
          metric == Metric::cosine ? (x_squared_norms[r] > 0.0 ? 1.0 : 0.0) : x_squared_norms[r];
      const double norms = seen_x_squared + max_y_squared;
      const double bound = bound_scale * norms + bound_floor;
      const double gap = double(h[k].value) - double(h[k - 1].value);
      const bool certain = screening_valid &&
                           norms < double(std::numeric_limits<S>::max()) / 16 &&
                           std::isfinite(double(h[k].value)) && gap > 2.0 * bound;
      int64_t n_candidates;
      if (certain) {
        for (int64_t m = 0; m < k; ++m) {
          const int64_t j = h[m].index;
          all[m] = {exact_distance(metric, x, Y + j * n_features, n_features, x_inv,
                                   y_inverse_norms[j]),
                    j};
        }
        n_candidates = k;
        sort_candidates(all, all + k);
      } else {
        for (int64_t j = 0; j < n_y; ++j)
          all[j] = {exact_distance(metric, x, Y + j * n_features, n_features, x_inv,
                                   y_inverse_norms[j]),
                    j};
        n_candidates = n_y;
        std::partial_sort(all, all + k, all + n_candidates, before<double>);
      }
      for (int64_t m = 0; m < k; ++m) {
        out_distances[i * k + m] = T(all[m].value);
        out_indices[i * k + m] = all[m].index;
      }
      heap_reset(h, kept());
      thresholds[size_t(thread) * size_t(block_rows) + size_t(r)] =
          std::numeric_limits<S>::infinity();
    }
  }
};

// ---- drivers ---------------------------------------------------------------------------------

constexpr int kExactRows = 4;     // 4 x 8 doubles: direct form needs a temporary per step
constexpr int kExactVectors = 2;
constexpr int kExactWidth = kExactVectors * 4;

template <class T>
void pairwise_distances_impl(const T* X, int64_t n_x, const T* Y, int64_t n_y,
                             int64_t n_features, Metric metric, T* out) {
  std::vector<double> y_squared(static_cast<size_t>(n_y));
  const std::vector<double> y_packed =
      pack_all<kExactWidth, double>(Y, n_y, n_features, false, y_squared.data());
  const std::vector<double> y_inverse = inverse_norms(y_squared, metric, n_y);
  StoreDistances<T> epilogue{metric, y_inverse.data(), n_y, out};
  with_exact_op(metric, [&](auto op) {
    tile_engine<decltype(op), kExactRows, kExactVectors>(X, n_x, n_features, false,
                                                         y_packed.data(), n_y, epilogue);
  });
}

template <class T>
void exact_neighbors(const T* X, int64_t n_x, const T* Y, int64_t n_y, int64_t n_features,
                     int64_t n_neighbors, Metric metric, T* distances, int64_t* indices) {
  std::vector<double> y_squared(static_cast<size_t>(n_y));
  const std::vector<double> y_packed =
      pack_all<kExactWidth, double>(Y, n_y, n_features, false, y_squared.data());
  const std::vector<double> y_inverse = inverse_norms(y_squared, metric, n_y);
  ExactTopK<T> epilogue{metric, y_inverse.data(), n_neighbors, distances, indices, {}, 0};
  with_exact_op(metric, [&](auto op) {
    tile_engine<decltype(op), kExactRows, kExactVectors>(X, n_x, n_features, false,
                                                         y_packed.data(), n_y, epilogue);
  });
}

// Screening in S: T, or float for double input where Y's norms allow (twice the GEMM rate;
// the bound above still holds with S's u, see nearest_screened in tile_engine.hpp, and the
// exact re-check is in double either way, so the answers are the same bits).
template <class T, class S>
void screened_neighbors_in(const T* X, int64_t n_x, const T* Y, int64_t n_y, int64_t n_features,
                           int64_t n_neighbors, Metric metric, T* distances, int64_t* indices) {
  constexpr int MR = 6;
  constexpr int NV = 2;
  constexpr int NR = NV * Vec<S>::lanes;
  const bool cosine = metric == Metric::cosine;
  const int64_t n_y_panels = (n_y + NR - 1) / NR;
  std::vector<double> y_squared(size_t(n_y_panels) * NR, 0.0);
  const std::vector<S> y_packed = pack_all<NR, S>(Y, n_y, n_features, cosine, y_squared.data());
  const std::vector<double> y_inverse = inverse_norms(y_squared, metric, n_y);

  std::vector<S> key_offsets(size_t(n_y_panels) * NR, std::numeric_limits<S>::infinity());
  double max_y_squared = 0.0;
  for (int64_t j = 0; j < n_y; ++j) {
    key_offsets[size_t(j)] = cosine ? S(1) : S(y_squared[size_t(j)]);
    max_y_squared = std::max(max_y_squared, cosine ? 1.0 : y_squared[size_t(j)]);
  }
  const double u = std::numeric_limits<S>::epsilon() / 2;
  const double slack = double(n_features) + 8.0;

  ScreenedTopK<T, S> epilogue{metric,
                              X,
                              Y,
                              n_y,
                              n_features,
                              n_neighbors,
                              key_offsets.data(),
                              y_inverse.data(),
                              2.0 * slack * u,
                              4.0 * slack * double(std::numeric_limits<S>::denorm_min()),
                              max_y_squared,
                              slack * u <= 0.25 &&
                                  max_y_squared < double(std::numeric_limits<S>::max()) / 16,
                              distances,
                              indices,
                              {},
                              {},
                              {},
                              0};
  tile_engine<DotProduct, MR, NV>(X, n_x, n_features, cosine, y_packed.data(), n_y, epilogue);
}

template <class T>
void screened_neighbors(const T* X, int64_t n_x, const T* Y, int64_t n_y, int64_t n_features,
                        int64_t n_neighbors, Metric metric, T* distances, int64_t* indices) {
  if constexpr (std::is_same_v<T, double>) {
    // cosine screens unit rows.
    if (metric == Metric::cosine || float_screening_fits(Y, n_y, n_features)) {
      screened_neighbors_in<double, float>(X, n_x, Y, n_y, n_features, n_neighbors, metric,
                                           distances, indices);
      return;
    }
  }
  screened_neighbors_in<T, T>(X, n_x, Y, n_y, n_features, n_neighbors, metric, distances, indices);
}

void check_shapes(const char* op, int64_t n_x, int64_t n_y, int64_t n_features, bool need_y) {
  using std::to_string;
  if (n_x < 0)
    throw std::invalid_argument(std::string(op) + ": n_x must be >= 0, got " + to_string(n_x));
  if (n_y < (need_y ? 1 : 0))
    throw std::invalid_argument(std::string(op) + ": n_y must be >= " + (need_y ? "1" : "0") +
                                ", got " + to_string(n_y));
  if (n_features < 1)
    throw std::invalid_argument(std::string(op) + ": n_features must be >= 1, got " +
                                to_string(n_features));
}

// Output of nearest_sqeuclidean for pairwise_distances_argmin_min.
template <class T>
struct NearestSink {
  Metric metric;
  T* distances;
  int64_t* indices;
  void prepare(int) {}
  bool wants_distances() const { return true; }
  void row(int, int64_t i, const T*, int64_t label, double squared) {
    indices[i] = label;
    distances[i] = T(finish(metric, squared, 1.0, 1.0));
  }
};

template <class T>
void neighbors_impl(const char* op, const T* X, int64_t n_x, const T* Y, int64_t n_y,
                    int64_t n_features, int64_t n_neighbors, Metric metric, T* distances,
                    int64_t* indices) {
  check_shapes(op, n_x, n_y, n_features, true);
  if (n_neighbors < 1 || n_neighbors > n_y)
    throw std::invalid_argument(std::string(op) + ": n_neighbors must be in [1, n_y=" +
                                std::to_string(n_y) + "], got " + std::to_string(n_neighbors));
  if (n_x == 0) return;
  // The nearest row under (squared) euclidean: X read in place, a vector top-1 epilogue.
  if (n_neighbors == 1 && (metric == Metric::sqeuclidean || metric == Metric::euclidean)) {
    NearestSink<T> sink{metric, distances, indices};
    nearest_sqeuclidean(X, n_x, Y, n_y, n_features, metric, sink);
    return;
  }
  // Screening needs a (k+1)-th candidate to separate the top k from the rest; manhattan has no
  // GEMM form.
  if (metric == Metric::manhattan || n_neighbors == n_y)
    exact_neighbors(X, n_x, Y, n_y, n_features, n_neighbors, metric, distances, indices);
  else
    screened_neighbors(X, n_x, Y, n_y, n_features, n_neighbors, metric, distances, indices);
}

}  // namespace

Metric parse_metric(const std::string& name, const char* op) {
  if (name == "euclidean") return Metric::euclidean;
  if (name == "sqeuclidean") return Metric::sqeuclidean;
  if (name == "cosine") return Metric::cosine;
  if (name == "manhattan") return Metric::manhattan;
  throw std::invalid_argument(std::string(op) +
                              ": metric must be one of 'euclidean', 'sqeuclidean', 'cosine', "
                              "'manhattan', got '" + name + "'");
}

int max_threads() { return omp_get_max_threads(); }

void pairwise_distances(const float* X, int64_t n_x, const float* Y, int64_t n_y,
                        int64_t n_features, Metric metric, float* out) {
  check_shapes("pairwise_distances", n_x, n_y, n_features, false);
  pairwise_distances_impl(X, n_x, Y, n_y, n_features, metric, out);
}
void pairwise_distances(const double* X, int64_t n_x, const double* Y, int64_t n_y,
                        int64_t n_features, Metric metric, double* out) {
  check_shapes("pairwise_distances", n_x, n_y, n_features, false);
  pairwise_distances_impl(X, n_x, Y, n_y, n_features, metric, out);
}

void pairwise_distances_argmin_min(const float* X, int64_t n_x, const float* Y, int64_t n_y,
                                   int64_t n_features, Metric metric, int64_t* indices,
                                   float* distances) {
  neighbors_impl("pairwise_distances_argmin_min", X, n_x, Y, n_y, n_features, 1, metric,
                 distances, indices);
}
void pairwise_distances_argmin_min(const double* X, int64_t n_x, const double* Y, int64_t n_y,
                                   int64_t n_features, Metric metric, int64_t* indices,
                                   double* distances) {
  neighbors_impl("pairwise_distances_argmin_min", X, n_x, Y, n_y, n_features, 1, metric,
                 distances, indices);
}

void kneighbors(const float* X, int64_t n_x, const float* Y, int64_t n_y, int64_t n_features,
                int64_t n_neighbors, Metric metric, float* distances, int64_t* indices) {
  neighbors_impl("kneighbors", X, n_x, Y, n_y, n_features, n_neighbors, metric, distances,
                 indices);
}
void kneighbors(const double* X, int64_t n_x, const double* Y, int64_t n_y, int64_t n_features,
                int64_t n_neighbors, Metric metric, double* distances, int64_t* indices) {
  neighbors_impl("kneighbors", X, n_x, Y, n_y, n_features, n_neighbors, metric, distances,
                 indices);
}

}  // namespace fastlatent::cpu
