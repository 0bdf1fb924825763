// Internal to the CPU module: the pieces of the tile engine shared by distances.cpp and
// kmeans_step.cpp (vector helpers, exact double accumulation, Y packing, the register-blocked
// GEMM microkernel) and the screened nearest-row search built on them. Not a public API.
#pragma once

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "cpu/distances.hpp"
#include "cpu/parallel.hpp"

#if defined(__AVX__)
#include <immintrin.h>
#endif

// The vector types below are 32 bytes; without AVX GCC emulates them with SSE, which changes
// the ABI of functions taking them. They are all internal and inlined, so the warning is moot.
#pragma GCC diagnostic ignored "-Wpsabi"

namespace fastlatent::cpu::detail {

typedef float v8sf __attribute__((vector_size(32)));
typedef float v4sf __attribute__((vector_size(16)));
typedef double v4df __attribute__((vector_size(32)));
typedef long long v4di __attribute__((vector_size(32)));
typedef int v8si __attribute__((vector_size(32)));

template <class A>
struct Vec;
template <>
struct Vec<float> {
  using type = v8sf;
  static constexpr int lanes = 8;
};
template <>
struct Vec<double> {
  using type = v4df;
  static constexpr int lanes = 4;
};

// memcpy, not a cast: packed buffers and user arrays carry no alignment guarantee.
template <class V, class A>
inline V load(const A* p) {
  V v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// All lanes listed, not V{} + s: adding zero is no identity for -0.0, so GCC would keep the add
// (and a per-lane loop compiles to inserts). Both forms here compile to one vbroadcast.
inline v8sf splat(float s) { return v8sf{s, s, s, s, s, s, s, s}; }
inline v4df splat(double s) { return v4df{s, s, s, s}; }

// Explicit FMA where the target has it: GCC contracts a*b+c only in GNU modes.
inline v8sf fmadd(v8sf a, v8sf b, v8sf c) {
#if defined(__FMA__)
  return _mm256_fmadd_ps(a, b, c);
#else
  return a * b + c;
#endif
}
inline v4df fmadd(v4df a, v4df b, v4df c) {
#if defined(__FMA__)
  return _mm256_fmadd_pd(a, b, c);
#else
  return a * b + c;
#endif
}
// Scalar too: whether GCC contracts a*b+c depends on the surrounding code and the optimisation
// level, so two loops meant to give the same bits (the k-means step's exact tail and
// reduce_pair's) could round differently (seen in a -O2 sanitizer build).
inline double fmadd(double a, double b, double c) {
#if defined(__FMA__)
  return __builtin_fma(a, b, c);
#else
  return a * b + c;
#endif
}

inline v8sf absolute(v8sf v) { return (v8sf)((v8si)v & 0x7fffffff); }
inline v4df absolute(v4df v) { return (v4df)((v4di)v & 0x7fffffffffffffffLL); }
inline double absolute(double v) { return std::fabs(v); }

// Bit l set when lane l of a comparison result is true.
template <class M>
inline unsigned lane_bits(M mask) {
  constexpr int n = int(sizeof(M) / sizeof(mask[0]));
#if defined(__AVX__)
  static_assert(sizeof(M) == 32, "AVX mask");
  if constexpr (n == 8) {
    __m256 bits;
    std::memcpy(&bits, &mask, sizeof bits);
    return unsigned(_mm256_movemask_ps(bits));
  } else {
    __m256d bits;
    std::memcpy(&bits, &mask, sizeof bits);
    return unsigned(_mm256_movemask_pd(bits));
  }
#else
  unsigned bits = 0;
  for (int l = 0; l < n; ++l)
    if (mask[l]) bits |= 1u << l;
  return bits;
#endif
}

// What one feature adds to an accumulator (same code for vectors and scalars).
struct SquaredDifference {
  template <class V>
  static V step(V acc, V x, V y) {
    V t = x - y;
    return fmadd(t, t, acc);
  }
};
struct AbsoluteDifference {
  template <class V>
  static V step(V acc, V x, V y) {
    return acc + absolute(x - y);
  }
};
struct DotProduct {
  template <class V>
  static V step(V acc, V x, V y) {
    return fmadd(x, y, acc);
  }
};

// Calls f(Op{}) with the exact (double, direct form) accumulation of `metric`.
template <class F>
void with_exact_op(Metric metric, F&& f) {
  switch (metric) {
    case Metric::euclidean:
    case Metric::sqeuclidean: f(SquaredDifference{}); break;
    case Metric::manhattan: f(AbsoluteDifference{}); break;
    case Metric::cosine: f(DotProduct{}); break;
  }
}

template <class T>
inline v4df load_as_double(const T* p);
template <>
inline v4df load_as_double<double>(const double* p) {
  return load<v4df>(p);
}
template <>
inline v4df load_as_double<float>(const float* p) {
#if defined(__AVX__)
  // The intrinsic, not __builtin_convertvector: GCC splits that into two 128-bit conversions.
  return (v4df)_mm256_cvtps_pd(_mm_loadu_ps(p));
#else
  return __builtin_convertvector(load<v4sf>(p), v4df);
#endif
}

// One row pair in double, four lanes and two partial sums so the loop is not latency-bound.
template <class Op, class T>
double reduce_pair(const T* x, const T* y, int64_t n_features) {
  v4df s0 = {}, s1 = {};
  int64_t d = 0;
  for (; d + 8 <= n_features; d += 8) {
    s0 = Op::step(s0, load_as_double(x + d), load_as_double(y + d));
    s1 = Op::step(s1, load_as_double(x + d + 4), load_as_double(y + d + 4));
  }
  if (d + 4 <= n_features) {
    s0 = Op::step(s0, load_as_double(x + d), load_as_double(y + d));
    d += 4;
  }
  v4df s = s0 + s1;
  double acc = (s[0] + s[1]) + (s[2] + s[3]);
  for (; d < n_features; ++d) acc = Op::step(acc, double(x[d]), double(y[d]));
  return acc;
}

// 1/|v|, with a zero vector left as it is: its cosine similarity is 0 with everything.
inline double inverse_norm(double squared_norm) {
  return squared_norm > 0.0 ? 1.0 / std::sqrt(squared_norm) : 1.0;
}

// Distance from an exact accumulation (sum of squares, sum of |.|, or dot product for cosine).
inline double finish(Metric metric, double acc, double x_inverse_norm, double y_inverse_norm) {
  switch (metric) {
    case Metric::sqeuclidean: return std::max(acc, 0.0);
    case Metric::euclidean: return std::sqrt(std::max(acc, 0.0));
    case Metric::manhattan: return acc;
    case Metric::cosine:
      return std::min(std::max(1.0 - acc * x_inverse_norm * y_inverse_norm, 0.0), 2.0);
  }
  return acc;
}

template <class T>
double exact_distance(Metric metric, const T* x, const T* y, int64_t n_features,
                      double x_inverse_norm, double y_inverse_norm) {
  double acc = 0.0;
  with_exact_op(metric, [&](auto op) {
    acc = reduce_pair<decltype(op)>(x, y, n_features);
  });
  return finish(metric, acc, x_inverse_norm, y_inverse_norm);
}

// ---- packing ---------------------------------------------------------------------------------

// dst[d * W + r] = row r of src (scaled to unit norm when `normalise`), zero rows past `valid`
// so the microkernel never needs a remainder case. squared_norms[r] = |row r|^2 of src in double.
template <int W, class A, class T>
void pack_panel(const T* src, int64_t valid, int64_t n_features, bool normalise, A* dst,
                double* squared_norms) {
  for (int r = 0; r < W; ++r) {
    if (r >= valid) {
      for (int64_t d = 0; d < n_features; ++d) dst[d * W + r] = A(0);
      continue;
    }
    const T* row = src + r * n_features;
    const double squared = reduce_pair<DotProduct>(row, row, n_features);
    if (squared_norms) squared_norms[r] = squared;
    if (normalise) {
      const double scale = squared > 0.0 ? 1.0 / std::sqrt(squared) : 0.0;
      for (int64_t d = 0; d < n_features; ++d) dst[d * W + r] = A(double(row[d]) * scale);
    } else {
      for (int64_t d = 0; d < n_features; ++d) dst[d * W + r] = A(row[d]);
    }
  }
}

// All of Y, in panels of W rows; squared_norms gets n_y entries.
template <int W, class A, class T>
std::vector<A> pack_all(const T* Y, int64_t n_y, int64_t n_features, bool normalise,
                        double* squared_norms) {
  const int64_t n_panels = (n_y + W - 1) / W;
  std::vector<A> packed(size_t(n_panels) * W * size_t(n_features));
#pragma omp parallel for schedule(static) num_threads(threads_for(double(n_y) * double(n_features)))
  for (int64_t p = 0; p < n_panels; ++p) {
    pack_panel<W>(Y + p * W * n_features, std::min<int64_t>(W, n_y - p * W), n_features,
                  normalise, packed.data() + size_t(p) * W * size_t(n_features),
                  squared_norms + p * W);
  }
  return packed;
}

// ---- the microkernel ---------------------------------------------------------------------------

// Where the microkernel reads x_r[d], r < MR. A packed panel (feature-major, MR values per
// feature, zero rows past the valid ones) or MR rows of a row-major matrix read in place: each
// step broadcasts MR values either way, so the loop is the same; the in-place form saves the
// packing pass, which costs as much as the GEMM when Y has few panels.
template <class A, int MR>
struct PackedRows {
  const A* p;
  A operator()(int64_t d, int r) const { return p[d * MR + r]; }
};
template <class A>
struct StridedRows {
  const A* p;
  int64_t stride;
  A operator()(int64_t d, int r) const { return p[r * stride + d]; }
};

// acc[r][v] = start[v] + sum over features of Op(x_r, y_{v-th vector}), in feature order; the
// feature loop runs whole in registers, loading one NR-wide row of the Y panel and broadcasting
// MR values of X per step.
template <class Op, int MR, int NV, class A, class XRows>
inline void microkernel(XRows x, const A* y_panel, int64_t n_features,
                        typename Vec<A>::type (&acc)[MR][NV], const typename Vec<A>::type (&start)[NV]) {
  using V = typename Vec<A>::type;
  constexpr int L = Vec<A>::lanes;
  V c[MR][NV];
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) c[r][v] = start[v];
  for (int64_t d = 0; d < n_features; ++d) {
    V y[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) y[v] = load<V>(y_panel + d * (NV * L) + v * L);
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const V xr = splat(x(d, r));
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) c[r][v] = Op::step(c[r][v], xr, y[v]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[r][v] = c[r][v];
}

// The same from zero: acc[r][v] = sum over features of Op(x_r, y_{v-th vector}).
template <class Op, int MR, int NV, class A, class XRows>
inline void microkernel(XRows x, const A* y_panel, int64_t n_features,
                        typename Vec<A>::type (&acc)[MR][NV]) {
  const typename Vec<A>::type zero[NV] = {};
  microkernel<Op, MR, NV>(x, y_panel, n_features, acc, zero);
}

// ---- nearest row, squared euclidean (argmin and the k-means step) ---------------------------

template <class A>
struct IntVec;
template <>
struct IntVec<float> {
  using type = v8si;
  using lane = int;
  static constexpr v8si iota = {0, 1, 2, 3, 4, 5, 6, 7};
};
template <>
struct IntVec<double> {
  using type = v4di;
  using lane = long long;
  static constexpr v4di iota = {0, 1, 2, 3};
};

#if defined(__AVX__)
inline v8sf vmin(v8sf a, v8sf b) { return (v8sf)_mm256_min_ps((__m256)a, (__m256)b); }
inline v4df vmin(v4df a, v4df b) { return (v4df)_mm256_min_pd((__m256d)a, (__m256d)b); }
inline v8sf vmax(v8sf a, v8sf b) { return (v8sf)_mm256_max_ps((__m256)a, (__m256)b); }
inline v4df vmax(v4df a, v4df b) { return (v4df)_mm256_max_pd((__m256d)a, (__m256d)b); }
#else
template <class V>
inline V vmin(V a, V b) { return a < b ? a : b; }
template <class V>
inline V vmax(V a, V b) { return a > b ? a : b; }
#endif

// Every lane = the minimum over the lanes of v.
inline v8sf all_min(v8sf v) {
  v8sf t = vmin(v, __builtin_shuffle(v, v8si{4, 5, 6, 7, 0, 1, 2, 3}));
  t = vmin(t, __builtin_shuffle(t, v8si{2, 3, 0, 1, 6, 7, 4, 5}));
  return vmin(t, __builtin_shuffle(t, v8si{1, 0, 3, 2, 5, 4, 7, 6}));
}
inline v4df all_min(v4df v) {
  v4df t = vmin(v, __builtin_shuffle(v, v4di{2, 3, 0, 1}));
  return vmin(t, __builtin_shuffle(t, v4di{1, 0, 3, 2}));
}

// The exact squared distances |x_r - y_r|^2 of R row pairs, each summed exactly as
// reduce_pair<SquaredDifference> sums it (so the same bits as exact_distance), and |x_r|^2 as
// reduce_pair<DotProduct>(x_r, x_r), in one pass. R independent pairs interleave their
// dependency chains: one pair alone is bound by the latency of its two FMA chains.
template <int R, class T, class TY>
inline void distances_and_norms(const T* const (&x)[R], const TY* const (&y)[R],
                                int64_t n_features, double (&distance)[R],
                                double (&x_squared)[R]) {
  v4df s0[R], s1[R], n0[R], n1[R];
  for (int r = 0; r < R; ++r) s0[r] = s1[r] = n0[r] = n1[r] = v4df{};
  int64_t d = 0;
  for (; d + 8 <= n_features; d += 8) {
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const v4df xa = load_as_double(x[r] + d), xb = load_as_double(x[r] + d + 4);
      s0[r] = SquaredDifference::step(s0[r], xa, load_as_double(y[r] + d));
      s1[r] = SquaredDifference::step(s1[r], xb, load_as_double(y[r] + d + 4));
      n0[r] = DotProduct::step(n0[r], xa, xa);
      n1[r] = DotProduct::step(n1[r], xb, xb);
    }
  }
  const bool four = d + 4 <= n_features;
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) {
    if (four) {
      const v4df xa = load_as_double(x[r] + d);
      s0[r] = SquaredDifference::step(s0[r], xa, load_as_double(y[r] + d));
      n0[r] = DotProduct::step(n0[r], xa, xa);
    }
    const v4df sv = s0[r] + s1[r], nv = n0[r] + n1[r];
    double acc = (sv[0] + sv[1]) + (sv[2] + sv[3]);
    double norm = (nv[0] + nv[1]) + (nv[2] + nv[3]);
    for (int64_t e = four ? d + 4 : d; e < n_features; ++e) {
      acc = SquaredDifference::step(acc, double(x[r][e]), double(y[r][e]));
      norm = DotProduct::step(norm, double(x[r][e]), double(x[r][e]));
    }
    distance[r] = acc;
    x_squared[r] = norm;
  }
}

// An upper bound on |x|^2 from the screening copy x (in S, the row rounded to S when T is
// double), for the bound e_i when no exact distance is wanted. Each lane sums D / (2L) + 1
// squares (one rounding each with FMA, two without), then s0 + s1: m <= D/4 + 4 roundings, so the
// sum s^ >= |x^|^2 / (1 + 2 m u) while m u <= 1/4; with |x^|^2 >= |x|^2 / (1 + 3u) (the rounding
// to S), |x|^2 <= s^ (1 + (D/2 + 12) u) when (D + 8) u <= 1/4 (screening_valid). The factor
// below, 1 + 2 (D + 8) u, is larger. Underflowed squares lose at most D denorm_min / 2, inside
// the bound's floor; overflow gives +inf, and the row takes the exact path.
template <class S>
inline double screening_norm_bound(const S* x, int64_t n_features) {
  using V = typename Vec<S>::type;
  constexpr int L = Vec<S>::lanes;
  V s0 = {}, s1 = {};
  int64_t d = 0;
  for (; d + 2 * L <= n_features; d += 2 * L) {
    const V a = load<V>(x + d), b = load<V>(x + d + L);
    s0 = fmadd(a, a, s0);
    s1 = fmadd(b, b, s1);
  }
  for (; d + L <= n_features; d += L) {
    const V a = load<V>(x + d);
    s0 = fmadd(a, a, s0);
  }
  const V s = s0 + s1;
  double acc = 0.0;
  for (int l = 0; l < L; ++l) acc += double(s[l]);
  for (; d < n_features; ++d) acc += double(x[d]) * double(x[d]);
  const double u = std::numeric_limits<S>::epsilon() / 2;
  return acc * (1.0 + 2.0 * (double(n_features) + 8.0) * u);
}

// Squared distance to the only row of Y, as the exact path of the tile engine computes it (one
// fused multiply-add chain in feature order), NaN read as +inf.
template <class T>
inline double single_row_distance(const T* x, const T* y, int64_t n_features) {
  double acc = 0.0;
  for (int64_t d = 0; d < n_features; ++d) {
    const double t = double(x[d]) - double(y[d]);
    acc = std::fma(t, t, acc);
  }
  acc = std::max(acc, 0.0);
  return std::isnan(acc) ? std::numeric_limits<double>::infinity() : acc;
}

// For every row x_i of X: the index of its nearest row of Y under squared euclidean distance
// (ties to the lower index) and that exact squared distance, handed in row order to
//   sink.prepare(n_threads)                                      before the parallel region
//   sink.row(thread, i, x_i, label, squared_distance)            while x_i is in L1
// A sink whose wants_distances() is false gets 0 in place of the distance of a row whose
// screening was conclusive (the bound then uses screening_norm_bound for |x_i|^2).
// `metric` (euclidean or sqeuclidean) only decides ties on the exact path: sqrt can map two
// different squares to the same distance, and then the lower index wins.
// Each thread gets one contiguous range of rows (OpenMP static schedule), so a sink that sums
// per thread sums in row order within the thread.
//
// Screening as ScreenedTopK in distances.cpp with k = 1 (same bound, same exact distances):
// keys s_j = c_j - 2 x.y_j in T, c_j = |y_j|^2 rounded to T, computed here as one FMA chain
// seeded with c_j over the features of x and the packed -2 y_j (ScreenedTopK rounds x.y_j first
// and then forms the key: two more roundings). Error of this chain: u |y_j|^2 for c_j, plus
// gamma_D (|c_j| + 2 sum_d |x_d y_jd|) <= gamma_D ((2 + u) |y_j|^2 + |x|^2) for the D FMAs, so
// within the same e_i. The best key wins outright when the second best exceeds it by more than
// 2 e_i, e_i = 2 (D + 8) u (|x_i|^2 + max_j |y_j|^2) + 4 (D + 8) denorm_min; otherwise the row is
// recomputed exactly against every row of Y. Either way the label is the exact argmin and the
// distance the exact direct-form double sum (so the two engines agree bit for bit, though they
// may re-check different rows), and results do not depend on the thread count.
//
// Screening precision S: T itself, or float for double input (nearest_sqeuclidean below),
// twice the GEMM rate. The same e_i (with S's u and denorm_min) still bounds the key error then:
// rounding x and y to S adds 2 |x^.y^ - x.y| <= 4u |x||y| + 2 eta sqrt(D) (|x| + |y|) (eta =
// denorm_min / 2) <= 2u (|x|^2 + |y|^2) + denorm_min sqrt(D) (1 + (|x|^2 + |y|^2) / 2), within the
// slack of e_i over the chain's own (2D + 3) u (|x|^2 + |y|^2): e_i has (2D + 16) u, and
// 4 (D + 8) denorm_min. The exact path stays in double, so the results are the same bits.
//
// Loop order, unlike the top-k engine: X is not packed. A group of G panels of MR rows
// (about 12 KiB, in L1) is read in place; each Y panel (NR x D, packed) passes over the whole
// group, and the microkernel's tile goes straight into per-lane running (best, second, panel)
// vectors of each row, so the top-1 epilogue is a few vector min/max/blend per tile. After the
// last panel each row of the group is finished while still in L1: one horizontal reduction,
// one exact distance (with |x|^2 in the same pass), the sink.
template <class T, class S, class Sink>
void nearest_screened(const T* X, int64_t n_x, const T* Y, int64_t n_y, int64_t n_features,
                      Metric metric, Sink& sink) {
  using V = typename Vec<S>::type;
  using IV = typename IntVec<S>::type;
  using IL = typename IntVec<S>::lane;
  constexpr int L = Vec<S>::lanes;
  constexpr bool in_place = std::is_same_v<S, T>;  // else the group is converted to S
  constexpr int MR = 6;
  constexpr int NV = 2;
  constexpr int NR = NV * L;
  const int64_t D = n_features;
  const int max_threads = threads_for(double(n_x) * double(n_y) * double(n_features));
  const int64_t panel_bytes = int64_t(MR) * D * int64_t(sizeof(T));
  const int64_t group_panels = std::clamp<int64_t>((12 << 10) / panel_bytes, 1, 16);
  const int64_t group_rows = group_panels * MR;
  const int64_t n_groups = (n_x + group_rows - 1) / group_rows;
  const int n_threads = int(std::max<int64_t>(1, std::min<int64_t>(max_threads, n_groups)));
  sink.prepare(n_threads);
  if (n_x == 0) return;

  if (n_y == 1) {  // nothing to screen: one exact distance per row
#pragma omp parallel num_threads(n_threads)
    {
      const int thread = omp_get_thread_num();
#pragma omp for schedule(static)
      for (int64_t g = 0; g < n_groups; ++g) {
        const int64_t end = std::min(n_x, (g + 1) * group_rows);
        for (int64_t i = g * group_rows; i < end; ++i)
          sink.row(thread, i, X + i * D, 0, single_row_distance(X + i * D, Y, D));
      }
    }
    return;
  }

  const int64_t n_y_panels = (n_y + NR - 1) / NR;
  std::vector<double> y_squared(size_t(n_y_panels) * NR, 0.0);
  // Packed as -2 y (exact: a power of two, and |y|^2 < norm_limit rules out overflow), so that
  // the microkernel seeded with c_j yields the key c_j - 2 x.y_j itself.
  std::vector<S> y_packed = pack_all<NR, S>(Y, n_y, D, false, y_squared.data());
  for (S& value : y_packed) value *= S(-2);
  // Y in double for the exact distances (exact conversion: the same sums, fewer conversions).
  const std::vector<double> y_double(Y, Y + n_y * D);
  std::vector<S> key_offsets(size_t(n_y_panels) * NR, std::numeric_limits<S>::infinity());
  double max_y_squared = 0.0;
  for (int64_t j = 0; j < n_y; ++j) {
    key_offsets[size_t(j)] = S(y_squared[size_t(j)]);
    max_y_squared = std::max(max_y_squared, y_squared[size_t(j)]);
  }
  const double u = std::numeric_limits<S>::epsilon() / 2;
  const double slack = double(D) + 8.0;
  const double bound_scale = 2.0 * slack * u;
  const double bound_floor = 4.0 * slack * double(std::numeric_limits<S>::denorm_min());
  const double norm_limit = double(std::numeric_limits<S>::max()) / 16;
  const bool screening_valid = slack * u <= 0.25 && max_y_squared < norm_limit;

  // Per row: lane-wise best key, second best key, and the panel of the best.
  struct LaneState {
    V best[NV];
    V second[NV];
    IV panel[NV];
  };
  // Allocated here, outside the parallel region, so that bad_alloc reaches Python.
  // One spare state and 64 spare bytes between threads: no cache line is written by two.
  const size_t state_stride = size_t(group_rows) + 1;
  // The zero-padded last panel of a group read in place, or the whole group converted to S.
  const size_t tail_stride = (in_place ? MR : size_t(group_rows)) * size_t(D) + 64 / sizeof(S);
  std::vector<LaneState> states(size_t(n_threads) * state_stride);
  std::vector<S> tails(size_t(n_threads) * tail_stride);

  const V infinity = splat(std::numeric_limits<S>::infinity());
  // A row's best key, second best key, and the column of the best (of the lowest lane among
  // equal keys; equal keys make the row ambiguous anyway).
  auto best_of = [&](const LaneState& s, S& best_key, S& second_key) -> int64_t {
    V best = s.best[0], second = s.second[0];
    IV column = s.panel[0] * IL(NR) + IntVec<S>::iota;
    for (int v = 1; v < NV; ++v) {
      const IV column_v = s.panel[v] * IL(NR) + (IntVec<S>::iota + IL(v * L));
      column = s.best[v] < best ? column_v : column;
      second = vmin(vmin(second, s.second[v]), vmax(best, s.best[v]));
      best = vmin(best, s.best[v]);
    }
    const V lowest = all_min(best);
    const unsigned bits = lane_bits(best == lowest);
    const int lane = bits != 0 ? __builtin_ctz(bits) : 0;
    const V others = IntVec<S>::iota == IL(lane) ? infinity : best;
    best_key = lowest[0];
    second_key = all_min(vmin(others, second))[0];
    return int64_t(column[lane]);
  };
  // An ambiguous row against every row of Y, compared as the metric's distances (sqrt can
  // merge neighbouring squares), ties to the lower index, as the top-k engine's exact path.
  auto exact_nearest = [&](const T* x, double& squared) -> int64_t {
    int64_t label = 0;
    squared = reduce_pair<SquaredDifference>(x, Y, D);
    double value = finish(metric, squared, 1.0, 1.0);
    for (int64_t j = 1; j < n_y; ++j) {
      const double d = reduce_pair<SquaredDifference>(x, Y + j * D, D);
      const double dv = finish(metric, d, 1.0, 1.0);
      if (dv < value) {
        value = dv;
        squared = d;
        label = j;
      }
    }
    return label;
  };

#pragma omp parallel num_threads(n_threads)
  {
    const int thread = omp_get_thread_num();
    LaneState* state = states.data() + size_t(thread) * state_stride;
    S* tail = tails.data() + size_t(thread) * tail_stride;
#pragma omp for schedule(static)
    for (int64_t g = 0; g < n_groups; ++g) {
      const int64_t row0 = g * group_rows;
      const int64_t rows = std::min(group_rows, n_x - row0);
      const int64_t full_panels = rows / MR;
      const int64_t n_panels = (rows + MR - 1) / MR;
      if constexpr (in_place) {
        if (full_panels < n_panels) {  // the last rows, zero-padded to a whole panel
          const int64_t valid = rows - full_panels * MR;
          std::memcpy(tail, X + (row0 + full_panels * MR) * D, size_t(valid * D) * sizeof(T));
          std::fill(tail + valid * D, tail + MR * D, S(0));
        }
      } else {  // the group in S, zero-padded to whole panels
        const T* src = X + row0 * D;
        for (int64_t e = 0; e < rows * D; ++e) tail[e] = S(src[e]);
        std::fill(tail + rows * D, tail + n_panels * MR * D, S(0));
      }
      for (int64_t q = 0; q < n_y_panels; ++q) {
        const S* y_panel = y_packed.data() + size_t(q) * NR * size_t(D);
        V offsets[NV];
        for (int v = 0; v < NV; ++v) offsets[v] = load<V>(key_offsets.data() + q * NR + v * L);
        const IV panel = IV{} + IL(q);
        for (int64_t p = 0; p < n_panels; ++p) {
          const S* x;
          if constexpr (in_place)
            x = p < full_panels ? X + (row0 + p * MR) * D : tail;
          else
            x = tail + p * MR * D;
          V acc[MR][NV];
          microkernel<DotProduct, MR, NV>(StridedRows<S>{x, D}, y_panel, D, acc, offsets);
          LaneState* s = state + p * MR;
          if (q == 0) {
#pragma GCC unroll 8
            for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
              for (int v = 0; v < NV; ++v) {
                s[r].best[v] = acc[r][v];
                s[r].second[v] = infinity;
                s[r].panel[v] = IV{};
              }
          } else {
#pragma GCC unroll 8
            for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
              for (int v = 0; v < NV; ++v) {
                const V key = acc[r][v];
                const V best = s[r].best[v];
                // Strictly smaller only: an equal key leaves best == second, an ambiguous row.
                s[r].panel[v] = key < best ? panel : s[r].panel[v];
                s[r].second[v] = vmin(s[r].second[v], vmax(best, key));
                s[r].best[v] = vmin(best, key);
              }
          }
        }
      }
      // Rows in pairs, so that two exact distances overlap; then in order to the sink.
      for (int64_t r = 0; r < rows; r += 2) {
        const int count = rows - r >= 2 ? 2 : 1;
        const T* x[2];
        const double* y[2];
        int64_t label[2];
        S best_key[2], second_key[2];
        for (int m = 0; m < 2; ++m) {
          const int64_t rm = r + (m < count ? m : 0);
          x[m] = X + (row0 + rm) * D;
          label[m] = best_of(state[rm], best_key[m], second_key[m]);
          if (label[m] >= n_y) label[m] = 0;  // only with NaN keys: the row is ambiguous
          y[m] = y_double.data() + label[m] * D;
        }
        double distance[2], x_squared[2];
        if (!sink.wants_distances()) {  // the bound needs |x|^2 only: from the S rows
          for (int m = 0; m < count; ++m) {
            const int64_t rm = r + m;
            const S* xs;
            if constexpr (in_place)
              xs = X + (row0 + rm) * D;
            else
              xs = tail + rm * D;
            x_squared[m] = screening_norm_bound(xs, D);
            distance[m] = 0.0;
          }
        } else if (count == 2) {
          distances_and_norms<2>(x, y, D, distance, x_squared);
        } else {
          const T* const x1[1] = {x[0]};
          const double* const y1[1] = {y[0]};
          double d1[1], n1[1];
          distances_and_norms<1>(x1, y1, D, d1, n1);
          distance[0] = d1[0];
          x_squared[0] = n1[0];
        }
        for (int m = 0; m < count; ++m) {
          const double norms = x_squared[m] + max_y_squared;
          const double bound = bound_scale * norms + bound_floor;
          const double gap = double(second_key[m]) - double(best_key[m]);
          const bool certain = screening_valid && norms < norm_limit &&
                               std::isfinite(double(second_key[m])) && gap > 2.0 * bound;
          if (__builtin_expect(!certain, 0))
            label[m] = exact_nearest(x[m], distance[m]);
          sink.row(thread, row0 + r + m, x[m], label[m], distance[m]);
        }
      }
    }
  }
}

// Whether double rows Y may be screened in float (twice the GEMM rate; the exact re-check stays
// in double, so the answers are the same bits): their norms far inside float's range, |y| < 2^50
// (rows of X past it are re-checked exactly anyway). Used by this search and by the top-k
// screening in distances.cpp.
inline bool float_screening_fits(const double* Y, int64_t n_y, int64_t n_features) {
  double max_y_squared = 0.0;
  for (int64_t j = 0; j < n_y; ++j)
    max_y_squared = std::max(max_y_squared, reduce_pair<DotProduct>(Y + j * n_features, Y + j * n_features, n_features));
  return max_y_squared < 0x1p100;
}

// The screened search in T, or for double input in float where float_screening_fits.
template <class T, class Sink>
void nearest_sqeuclidean(const T* X, int64_t n_x, const T* Y, int64_t n_y, int64_t n_features,
                         Metric metric, Sink& sink) {
  if constexpr (std::is_same_v<T, double>) {
    if (float_screening_fits(Y, n_y, n_features)) {
      nearest_screened<double, float>(X, n_x, Y, n_y, n_features, metric, sink);
      return;
    }
  }
  nearest_screened<T, T>(X, n_x, Y, n_y, n_features, metric, sink);
}

}  // namespace fastlatent::cpu::detail
