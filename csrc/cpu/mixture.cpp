// gmm_estimate_log_prob and gmm_e_step: the per-component Gaussian log-densities of the rows of
// X (scikit-learn's _estimate_log_gaussian_prob), alone or fused with the E-step's log-sum-exp.
//
// Layout: X [n x d] row-major in its dtype; the model in float64 (means [k x d], precision
// Cholesky factors in scikit-learn's layout per covariance type, see cpu/mixture.hpp); out
// [n x k] in X's dtype. The squared distances q are computed in X's dtype S (the kernels below
// are templates on S: 4 doubles or 8 floats per AVX register), the model's per-call constants
// in float64 and then rounded to S once (Model<S>), everything O(n k) after q in float64.
// float32: rows and means centred at m0 = the mean of the component means first (see
// cpu/mixture.hpp for why and for the error bound).
//
// Tiling: OpenMP over blocks of row_block(d) rows (about 32 KiB of X, a multiple of 4, so a
// block and one d x d factor stay in L1/L2); each thread reads its block of X (float32 rows are
// copied centred, float(x - m0); float64 rows are read in place, only the last block copied),
// zero rows padding it to a multiple of 4, and loops over the components, keeping the block's
// log-densities [rows x k] in a float64 scratch that is written out (or turned into
// responsibilities) at the end of the block. No n x k x d array is built; the scratch per thread is O(rows x (d + k)).
//   full: per component, Y = Xblock @ P_c as a small GEMM [rows x d] x [d x d] in register
//         tiles of 4 rows x two vectors (8 doubles or 16 floats; GCC vector extensions, AVX2
//         FMA), P_c copied once with its columns zero padded to a multiple of the tile's
//         columns and 64-byte aligned; each tile runs over
//         the rows of P_c that hold its nonzeros (for scikit-learn's upper-triangular factors,
//         rows 0 to the tile's last column; a general P_c is still exact), and is reduced at
//         once to q = ||Y_i - mu_c @ P_c||^2, so Y is never stored.
//   tied: Y = Xblock @ P once per block (same tiles, stored), then q = ||Y_i - mu_c @ P||^2
//         for all components at once, as diag and spherical below (componentwise_squares).
//   diag / spherical: the direct form of the quadratic form (exact, never negative), where
//         scikit-learn uses the expanded form clipped at 0; they agree to rounding. Vectorised
//         across components (means and factors transposed, one component per lane), two
//         rows per pass (componentwise_squares). The E-step's exponentials: exp_any
//         (cpu/vector_exp.hpp), vectorised.
// Every row's values depend on that row only, so the result does not depend on the threads.
// Cost: full ~ n k d^2 flops (triangular factor; 2 n k d^2 for a dense one), tied ~ n d^2 +
// 3 n k d, diag ~ 4 n k d, spherical ~ 3 n k d; plus n k exp/log for the E-step. X read once.
#include "cpu/mixture.hpp"
#include "cpu/parallel.hpp"
#include "cpu/vector_exp.hpp"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>


namespace fastlatent::cpu {

CovarianceType parse_covariance_type(const std::string& name, const char* op) {
  if (name == "full") return CovarianceType::Full;
  if (name == "tied") return CovarianceType::Tied;
  if (name == "diag") return CovarianceType::Diag;
  if (name == "spherical") return CovarianceType::Spherical;
  throw std::invalid_argument(std::string(op) + ": unknown covariance_type '" + name +
                              "'; expected 'full', 'tied', 'diag' or 'spherical'");
}

namespace {

constexpr double kLog2Pi = 1.8378770664093454835606594728112;  // log(2 pi)

// Rows per block: about 4096 doubles of X (32 KiB) per block, between 8 and 256 rows, a
// multiple of 4 (the GEMM tile's rows).
int64_t row_block(int64_t n_features) {
  return std::clamp<int64_t>(4096 / std::max<int64_t>(n_features, 1), 8, 256) / 4 * 4;
}

typedef double v4d __attribute__((vector_size(32)));
inline v4d load4(const double* p) {
  v4d v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void store4(double* p, v4d v) { std::memcpy(p, &v, sizeof v); }

// The E-step's compute scalar S (X's dtype) and its AVX vector: 4 doubles or 8 floats.
template <class S>
using Vector = typename detail::Vec<S>::type;
template <class S>
constexpr int kLanes = detail::Vec<S>::lanes;
// Output columns of the E-step's GEMM tile: two registers per row (8 doubles, 16 floats).
template <class S>
constexpr int64_t kTile = 2 * kLanes<S>;

template <class S>
inline void store(S* p, Vector<S> v) { std::memcpy(p, &v, sizeof v); }

// The lanes' sum, pairwise: (v0 + v1) + (v2 + v3) for 4 lanes, and so on.
template <class V>
inline auto lane_sum(V v) {
  if constexpr (sizeof(V) / sizeof(v[0]) == 4)
    return (v[0] + v[1]) + (v[2] + v[3]);
  else
    return ((v[0] + v[1]) + (v[2] + v[3])) + ((v[4] + v[5]) + (v[6] + v[7]));
}

// A vector of n values of S (zeros) and its first 64-byte aligned element: with row strides
// that are multiples of a tile's columns, no 32-byte load of the GEMM tiles straddles a cache line.
template <class S>
struct AlignedArray {
  std::vector<S> storage;
  S* data = nullptr;
  void assign(size_t n) {
    storage.assign(n + 64 / sizeof(S), S(0));
    const auto address = reinterpret_cast<uintptr_t>(storage.data());
    data = storage.data() + ((64 - address % 64) % 64) / sizeof(S);
  }
};

// Per-component constants of the model, computed in float64 once per call (k d^2 work at most)
// and stored in the compute scalar S: float64 for float64 X, float32 for float32 X.
template <class S>
struct Model {
  CovarianceType type;
  int64_t d, k, dp;  // dp: d rounded up to kTile<S>
  std::vector<double> log_det;  // [k]
  // float32 only: the centre m0 [d], the mean of the component means. The rows and the means
  // enter the float32 kernels as float(x - m0) and float(mu - m0) (differences in float64,
  // rounded once), so the float32 rounding is relative to the data's spread about m0, not to
  // their distance from the origin (see cpu/mixture.hpp). Empty for float64.
  std::vector<double> centre;
  // full, tied: the factors with their columns padded with zeros to dp, [factors x d x dp],
  // means @ P [k x dp] (zero padded; float32: (means - m0) @ P in float64, rounded once), and
  // per factor and column tile the rows [begin, end) of P holding its nonzeros (rows 0 to the
  // tile's last column for an upper-triangular P).
  AlignedArray<S> padded;
  AlignedArray<S> projected;
  std::vector<int32_t> tile_begin, tile_end;
  std::vector<double> spherical_precision;  // [k] P_c^2 (spherical)
  // diag, spherical: the means (float32: minus m0) and (diag) the factors transposed, [d x kp];
  // tied: the projected means transposed, [dp x kp]. kp = k rounded up to a multiple of the
  // lanes, zero padded: lane c of a vector is component c.
  int64_t kp = 0;
  AlignedArray<S> mean_t, scale_t;
};

// src [k x d] -> dst [d x kp] in S, zero padded columns.
template <class S, class Src>
void transpose_padded(const Src* src, int64_t k, int64_t d, int64_t kp, AlignedArray<S>& dst) {
  dst.assign(size_t(d) * size_t(kp));
  for (int64_t c = 0; c < k; ++c)
    for (int64_t j = 0; j < d; ++j) dst.data[j * kp + c] = static_cast<S>(src[c * d + j]);
}

template <class S>
Model<S> make_model(const double* means, const double* chol, int64_t d, int64_t k,
                    CovarianceType type) {
  constexpr int64_t tile = kTile<S>, lanes = kLanes<S>;
  Model<S> m{type, d, k, (d + tile - 1) / tile * tile, std::vector<double>(size_t(k), 0.0),
             {}, {}, {}, {}, {}, {}, 0, {}, {}};
  const int64_t dp = m.dp;
  const size_t dd = size_t(d) * size_t(d);
  const int64_t tiles = dp / tile;
  std::vector<double> centred;  // float32: means - m0
  if constexpr (!std::is_same_v<S, double>) {
    m.centre.assign(size_t(d), 0.0);
    for (int64_t c = 0; c < k; ++c)
      for (int64_t j = 0; j < d; ++j) m.centre[j] += means[c * d + j];
    for (int64_t j = 0; j < d; ++j) m.centre[j] /= double(k);
    centred.resize(size_t(k) * size_t(d));
    for (int64_t c = 0; c < k; ++c)
      for (int64_t j = 0; j < d; ++j) centred[c * d + j] = means[c * d + j] - m.centre[j];
    means = centred.data();
  }
  auto prepare = [&](int64_t f, const double* P) {
    S* out = m.padded.data + size_t(f) * size_t(d) * size_t(dp);
    for (int64_t a = 0; a < d; ++a)
      for (int64_t j = 0; j < dp; ++j) out[a * dp + j] = j < d ? static_cast<S>(P[a * d + j]) : S(0);
    for (int64_t t = 0; t < tiles; ++t) {
      int32_t begin = int32_t(d), end = 0;
      for (int64_t a = 0; a < d; ++a)
        for (int64_t j = t * tile; j < (t + 1) * tile; ++j)
          if (out[a * dp + j] != S(0)) {
            begin = std::min(begin, int32_t(a));
            end = std::max(end, int32_t(a + 1));
          }
      if (end == 0) begin = 0;
      m.tile_begin[size_t(f * tiles + t)] = begin;
      m.tile_end[size_t(f * tiles + t)] = end;
    }
  };
  std::vector<double> sum(static_cast<size_t>(m.dp));
  auto project = [d, dp, &sum](const double* mu, const double* P, S* out) {  // in float64
    for (int64_t j = 0; j < dp; ++j) sum[j] = 0.0;
    for (int64_t a = 0; a < d; ++a)
      for (int64_t j = 0; j < d; ++j) sum[j] += mu[a] * P[a * d + j];
    for (int64_t j = 0; j < dp; ++j) out[j] = static_cast<S>(sum[j]);
  };
  switch (type) {
    case CovarianceType::Full:
    case CovarianceType::Tied: {
      const int64_t factors = type == CovarianceType::Full ? k : 1;
      m.padded.assign(size_t(factors) * size_t(d) * size_t(dp));
      m.tile_begin.resize(size_t(factors * tiles));
      m.tile_end.resize(size_t(factors * tiles));
      m.projected.assign(size_t(k) * size_t(dp));
      for (int64_t f = 0; f < factors; ++f) prepare(f, chol + size_t(f) * dd);
      for (int64_t c = 0; c < k; ++c) {
        const double* P = chol + (type == CovarianceType::Full ? size_t(c) * dd : 0);
        double s = 0.0;
        for (int64_t j = 0; j < d; ++j) s += std::log(P[j * d + j]);
        m.log_det[c] = s;
        project(means + size_t(c) * size_t(d), P, m.projected.data + size_t(c) * size_t(dp));
      }
      if (type == CovarianceType::Tied) {  // the projected means, transposed [dp x kp]
        m.kp = (k + lanes - 1) / lanes * lanes;
        transpose_padded(m.projected.data, k, dp, m.kp, m.mean_t);
      }
      break;
    }
    case CovarianceType::Diag:
      for (int64_t c = 0; c < k; ++c) {
        double s = 0.0;
        for (int64_t j = 0; j < d; ++j) s += std::log(chol[size_t(c) * size_t(d) + j]);
        m.log_det[c] = s;
      }
      m.kp = (k + lanes - 1) / lanes * lanes;
      transpose_padded(means, k, d, m.kp, m.mean_t);
      transpose_padded(chol, k, d, m.kp, m.scale_t);
      break;
    case CovarianceType::Spherical:
      m.spherical_precision.resize(size_t(k));
      for (int64_t c = 0; c < k; ++c) {
        m.log_det[c] = double(d) * std::log(chol[c]);
        m.spherical_precision[c] = chol[c] * chol[c];
      }
      m.kp = (k + lanes - 1) / lanes * lanes;
      transpose_padded(means, k, d, m.kp, m.mean_t);
      break;
  }
  return m;
}

// The register tile shared by the E-step's GEMM (gemm_rows4) and the M-step's scatter
// (scatter_block): 4 rows x kTile<S> columns (two vectors per row) of x^T-times-P products,
//   c[2 r + h] += sum_{a in [begin, end)} x[r * x_row + a * x_step] * P[a * ldp + h L : + L],
// one FMA per term, a in order. E-step: x's rows are 4 rows of X (x_row = d, x_step = 1);
// scatter: 4 columns of W (x_row = 1, x_step = dp).
template <class S>
inline void tile_accumulate(const S* __restrict x, int64_t x_row, int64_t x_step,
                            const S* __restrict P, int64_t ldp, int64_t begin, int64_t end,
                            Vector<S> (&c)[8]) {
  using V = Vector<S>;
  constexpr int64_t L = kLanes<S>;
  for (int64_t a = begin; a < end; ++a) {
    V p0 = detail::load<V>(P + a * ldp), p1 = detail::load<V>(P + a * ldp + L);
#if defined(__AVX__)
    // In registers: GCC otherwise folds each load into the four FMAs that use it, twelve loads
    // per eight FMAs, and the loop waits on the load ports (1.2x on the float64 scatter).
    __asm__("" : "+x"(p0), "+x"(p1));
#endif
    const S* xa = x + a * x_step;
    const S b0 = xa[0], b1 = xa[x_row], b2 = xa[2 * x_row], b3 = xa[3 * x_row];
    c[0] += b0 * p0;
    c[1] += b0 * p1;
    c[2] += b1 * p0;
    c[3] += b1 * p1;
    c[4] += b2 * p0;
    c[5] += b2 * p1;
    c[6] += b3 * p0;
    c[7] += b3 * p1;
  }
}

// Four rows x (stride d) times one padded factor P [d x dp], one register tile of 4 rows x
// kTile<S> columns (two vectors) at a time over the rows [begin, end) of P that hold the tile's
// nonzeros (skipping only zeros, so exact for any P). kStore: y [4 x dp] = x @ P. Otherwise
// the tile is reduced at once to squared[r] = ||x_r @ P - mp||^2 (mp [dp], zero padded),
// accumulated in S, and nothing is stored.
template <class S, bool kStore>
inline void gemm_rows4(const S* __restrict x, int64_t d, int64_t dp, const S* __restrict P,
                       const int32_t* __restrict begin, const int32_t* __restrict end,
                       const S* __restrict mp, S* __restrict y, S* __restrict squared) {
  using V = Vector<S>;
  constexpr int64_t L = kLanes<S>, tile = kTile<S>;
  const V zero = detail::splat(S(0));
  V s0 = zero, s1 = zero, s2 = zero, s3 = zero;
  for (int64_t t = 0; t < dp / tile; ++t) {
    const int64_t j0 = t * tile;
    V c[8] = {zero, zero, zero, zero, zero, zero, zero, zero};
    tile_accumulate<S>(x, d, 1, P + j0, dp, begin[t], end[t], c);
    if constexpr (kStore) {
      for (int r = 0; r < 4; ++r) {
        store<S>(y + r * dp + j0, c[2 * r]);
        store<S>(y + r * dp + j0 + L, c[2 * r + 1]);
      }
    } else {
      const V m0 = detail::load<V>(mp + j0), m1 = detail::load<V>(mp + j0 + L);
      for (int r = 0; r < 4; ++r) {
        c[2 * r] -= m0;
        c[2 * r + 1] -= m1;
      }
      s0 += c[0] * c[0] + c[1] * c[1];
      s1 += c[2] * c[2] + c[3] * c[3];
      s2 += c[4] * c[4] + c[5] * c[5];
      s3 += c[6] * c[6] + c[7] * c[7];
    }
  }
  if constexpr (!kStore) {
    squared[0] = lane_sum(s0);
    squared[1] = lane_sum(s1);
    squared[2] = lane_sum(s2);
    squared[3] = lane_sum(s3);
  }
}

// Two rows against kGroups vectors of components, accumulators in registers (see
// componentwise_squares).
template <class S, bool kScaled, int kGroups>
inline void componentwise_tile(const Model<S>& m, int64_t d, const S* x0, const S* x1,
                               int64_t c0, Vector<S> (&a0)[kGroups], Vector<S> (&a1)[kGroups]) {
  using V = Vector<S>;
  constexpr int64_t L = kLanes<S>;
  const int64_t kp = m.kp;
  for (int v = 0; v < kGroups; ++v) a0[v] = a1[v] = detail::splat(S(0));
  for (int64_t j = 0; j < d; ++j) {
    const S* mu = m.mean_t.data + j * kp + c0;
    const S b0 = x0[j], b1 = x1[j];
#pragma GCC unroll 4
    for (int v = 0; v < kGroups; ++v) {
      const V mv = detail::load<V>(mu + L * v);
      V t0 = b0 - mv, t1 = b1 - mv;
      if constexpr (kScaled) {
        const V sv = detail::load<V>(m.scale_t.data + j * kp + c0 + L * v);
        t0 *= sv;
        t1 *= sv;
      }
      a0[v] += t0 * t0;
      a1[v] += t1 * t1;
    }
  }
}

template <class S, bool kScaled, int kGroups>
inline void componentwise_store(const Model<S>& m, int64_t d, const S* x0, const S* x1,
                                int64_t c0, S* q0, S* q1) {
  constexpr int64_t L = kLanes<S>;
  Vector<S> a0[kGroups], a1[kGroups];
  componentwise_tile<S, kScaled, kGroups>(m, d, x0, x1, c0, a0, a1);
  for (int v = 0; v < kGroups; ++v) {
    store<S>(q0 + c0 + L * v, a0[v]);
    store<S>(q1 + c0 + L * v, a1[v]);
  }
}

// Diag and spherical, one component per lane (lanes = components of the transposed means and
// factors): q[i][c] = sum_j ((x_ij - mu_cj) s_cj)^2 (diag; kScaled) or sum_j (x_ij - mu_cj)^2
// (spherical), summed in feature order in S, for two rows at a time against up to four vectors
// of components (16 in float64, 32 in float32; accumulators in registers), so that each loaded
// mean (and factor) vector serves both rows. x [rows x d] has rows rounded up to an even count
// (zero rows); q is [rows rounded up to even x kp]. Tied uses it too, on the rows times the
// factor (d = dp) against the projected means.
template <class S, bool kScaled>
void componentwise_squares(const Model<S>& m, const S* x, int64_t d, int64_t rows, S* q) {
  constexpr int64_t L = kLanes<S>;
  const int64_t kp = m.kp;
  for (int64_t i = 0; i < rows; i += 2) {
    const S* x0 = x + i * d;
    S* q0 = q + i * kp;
    for (int64_t c0 = 0; c0 < kp; c0 += 4 * L) {
      switch (std::min<int64_t>(4 * L, kp - c0) / L) {
        case 4: componentwise_store<S, kScaled, 4>(m, d, x0, x0 + d, c0, q0, q0 + kp); break;
        case 3: componentwise_store<S, kScaled, 3>(m, d, x0, x0 + d, c0, q0, q0 + kp); break;
        case 2: componentwise_store<S, kScaled, 2>(m, d, x0, x0 + d, c0, q0, q0 + kp); break;
        default: componentwise_store<S, kScaled, 1>(m, d, x0, x0 + d, c0, q0, q0 + kp); break;
      }
    }
  }
}

// The block's log-densities: lp[rows x k] (float64) for the rows x[rows x d] in S; x and y
// [rows x dp] have room for rows rounded up to 4 (x's extra rows are zeros). The squared
// distances q are computed in S and converted to float64 for the rest.
template <class S>
void block_log_prob(const Model<S>& m, const S* x, int64_t rows, S* y, S* q, double* lp) {
  const int64_t d = m.d, k = m.k;
  const double constant = double(d) * kLog2Pi;
  auto store = [&](int64_t i, int64_t c, double q) {
    lp[i * k + c] = -0.5 * (constant + q) + m.log_det[c];
  };
  switch (m.type) {
    case CovarianceType::Full: {
      const int64_t tiles = m.dp / kTile<S>;
      S squared[4];
      for (int64_t c = 0; c < k; ++c) {
        const S* P = m.padded.data + size_t(c) * size_t(d) * size_t(m.dp);
        const S* mp = m.projected.data + size_t(c) * size_t(m.dp);
        for (int64_t i = 0; i < rows; i += 4) {
          gemm_rows4<S, false>(x + i * d, d, m.dp, P, m.tile_begin.data() + c * tiles,
                               m.tile_end.data() + c * tiles, mp, nullptr, squared);
          for (int64_t r = 0; r < 4 && i + r < rows; ++r) store(i + r, c, double(squared[r]));
        }
      }
      break;
    }
    case CovarianceType::Tied:
      for (int64_t i = 0; i < rows; i += 4)
        gemm_rows4<S, true>(x + i * d, d, m.dp, m.padded.data, m.tile_begin.data(),
                            m.tile_end.data(), nullptr, y + i * m.dp, nullptr);
      componentwise_squares<S, false>(m, y, m.dp, rows, q);
      for (int64_t i = 0; i < rows; ++i)
        for (int64_t c = 0; c < k; ++c) store(i, c, double(q[i * m.kp + c]));
      break;
    case CovarianceType::Diag:
      componentwise_squares<S, true>(m, x, d, rows, q);
      for (int64_t i = 0; i < rows; ++i)
        for (int64_t c = 0; c < k; ++c) store(i, c, double(q[i * m.kp + c]));
      break;
    case CovarianceType::Spherical:
      componentwise_squares<S, false>(m, x, d, rows, q);
      for (int64_t i = 0; i < rows; ++i)
        for (int64_t c = 0; c < k; ++c)
          store(i, c, double(q[i * m.kp + c]) * m.spherical_precision[c]);
      break;
  }
}

void check_shapes(const char* op, int64_t n_samples, int64_t n_features, int64_t n_components) {
  if (n_samples < 0 || n_features < 1 || n_components < 1)
    throw std::invalid_argument(std::string(op) + ": bad shape (n_samples=" +
                                std::to_string(n_samples) + ", n_features=" +
                                std::to_string(n_features) + ", n_components=" +
                                std::to_string(n_components) + ")");
}

// log_weights == nullptr: write the log-densities to out. Otherwise the E-step: out gets the
// log-responsibilities (or with `resp` the responsibilities themselves, exp(w_c - largest) / sum
// from the exponentials the log-sum-exp computes anyway) and log_norm the per-row log-sum-exp.
// The squared distances are computed in X's dtype T (the model's S = T), everything after them
// in float64.
template <class T>
void run(const T* X, const double* log_weights, const double* means, const double* chol,
         int64_t n, int64_t d, int64_t k, CovarianceType type, T* out, double* log_norm,
         bool resp = false) {
  const Model<T> m = make_model<T>(means, chol, d, k, type);
  const int64_t block = row_block(d);
  const int64_t n_blocks = (n + block - 1) / block;
  const double per_row = double(k) * double(m.dp) * (type == CovarianceType::Full || type == CovarianceType::Tied ? double(d) : 1.0);
#pragma omp parallel num_threads(detail::threads_for(double(n) * per_row))
  {
    std::vector<T> xbuf(size_t(block) * size_t(d), T(0));
    AlignedArray<T> y, q;  // tied: the block times the factor; the squares [block x kp]
    y.assign(size_t(block) * size_t(m.dp));
    q.assign(size_t(block) * size_t(m.kp));
    std::vector<double> lp(size_t(block) * size_t(k));
#pragma omp for schedule(static)
    for (int64_t b = 0; b < n_blocks; ++b) {
      const int64_t i0 = b * block;
      const int64_t rows = std::min(block, n - i0);
      const T* src = X + i0 * d;
      const int64_t padded_rows = std::min(block, (rows + 3) / 4 * 4);
      const T* x = xbuf.data();
      if constexpr (std::is_same_v<T, double>) {
        // float64 rows are read in place where the padding rows exist (they are the next
        // block's: computed, never stored); only the last block is copied and zero padded.
        if (i0 + padded_rows <= n) x = src;
        if (x == xbuf.data())
          for (int64_t e = 0; e < rows * d; ++e) xbuf[e] = src[e];
      } else {  // float32 rows are centred: float(x - m0), the difference in float64
        for (int64_t i = 0; i < rows; ++i)
          for (int64_t j = 0; j < d; ++j)
            xbuf[i * d + j] = static_cast<T>(double(src[i * d + j]) - m.centre[j]);
      }
      if (x == xbuf.data())
        for (int64_t e = rows * d; e < padded_rows * d; ++e) xbuf[e] = T(0);
      block_log_prob(m, x, rows, y.data, q.data, lp.data());
      T* o = out + i0 * k;
      if (log_weights == nullptr) {
        for (int64_t e = 0; e < rows * k; ++e) o[e] = static_cast<T>(lp[e]);
        continue;
      }
      for (int64_t i = 0; i < rows; ++i) {
        double* w = lp.data() + i * k;
        double largest = -std::numeric_limits<double>::infinity();
        int64_t c0 = 0;
        {  // four components at a time (the max of doubles does not vectorise by itself)
          v4d top = v4d{} + largest;
          for (; c0 + 4 <= k; c0 += 4) {
            const v4d v = load4(w + c0) + load4(log_weights + c0);
            store4(w + c0, v);
            top = detail::vmax(top, v);
          }
          largest = std::max(std::max(top[0], top[1]), std::max(top[2], top[3]));
        }
        for (int64_t c = c0; c < k; ++c) {
          w[c] += log_weights[c];
          largest = std::max(largest, w[c]);
        }
        double norm;
        if (std::isinf(largest)) {
          norm = largest;
          log_norm[i0 + i] = norm;
          for (int64_t c = 0; c < k; ++c)  // NaN (or, with +inf, 0 and NaN) as exp(log_resp)
            o[i * k + c] = static_cast<T>(resp ? std::exp(w[c] - norm) : w[c] - norm);
          continue;
        }
        v4d total = {};
        int64_t c = 0;
        for (; c + 4 <= k; c += 4) {
          const v4d e = detail::exp_any(load4(w + c) - largest);
          if (resp) store4(w + c, e);
          total += e;
        }
        double rest = 0.0;
        for (; c < k; ++c) {
          const double e = std::exp(w[c] - largest);
          if (resp) w[c] = e;
          rest += e;
        }
        const double sum = ((total[0] + total[1]) + (total[2] + total[3])) + rest;
        norm = largest + std::log(sum);
        log_norm[i0 + i] = norm;
        if (resp)
          for (int64_t c = 0; c < k; ++c) o[i * k + c] = static_cast<T>(w[c] / sum);
        else
          for (int64_t c = 0; c < k; ++c) o[i * k + c] = static_cast<T>(w[c] - norm);
      }
    }
  }
}
}  // namespace

void gmm_estimate_log_prob(const float* X, const double* means, const double* precisions_cholesky,
                           int64_t n_samples, int64_t n_features, int64_t n_components,
                           CovarianceType covariance_type, float* log_prob) {
  check_shapes("gmm_estimate_log_prob", n_samples, n_features, n_components);
  run<float>(X, nullptr, means, precisions_cholesky, n_samples, n_features, n_components,
             covariance_type, log_prob, nullptr);
}

void gmm_estimate_log_prob(const double* X, const double* means, const double* precisions_cholesky,
                           int64_t n_samples, int64_t n_features, int64_t n_components,
                           CovarianceType covariance_type, double* log_prob) {
  check_shapes("gmm_estimate_log_prob", n_samples, n_features, n_components);
  run<double>(X, nullptr, means, precisions_cholesky, n_samples, n_features, n_components,
              covariance_type, log_prob, nullptr);
}

void gmm_e_step(const float* X, const double* log_weights, const double* means,
                const double* precisions_cholesky, int64_t n_samples, int64_t n_features,
                int64_t n_components, CovarianceType covariance_type, float* log_resp,
                double* log_norm, bool responsibilities) {
  check_shapes("gmm_e_step", n_samples, n_features, n_components);
  if (log_weights == nullptr) throw std::invalid_argument("gmm_e_step: log_weights is null");
  run<float>(X, log_weights, means, precisions_cholesky, n_samples, n_features, n_components,
             covariance_type, log_resp, log_norm, responsibilities);
}

void gmm_e_step(const double* X, const double* log_weights, const double* means,
                const double* precisions_cholesky, int64_t n_samples, int64_t n_features,
                int64_t n_components, CovarianceType covariance_type, double* log_resp,
                double* log_norm, bool responsibilities) {
  check_shapes("gmm_e_step", n_samples, n_features, n_components);
  if (log_weights == nullptr) throw std::invalid_argument("gmm_e_step: log_weights is null");
  run<double>(X, log_weights, means, precisions_cholesky, n_samples, n_features, n_components,
              covariance_type, log_resp, log_norm, responsibilities);
}


namespace {

template <class T>
void responsibilities(const T* log_resp, T* resp, int64_t n) {
  if (n < 0) throw std::invalid_argument("gmm_responsibilities: negative size");
  const int64_t chunk = 4096;
  const int64_t chunks = (n + chunk - 1) / chunk;
#pragma omp parallel for schedule(static) num_threads(detail::threads_for(double(n) * 16.0))
  for (int64_t b = 0; b < chunks; ++b) {
    const int64_t end = std::min(n, (b + 1) * chunk);
    int64_t e = b * chunk;
    for (; e + 4 <= end; e += 4) {
      const v4d v = detail::exp_any(v4d{double(log_resp[e]), double(log_resp[e + 1]), double(log_resp[e + 2]),
                             double(log_resp[e + 3])});
      for (int l = 0; l < 4; ++l) resp[e + l] = static_cast<T>(v[l]);
    }
    for (; e < end; ++e) resp[e] = static_cast<T>(std::exp(double(log_resp[e])));
  }
}

}  // namespace

void gmm_responsibilities(const float* log_resp, float* resp, int64_t n) {
  responsibilities(log_resp, resp, n);
}
void gmm_responsibilities(const double* log_resp, double* resp, int64_t n) {
  responsibilities(log_resp, resp, n);
}

// ---- M-step sums ---------------------------------------------------------------------------
// gmm_moments and gmm_full_scatter: the sums over the rows of scikit-learn's
// _estimate_gaussian_parameters (the k x d^2 divisions are the caller's).
// Threads own contiguous ranges of rows (static schedule over row blocks) and accumulate into
// their own float64 partials; the partials are added in thread order at the end.
// Precision (cpu/mixture.hpp): gmm_moments sums in float64 for both dtypes (converting float32
// rows once per block; its sums meet E[x^2] - mean^2 in the caller). gmm_full_scatter computes
// in X's dtype S: per block of rows and component, D = S(x - mu) and W = S(r (x - mu)) from the
// float64 difference, W^T D in S in the E-step's register tiles (tile_accumulate: 4 x 8
// doubles, 4 x 16 floats) over the block's rows only, each tile then added to the float64
// partial; so float32 X runs the n k d^2 / 2 FMAs 8 lanes wide with an error ~(B + 2) u32 for
// B rows per block (<= 64), where one float32 sum over all the rows would grow with n.
// Cost: moments ~ 2 n k d (+ n d^2 tied, + 2 n k d diag/spherical); full scatter ~ n k d^2
// (upper triangle; the tiles cover it to within a vector of the diagonal), plus n k d
// differences. Memory: threads x partials.

namespace {

constexpr int64_t kMomentRows = 16;

// acc[j] += sum_i w[i * w_stride] * rows[i * d + j] for i = 0 .. n_rows - 1, each acc[j] adding
// the rows in order; columns in registers across the block of rows (one load and one store of
// acc per block instead of per row), 32 at a time where d allows: eight independent FMA chains,
// where one strip of eight columns waited on the FMA latency (4 cycles) at every row.
template <int kStrips>
inline void accumulate_strips(double* __restrict acc, const double* __restrict rows,
                              const double* __restrict w, int64_t w_stride, int64_t n_rows,
                              int64_t d) {  // d: the row stride of rows
  v4d a[2 * kStrips];
#pragma GCC unroll 8
  for (int v = 0; v < 2 * kStrips; ++v) a[v] = load4(acc + 4 * v);
  for (int64_t i = 0; i < n_rows; ++i) {
    const double wi = w[i * w_stride];
    const v4d wv = {wi, wi, wi, wi};
#pragma GCC unroll 8
    for (int v = 0; v < 2 * kStrips; ++v) a[v] += wv * load4(rows + i * d + 4 * v);
  }
#pragma GCC unroll 8
  for (int v = 0; v < 2 * kStrips; ++v) store4(acc + 4 * v, a[v]);
}

// columns = d by default; a smaller count adds only the first `columns` of each row.
inline void accumulate_rows(double* __restrict acc, const double* __restrict rows,
                            const double* __restrict w, int64_t w_stride, int64_t n_rows,
                            int64_t d, int64_t columns = -1) {
  if (columns < 0) columns = d;
  int64_t j = 0;
  for (; j + 32 <= columns; j += 32) accumulate_strips<4>(acc + j, rows + j, w, w_stride, n_rows, d);
  for (; j + 8 <= columns; j += 8) accumulate_strips<1>(acc + j, rows + j, w, w_stride, n_rows, d);
  for (; j < columns; ++j) {
    double a = acc[j];
    for (int64_t i = 0; i < n_rows; ++i) a += w[i * w_stride] * rows[i * d + j];
    acc[j] = a;
  }
}

template <class T>
void moments_impl(const T* X, const T* resp, int64_t n, int64_t d, int64_t k,
                  CovarianceType type, double* nk, double* sums, double* extra) {
  const bool tied = type == CovarianceType::Tied;
  const bool squares = type == CovarianceType::Diag || type == CovarianceType::Spherical;
  const size_t n_extra = tied ? size_t(d) * size_t(d) : squares ? size_t(k) * size_t(d) : 0;
  const size_t stride = size_t(k) + size_t(k) * size_t(d) + n_extra + 8;
  const int n_threads = detail::threads_for(double(n) * double(k) * double(d) + double(n) * double(n_extra));
  std::vector<double> partials(size_t(n_threads) * stride, 0.0);
  int used = 1;
#pragma omp parallel num_threads(n_threads)
  {
#pragma omp single
    used = omp_get_num_threads();
    const int t = omp_get_thread_num();
    double* pk = partials.data() + size_t(t) * stride;
    double* ps = pk + k;
    double* pe = ps + size_t(k) * size_t(d);
    // Rows in blocks of kMomentRows, the accumulators of one component at a time: its d sums
    // (and squares) stay in L1 while the block's rows are added, in row order as before. One
    // row at a time, all k x d accumulators went through the cache for every row: the diag
    // M-step of 1,000,000 x 64, K=64 took 0.9 s.
    std::vector<double> x(size_t(kMomentRows) * size_t(d)), xx(size_t(kMomentRows) * size_t(d));
    std::vector<double> r(size_t(kMomentRows) * size_t(k));
#pragma omp for schedule(static)
    for (int64_t block = 0; block < (n + kMomentRows - 1) / kMomentRows; ++block) {
      const int64_t i0 = block * kMomentRows;
      const int64_t rows = std::min(kMomentRows, n - i0);
      // float64 rows and responsibilities are read in place; float32 ones converted once.
      const double* xb = x.data();
      const double* rb = r.data();
      if constexpr (std::is_same_v<T, double>) {
        xb = X + i0 * d;
        rb = resp + i0 * k;
      } else {
        for (int64_t e = 0; e < rows * d; ++e) x[e] = static_cast<double>(X[i0 * d + e]);
        for (int64_t e = 0; e < rows * k; ++e) r[e] = static_cast<double>(resp[i0 * k + e]);
      }
      if (squares)
        for (int64_t e = 0; e < rows * d; ++e) xx[e] = xb[e] * xb[e];
      for (int64_t i = 0; i < rows; ++i)  // across the components: k chains, not one
        for (int64_t c = 0; c < k; ++c) pk[c] += rb[i * k + c];
      for (int64_t c = 0; c < k; ++c) {
        accumulate_rows(ps + size_t(c) * size_t(d), xb, rb + c, k, rows, d);
        if (squares) accumulate_rows(pe + size_t(c) * size_t(d), xx.data(), rb + c, k, rows, d);
      }
      if (tied)  // row a of X^T X from column 8 floor(a / 8) on, the block's rows in order
        for (int64_t a = 0; a < d; ++a) {
          const int64_t b0 = a / 8 * 8;
          accumulate_rows(pe + size_t(a) * size_t(d) + b0, xb + b0, xb + a, d, rows, d, d - b0);
        }
    }
  }
  std::fill(nk, nk + k, 0.0);
  std::fill(sums, sums + size_t(k) * size_t(d), 0.0);
  if (n_extra) std::fill(extra, extra + n_extra, 0.0);
  for (int t = 0; t < used; ++t) {
    const double* pk = partials.data() + size_t(t) * stride;
    for (int64_t c = 0; c < k; ++c) nk[c] += pk[c];
    for (size_t e = 0; e < size_t(k) * size_t(d); ++e) sums[e] += pk[k + e];
    for (size_t e = 0; e < n_extra; ++e) extra[e] += pk[k + size_t(k) * size_t(d) + e];
  }
  if (tied)  // mirror the upper triangle
    for (int64_t a = 0; a < d; ++a)
      for (int64_t b = 0; b < a; ++b) extra[a * d + b] = extra[b * d + a];
}

// part[0 .. lanes) += t: 4 doubles, or 8 floats converted exactly to double.
inline void add_into(double* part, v4d t) { store4(part, load4(part) + t); }
inline void add_into(double* part, detail::v8sf t) {
  float f[8];
  std::memcpy(f, &t, sizeof f);
  store4(part, load4(part) + detail::load_as_double(f));
  store4(part + 4, load4(part + 4) + detail::load_as_double(f + 4));
}

// One block of rows' contribution to one component's scatter, over the upper triangle: part
// (float64, row stride ld) += W^T D, with W and D [rows x ld] in S, zero padded from column d
// to ld >= d rounded up to L, plus L. Register tiles of 4 rows (a0..a0+3) x kTile<S> = 2 L
// columns, the first starting at a0 rounded down to a multiple of L (so the tiles cover the
// triangle to within L - 1 columns of the diagonal: a tile starting at a0 rounded down to a
// multiple of 2 L does 1.5x the triangle's work at d = 32 in float32, more vector FMAs than
// float64's 8-column tiles), summed over the block's rows in S (tile_accumulate), then added to
// part in float64. Each entry is its own FMA chain over the rows in order, whatever the tiling.
template <class S>
void scatter_block(const S* weighted, const S* diff, int64_t rows, int64_t d, int64_t ld,
                   double* part) {
  using V = Vector<S>;
  constexpr int64_t L = kLanes<S>, tile = kTile<S>;
  const V zero = detail::splat(S(0));
  for (int64_t a0 = 0; a0 < d; a0 += 4)
    for (int64_t j0 = a0 / L * L; j0 < d; j0 += tile) {
      V c[8] = {zero, zero, zero, zero, zero, zero, zero, zero};
      tile_accumulate<S>(weighted + a0, 1, ld, diff + j0, ld, 0, rows, c);
      double* s0 = part + a0 * ld + j0;
      for (int r = 0; r < 4; ++r) {
        add_into(s0 + r * ld, c[2 * r]);
        add_into(s0 + r * ld + L, c[2 * r + 1]);
      }
    }
}

template <class T>
void full_scatter_impl(const T* X, const T* resp, const double* means, int64_t n, int64_t d,
                       int64_t k, double* scatter) {
  // Per thread and component a [dp x dp] float64 partial; each block of rows adds W^T D to it
  // (scatter_block), W and D [rows x dp] (zero padded) the weighted and plain differences in
  // X's dtype S: D = S(x - mu), W = S(r (x - mu)), each rounded once from float64 (for float32,
  // r (x - mu) rounded once is one rounding closer than float(r) * float(x - mu)).
  using S = T;
  constexpr int64_t L = kLanes<S>;
  const int64_t dp = (d + L - 1) / L * L + L;  // the row stride (scatter_block)
  const size_t dd = size_t(d) * size_t(d), pp = size_t(dp) * size_t(dp);
  const size_t stride = size_t(k) * pp + 8;
  // W and D: 2 x block x dp values in L1 (float64: up to ~32 KiB). float32: up to twice the rows
  // for the same bytes, at most 64 -- the float32 sums run over one block of rows, an error
  // ~(block + 2) u32 (cpu/mixture.hpp). At d = 128 its 32 rows (float64: 16) halve the passes
  // over the 148 KB partials per component: 1.14x (paired, 100,000 x 128, K = 40); at d = 32,
  // 128 rows (40 KB) were slower than 64.
  const int64_t block = std::is_same_v<S, double> ? std::max<int64_t>(8, row_block(d) / 2)
                                                  : std::min<int64_t>(64, row_block(d));
  const int64_t n_blocks = (n + block - 1) / block;
  const int n_threads = detail::threads_for(double(n) * double(k) * double(d) * double(d));
  std::vector<double> partials(size_t(n_threads) * stride, 0.0);
  int used = 1;
#pragma omp parallel num_threads(n_threads)
  {
#pragma omp single
    used = omp_get_num_threads();
    double* part = partials.data() + size_t(omp_get_thread_num()) * stride;
    AlignedArray<S> diff, weighted;
    diff.assign(size_t(block) * size_t(dp));
    weighted.assign(size_t(block) * size_t(dp));
#pragma omp for schedule(static)
    for (int64_t b = 0; b < n_blocks; ++b) {
      const int64_t i0 = b * block;
      const int64_t rows = std::min(block, n - i0);
      for (int64_t c = 0; c < k; ++c) {
        const double* mu = means + size_t(c) * size_t(d);
        for (int64_t i = 0; i < rows; ++i) {
          const double r = static_cast<double>(resp[(i0 + i) * k + c]);
          const T* x = X + (i0 + i) * d;
          S* __restrict df = diff.data + i * dp;
          S* __restrict w = weighted.data + i * dp;
          for (int64_t j = 0; j < d; ++j) {
            const double difference = static_cast<double>(x[j]) - mu[j];
            df[j] = static_cast<S>(difference);
            w[j] = static_cast<S>(r * difference);
          }
        }
        scatter_block<S>(weighted.data, diff.data, rows, d, dp, part + size_t(c) * pp);
      }
    }
  }
  std::fill(scatter, scatter + size_t(k) * dd, 0.0);
  for (int t = 0; t < used; ++t) {
    const double* part = partials.data() + size_t(t) * stride;
    for (int64_t c = 0; c < k; ++c)
      for (int64_t a = 0; a < d; ++a)
        for (int64_t j = a; j < d; ++j)
          scatter[size_t(c) * dd + size_t(a * d + j)] += part[size_t(c) * pp + size_t(a * dp + j)];
  }
  for (int64_t c = 0; c < k; ++c) {  // mirror the upper triangle
    double* sc = scatter + size_t(c) * dd;
    for (int64_t a = 0; a < d; ++a)
      for (int64_t b = 0; b < a; ++b) sc[a * d + b] = sc[b * d + a];
  }
}

}  // namespace

void gmm_moments(const float* X, const float* resp, int64_t n_samples, int64_t n_features,
                 int64_t n_components, CovarianceType covariance_type, double* nk, double* sums,
                 double* extra) {
  check_shapes("gmm_moments", n_samples, n_features, n_components);
  moments_impl(X, resp, n_samples, n_features, n_components, covariance_type, nk, sums, extra);
}
void gmm_moments(const double* X, const double* resp, int64_t n_samples, int64_t n_features,
                 int64_t n_components, CovarianceType covariance_type, double* nk, double* sums,
                 double* extra) {
  check_shapes("gmm_moments", n_samples, n_features, n_components);
  moments_impl(X, resp, n_samples, n_features, n_components, covariance_type, nk, sums, extra);
}
void gmm_full_scatter(const float* X, const float* resp, const double* means, int64_t n_samples,
                      int64_t n_features, int64_t n_components, double* scatter) {
  check_shapes("gmm_full_scatter", n_samples, n_features, n_components);
  full_scatter_impl(X, resp, means, n_samples, n_features, n_components, scatter);
}
void gmm_full_scatter(const double* X, const double* resp, const double* means,
                      int64_t n_samples, int64_t n_features, int64_t n_components,
                      double* scatter) {
  check_shapes("gmm_full_scatter", n_samples, n_features, n_components);
  full_scatter_impl(X, resp, means, n_samples, n_features, n_components, scatter);
}

}  // namespace fastlatent::cpu
