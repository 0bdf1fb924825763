// snnl_loss_and_grad: the soft nearest neighbour loss of a batch and its exact gradient, streamed
// over tiles of the B x B matrix of distances, which is never held (definition, conventions and
// the gradient formulas: fastlatent/ops/snnl.py).
//
// Layout. Z = X centred on its column means (squared euclidean: distances do not change, and
// the expanded form |z_i|^2 + |z_j|^2 - 2 z_i.z_j cancels less) or X with unit rows (cosine), in
// X's dtype, rows padded with zeros to a multiple of the tiles and columns to a multiple of the
// vector width. The dot products z_i.z_j come from the register-blocked GEMM microkernel of
// tile_engine.hpp (MR rows of Z read in place x NR columns from Z packed in panels), in X's
// dtype; everything after the products (exponents, exponentials) stays in X's dtype per tile,
// and every sum across tiles is float64.
//
// Pass 1 (loss). A thread owns a block of rows and walks the columns in blocks of JB (the packed
// block stays in L2). For each row it keeps an online log-sum-exp: the running maximum m_i of
// s_ij = -d_ij / T (j != i) and the sums A'_i, S'_i of exp(s_ij - m_i) over all and over
// same-class columns, rescaled when the maximum rises. At the end log(eps + A_i) and p_i follow
// in log space, so no exponential under- or overflows at any temperature.
// Pass 2 (gradient). The same tiles again; each gives g_ij (from row i's statistics) and g_ji
// (from column j's), G_ij = g_ij + g_ji goes into a [rows x JB] buffer, and after each column
// block the rows' accumulators get G_block @ Z_block (a second GEMM, in X's dtype, added into
// float64 per block). dL/dT accumulates sum_j g_ij s_ij per row.
// Cost: 2 B^2 D flops + B^2 exponentials (loss); 6 B^2 D flops + 3 B^2 exponentials (with the
// gradient). Memory: Z and its packed copy (2 B D values), per-row statistics, and per thread
// [rows x D] float64 accumulators and a [rows x JB] buffer.
// The rows of a block are summed in a fixed order by one thread and the per-row results are
// reduced in row order, so the result does not depend on the number of threads.
#include "cpu/snnl.hpp"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "cpu/tile_engine.hpp"

namespace fastlatent::cpu {
namespace {

using namespace detail;

constexpr int MR = 6;          // rows per microkernel call
constexpr int NV = 2;          // vectors of columns per microkernel call
constexpr int kRowPanels = 8;  // a thread's block of rows: kRowPanels * MR rows
constexpr int kColumnPanels = 16;  // a column block: kColumnPanels * NR columns (L2-sized)

// exp(x) for x <= 0 (x may be -inf): Cody-Waite reduction by ln 2 and a Taylor polynomial on
// |r| <= ln2 / 2 (degree 7 in float: truncation 6e-9 relative; degree 12 in double: 2e-16);
// 0 where the result would be subnormal. Plain scalar code that GCC vectorises in simd loops.
inline float exp_nonpositive(float x) {
  const bool tiny = !(x >= -87.0f);
  const float xc = tiny ? -87.0f : x;
  const float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  // round(x / ln 2)
  float r = xc - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const int32_t bits = (int32_t(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return tiny ? 0.0f : p * scale;
}

inline double exp_nonpositive(double x) {
  const bool tiny = !(x >= -708.0);
  const double xc = tiny ? -708.0 : x;
  const double n = (xc * 1.4426950408889634 + 6755399441055744.0) - 6755399441055744.0;
  double r = xc - n * 6.93147180369123816490e-01;
  r = r - n * 1.90821492927058770002e-10;
  double p = 1.0 / 479001600.0;
  p = p * r + 1.0 / 39916800.0;
  p = p * r + 1.0 / 3628800.0;
  p = p * r + 1.0 / 362880.0;
  p = p * r + 1.0 / 40320.0;
  p = p * r + 1.0 / 5040.0;
  p = p * r + 1.0 / 720.0;
  p = p * r + 1.0 / 120.0;
  p = p * r + 1.0 / 24.0;
  p = p * r + 1.0 / 6.0;
  p = p * r + 0.5;
  p = p * r + 1.0;
  p = p * r + 1.0;
  const int64_t bits = (int64_t(n) + 1023) << 52;
  double scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return tiny ? 0.0 : p * scale;
}

inline double log_add_exp(double a, double b) {
  const double hi = std::max(a, b), lo = std::min(a, b);
  if (lo == -std::numeric_limits<double>::infinity()) return hi;
  return hi + std::log1p(std::exp(lo - hi));
}

template <class T>
struct Prepared {
  static constexpr int NR = NV * Vec<T>::lanes;
  int64_t n = 0, d = 0, dp = 0, n_rows = 0, n_column_panels = 0;
  std::vector<T> Z;             // n_rows x dp
  std::vector<T> packed;        // n_column_panels panels of NR rows, feature-major
  std::vector<T> squared;       // |z_j|^2 in T, 0 on padding (n_rows)
  std::vector<int64_t> labels;  // class codes, -1 on padding (n_rows)
  std::vector<double> norms;    // |x_i| (cosine)
};

template <class T>
Prepared<T> prepare(const T* X, const int64_t* labels, int64_t n, int64_t d, bool cosine) {
  constexpr int L = Vec<T>::lanes;
  constexpr int NR = Prepared<T>::NR;
  Prepared<T> P;
  P.n = n;
  P.d = d;
  P.dp = (d + L - 1) / L * L;
  // Rows past n are read as zeros: by the last row panel (blocks of kRowPanels * MR rows) and
  // by the last column panel (NR rows).
  constexpr int64_t IB = int64_t(kRowPanels) * MR;
  P.n_column_panels = (n + NR - 1) / NR;
  P.n_rows = std::max((n + IB - 1) / IB * IB, P.n_column_panels * NR);
  P.Z.assign(size_t(P.n_rows) * size_t(P.dp), T(0));
  P.squared.assign(size_t(P.n_rows), T(0));
  P.labels.assign(size_t(P.n_rows), -1);
  std::copy(labels, labels + n, P.labels.begin());
  std::vector<double> mean(size_t(d), 0.0);
  if (!cosine) {
    for (int64_t i = 0; i < n; ++i)
      for (int64_t k = 0; k < d; ++k) mean[size_t(k)] += double(X[i * d + k]);
    for (auto& v : mean) v /= double(n);
  } else {
    P.norms.assign(size_t(n), 0.0);
  }
  const int64_t dp = P.dp;
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const T* x = X + i * d;
    T* z = P.Z.data() + i * dp;
    double scale = 1.0;
    if (cosine) {
      double sq = 0.0;
      for (int64_t k = 0; k < d; ++k) sq += double(x[k]) * double(x[k]);
      P.norms[size_t(i)] = std::sqrt(sq);
      scale = sq > 0.0 ? 1.0 / std::sqrt(sq) : 0.0;
    }
    double sq = 0.0;
    for (int64_t k = 0; k < d; ++k) {
      z[k] = cosine ? T(double(x[k]) * scale) : T(double(x[k]) - mean[size_t(k)]);
      sq += double(z[k]) * double(z[k]);
    }
    P.squared[size_t(i)] = T(sq);
  }
  std::vector<double> unused(size_t(P.n_column_panels) * NR);
  P.packed = pack_all<NR, T>(P.Z.data(), n, dp, false, unused.data());
  return P;
}

// Exponents s_ij = -d_ij / T of one row of a tile from its dot products (X's dtype); entries with
// j == i or j past the last row get -inf. The expanded form's absolute rounding error is about
// (D + 8) u (|z_i|^2 + |z_j|^2), which swamps a small distance (duplicate or near-duplicate
// points, the common case once a class has gathered): below 4x that bound the distance is
// recomputed from X in float64, direct form (|x_i - x_j|^2, or |x_i/|x_i| - x_j/|x_j||^2 / 2),
// so coinciding points are at distance exactly 0. The test is the same in both passes.
template <class T>
inline void tile_exponents(const Prepared<T>& P, const T* X, bool cosine, T inverse_temperature,
                           int64_t i, int64_t j0, const T* dots, T* s) {
  constexpr int NR = Prepared<T>::NR;
  const T zi = P.squared[size_t(i)];
  const T* zj = P.squared.data() + j0;
  const T minus_inf = -std::numeric_limits<T>::infinity();
  const T bound = T(4.0 * double(P.dp + 8) * double(std::numeric_limits<T>::epsilon()));
  unsigned recheck = 0;
#pragma omp simd reduction(| : recheck)
  for (int l = 0; l < NR; ++l) {
    const T distance = cosine ? T(1) - dots[l] : zi + zj[l] - T(2) * dots[l];
    const T clipped = distance > T(0) ? distance : T(0);
    const int64_t j = j0 + l;
    const bool valid = j < P.n && j != i;
    s[l] = valid ? -clipped * inverse_temperature : minus_inf;
    recheck |= (valid && distance < bound * (zi + zj[l])) ? 1u : 0u;
  }
  if (!recheck) return;
  const int64_t d = P.d;
  for (int l = 0; l < NR; ++l) {
    const int64_t j = j0 + l;
    if (!(j < P.n && j != i)) continue;
    const T distance = cosine ? T(1) - dots[l] : zi + zj[l] - T(2) * dots[l];
    if (!(distance < bound * (zi + zj[l]))) continue;
    const T* xi = X + i * d;
    const T* xj = X + j * d;
    double exact = 0.0;
    if (cosine) {
      const double a = 1.0 / P.norms[size_t(i)], b = 1.0 / P.norms[size_t(j)];
      for (int64_t k = 0; k < d; ++k) {
        const double t = double(xi[k]) * a - double(xj[k]) * b;
        exact += t * t;
      }
      exact *= 0.5;
    } else {
      for (int64_t k = 0; k < d; ++k) {
        const double t = double(xi[k]) - double(xj[k]);
        exact += t * t;
      }
    }
    s[l] = T(-exact * double(inverse_temperature));
  }
}

template <class T>
void snnl_impl(const T* X, const int64_t* labels, int64_t n, int64_t d, bool cosine,
               double temperature, double eps, double* loss, T* grad, double* grad_temperature) {
  constexpr int L = Vec<T>::lanes;
  constexpr int NR = Prepared<T>::NR;
  constexpr int JB = kColumnPanels * NR;
  constexpr int IB = kRowPanels * MR;
  using V = typename Vec<T>::type;
  const Prepared<T> P = prepare(X, labels, n, d, cosine);
  const int64_t dp = P.dp;
  const T inverse_temperature = T(1.0 / temperature);
  const double log_eps = eps > 0.0 ? std::log(eps) : -std::numeric_limits<double>::infinity();
  const int64_t n_row_blocks = (n + IB - 1) / IB;
  const int64_t n_column_blocks = (P.n_column_panels + kColumnPanels - 1) / kColumnPanels;

  // Per-row statistics: log(eps + A_i), p_i, 1 - p_i, the loss of row i.
  std::vector<double> log_denominator(static_cast<size_t>(n)), pick(static_cast<size_t>(n)),
      row_loss(static_cast<size_t>(n)), one_minus_pick(static_cast<size_t>(n));

  // ---- pass 1: online log-sum-exp per row ----
#pragma omp parallel
  {
    std::vector<T> running_max(IB);
    std::vector<double> other_sum(IB), same_sum(IB);
    alignas(64) T dots[NR];
    alignas(64) T s[NR];
#pragma omp for schedule(dynamic, 1)
    for (int64_t b = 0; b < n_row_blocks; ++b) {
      const int64_t i_block = b * IB;
      std::fill(running_max.begin(), running_max.end(), -std::numeric_limits<T>::infinity());
      std::fill(other_sum.begin(), other_sum.end(), 0.0);
      std::fill(same_sum.begin(), same_sum.end(), 0.0);
      for (int64_t cb = 0; cb < n_column_blocks; ++cb) {
        const int64_t p_end = std::min<int64_t>(P.n_column_panels, (cb + 1) * kColumnPanels);
        for (int64_t ip = 0; ip < kRowPanels; ++ip) {
          const int64_t i0 = i_block + ip * MR;
          if (i0 >= n) break;
          for (int64_t jp = cb * kColumnPanels; jp < p_end; ++jp) {
            V acc[MR][NV];
            microkernel<DotProduct, MR, NV>(StridedRows<T>{P.Z.data() + i0 * dp, dp},
                                            P.packed.data() + size_t(jp) * NR * size_t(dp), dp,
                                            acc);
            const int64_t j0 = jp * NR;
            for (int r = 0; r < MR; ++r) {
              const int64_t i = i0 + r;
              if (i >= n) break;
              std::memcpy(dots, &acc[r][0], sizeof dots);
              tile_exponents(P, X, cosine, inverse_temperature, i, j0, dots, s);
              T tile_max = s[0];
              for (int l = 1; l < NR; ++l) tile_max = std::max(tile_max, s[l]);
              const int64_t row = i - i_block;
              if (tile_max == -std::numeric_limits<T>::infinity()) continue;
              if (tile_max > running_max[row]) {
                const double factor = std::exp(double(running_max[row]) - double(tile_max));
                other_sum[row] *= factor;
                same_sum[row] *= factor;
                running_max[row] = tile_max;
              }
              const T m = running_max[row];
              const int64_t yi = P.labels[size_t(i)];
              const int64_t* yj = P.labels.data() + j0;
              T tile_other = 0, tile_same = 0;
#pragma omp simd reduction(+ : tile_other, tile_same)
              for (int l = 0; l < NR; ++l) {
                const T e = exp_nonpositive(s[l] - m);
                tile_other += yj[l] == yi ? T(0) : e;
                tile_same += yj[l] == yi ? e : T(0);
              }
              other_sum[row] += double(tile_other);
              same_sum[row] += double(tile_same);
            }
          }
        }
      }
      for (int64_t row = 0; row < IB && i_block + row < n; ++row) {
        const int64_t i = i_block + row;
        const double m = double(running_max[row]);
        const double ld = log_add_exp(log_eps, m + std::log(other_sum[row] + same_sum[row]));
        const double p = same_sum[row] > 0.0 ? std::exp(m + std::log(same_sum[row]) - ld) : 0.0;
        // 1 - p_i from the other classes' sum, not by cancellation (see fastlatent/ops/snnl.py).
        const double other = other_sum[row] > 0.0 ? m + std::log(other_sum[row])
                                                  : -std::numeric_limits<double>::infinity();
        log_denominator[size_t(i)] = ld;
        pick[size_t(i)] = p;
        one_minus_pick[size_t(i)] = std::exp(log_add_exp(log_eps, other) - ld);
        row_loss[size_t(i)] = -std::log(eps + p);
      }
    }
  }
  double total = 0.0;
  for (int64_t i = 0; i < n; ++i) total += row_loss[size_t(i)];
  *loss = total / double(n);
  if (grad == nullptr) return;

  // ---- pass 2: the gradient ----
  std::vector<T> col_ld(size_t(P.n_rows), T(0)), col_p(size_t(P.n_rows), T(0)),
      col_c(size_t(P.n_rows), T(0)), col_q(size_t(P.n_rows), T(0));
  for (int64_t j = 0; j < n; ++j) {
    col_ld[size_t(j)] = T(log_denominator[size_t(j)]);
    col_p[size_t(j)] = T(pick[size_t(j)]);
    col_q[size_t(j)] = T(one_minus_pick[size_t(j)]);
    col_c[size_t(j)] = T(1.0 / (double(n) * (eps + pick[size_t(j)])));
  }
  std::vector<double> row_temperature_term(size_t(n), 0.0);
#pragma omp parallel
  {
    std::vector<T> block_g(size_t(IB) * JB);
    std::vector<double> v(size_t(IB) * size_t(dp)), row_sum(IB), s_sum(IB);
    alignas(64) T dots[NR];
    alignas(64) T s[NR];
#pragma omp for schedule(dynamic, 1)
    for (int64_t b = 0; b < n_row_blocks; ++b) {
      const int64_t i_block = b * IB;
      const int64_t rows = std::min<int64_t>(IB, n - i_block);
      std::fill(v.begin(), v.end(), 0.0);
      std::fill(row_sum.begin(), row_sum.end(), 0.0);
      std::fill(s_sum.begin(), s_sum.end(), 0.0);
      for (int64_t cb = 0; cb < n_column_blocks; ++cb) {
        const int64_t p_begin = cb * kColumnPanels;
        const int64_t p_end = std::min<int64_t>(P.n_column_panels, p_begin + kColumnPanels);
        const int64_t jb0 = p_begin * NR;
        const int64_t width = (p_end - p_begin) * NR;
        std::fill(block_g.begin(), block_g.end(), T(0));
        for (int64_t ip = 0; ip < kRowPanels; ++ip) {
          const int64_t i0 = i_block + ip * MR;
          if (i0 >= n) break;
          for (int64_t jp = p_begin; jp < p_end; ++jp) {
            V acc[MR][NV];
            microkernel<DotProduct, MR, NV>(StridedRows<T>{P.Z.data() + i0 * dp, dp},
                                            P.packed.data() + size_t(jp) * NR * size_t(dp), dp,
                                            acc);
            const int64_t j0 = jp * NR;
            for (int r = 0; r < MR; ++r) {
              const int64_t i = i0 + r;
              if (i >= n) break;
              const int64_t row = i - i_block;
              std::memcpy(dots, &acc[r][0], sizeof dots);
              tile_exponents(P, X, cosine, inverse_temperature, i, j0, dots, s);
              const T ld_i = col_ld[size_t(i)], p_i = col_p[size_t(i)], c_i = col_c[size_t(i)];
              const T r_i = col_q[size_t(i)];
              const int64_t yi = P.labels[size_t(i)];
              const int64_t* yj = P.labels.data() + j0;
              const T* ld_j = col_ld.data() + j0;
              const T* p_j = col_p.data() + j0;
              const T* c_j = col_c.data() + j0;
              const T* r_j = col_q.data() + j0;
              T* g_out = block_g.data() + size_t(row) * JB + (j0 - jb0);
              T tile_g = 0, tile_gs = 0;
#pragma omp simd reduction(+ : tile_g, tile_gs)
              for (int l = 0; l < NR; ++l) {
                const bool valid = s[l] > -std::numeric_limits<T>::infinity();
                const bool same = yj[l] == yi;  // p - [same] is p, or -(1 - p)
                const T g_ij = c_i * exp_nonpositive(s[l] - ld_i) * (same ? -r_i : p_i);
                const T g_ji = c_j[l] * exp_nonpositive(s[l] - ld_j[l]) * (same ? -r_j[l] : p_j[l]);
                const T g = valid ? g_ij + g_ji : T(0);
                g_out[l] = g;
                tile_g += g;
                tile_gs += valid ? g_ij * s[l] : T(0);
              }
              row_sum[row] += double(tile_g);
              s_sum[row] += double(tile_gs);
            }
          }
        }
        // v[rows] += block_g[rows x width] @ Z[jb0 : jb0 + width]: MR rows x 2 vectors of
        // features in registers, the block's columns streamed from Z (row-major, L2).
        const T* zb = P.Z.data() + jb0 * dp;
        for (int64_t r0 = 0; r0 < rows; r0 += MR) {
          for (int64_t k0 = 0; k0 < dp; k0 += 2 * L) {
            const int nvec = (k0 + 2 * L <= dp) ? 2 : 1;
            V c[MR][2];
            for (int r = 0; r < MR; ++r) c[r][0] = c[r][1] = V{};
            const T* g_rows = block_g.data() + size_t(r0) * JB;
            if (nvec == 2) {
              for (int64_t jj = 0; jj < width; ++jj) {
                const V z0 = load<V>(zb + jj * dp + k0);
                const V z1 = load<V>(zb + jj * dp + k0 + L);
#pragma GCC unroll 6
                for (int r = 0; r < MR; ++r) {
                  const V gr = splat(g_rows[size_t(r) * JB + jj]);
                  c[r][0] = fmadd(gr, z0, c[r][0]);
                  c[r][1] = fmadd(gr, z1, c[r][1]);
                }
              }
            } else {
              for (int64_t jj = 0; jj < width; ++jj) {
                const V z0 = load<V>(zb + jj * dp + k0);
#pragma GCC unroll 6
                for (int r = 0; r < MR; ++r)
                  c[r][0] = fmadd(splat(g_rows[size_t(r) * JB + jj]), z0, c[r][0]);
              }
            }
            for (int r = 0; r < MR && r0 + r < rows; ++r) {
              double* out = v.data() + size_t(r0 + r) * dp + k0;
              for (int q = 0; q < nvec; ++q)
                for (int l = 0; l < L; ++l) out[q * L + l] += double(c[r][q][l]);
            }
          }
        }
      }
      for (int64_t row = 0; row < rows; ++row) {
        const int64_t i = i_block + row;
        const T* z = P.Z.data() + i * dp;
        const double* vi = v.data() + size_t(row) * dp;
        T* out = grad + i * d;
        if (cosine) {
          const double norm = P.norms[size_t(i)];
          if (norm == 0.0) {
            std::fill(out, out + d, T(0));
          } else {
            double uv = 0.0;
            for (int64_t k = 0; k < d; ++k) uv += double(z[k]) * vi[k];
            const double scale = 1.0 / (temperature * norm);
            for (int64_t k = 0; k < d; ++k) out[k] = T((vi[k] - double(z[k]) * uv) * scale);
          }
        } else {
          const double scale = -2.0 / temperature;
          for (int64_t k = 0; k < d; ++k)
            out[k] = T(scale * (row_sum[row] * double(z[k]) - vi[k]));
        }
        row_temperature_term[size_t(i)] = s_sum[row];
      }
    }
  }
  double s_total = 0.0;
  for (int64_t i = 0; i < n; ++i) s_total += row_temperature_term[size_t(i)];
  *grad_temperature = -s_total / temperature;
}

void check_snnl(int64_t n_samples, int64_t n_features, double temperature, double eps) {
  const char* op = "snnl_loss_and_grad";
  using std::to_string;
  if (n_samples < 2)
    throw std::invalid_argument(std::string(op) + ": n_samples must be >= 2, got " +
                                to_string(n_samples));
  if (n_features < 1)
    throw std::invalid_argument(std::string(op) + ": n_features must be >= 1, got " +
                                to_string(n_features));
  if (!(temperature > 0.0) || !std::isfinite(temperature))
    throw std::invalid_argument(std::string(op) + ": temperature must be finite and > 0, got " +
                                to_string(temperature));
  if (!(eps >= 0.0) || !std::isfinite(eps))
    throw std::invalid_argument(std::string(op) + ": eps must be finite and >= 0, got " +
                                to_string(eps));
}

}  // namespace

void snnl_loss_and_grad(const float* X, const int64_t* labels, int64_t n_samples,
                        int64_t n_features, bool cosine, double temperature, double eps,
                        double* loss, float* grad, double* grad_temperature) {
  check_snnl(n_samples, n_features, temperature, eps);
  snnl_impl(X, labels, n_samples, n_features, cosine, temperature, eps, loss, grad,
            grad_temperature);
}

void snnl_loss_and_grad(const double* X, const int64_t* labels, int64_t n_samples,
                        int64_t n_features, bool cosine, double temperature, double eps,
                        double* loss, double* grad, double* grad_temperature) {
  check_snnl(n_samples, n_features, temperature, eps);
  snnl_impl(X, labels, n_samples, n_features, cosine, temperature, eps, loss, grad,
            grad_temperature);
}

}  // namespace fastlatent::cpu
