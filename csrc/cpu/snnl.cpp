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
// s_ij = -d_ij / T (j != i) and the float64 sums of exp(s_ij - m_i) over same-class and over
// other-class columns, rescaled when the maximum rises. At the end log(eps + A_i), p_i and
// 1 - p_i (from the other-class sum, not by cancellation) follow in log space, so no
// exponential under- or overflows at any temperature. The exponentials are an AVX2 polynomial
// (exp_nonpositive, cpu/vector_exp.hpp), not libm: GCC does not vectorise std::exp without -ffast-math.
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
#include "cpu/vector_exp.hpp"

namespace fastlatent::cpu {
namespace {

using namespace detail;

constexpr int MR = 6;          // rows per microkernel call
constexpr int NV = 2;          // vectors of columns per microkernel call
constexpr int kRowPanels = 8;  // a thread's block of rows: kRowPanels * MR rows
constexpr int kColumnPanels = 16;  // a column block: kColumnPanels * NR columns (L2-sized)

template <class V>
inline auto lane_sum(V v) {
  auto total = v[0];
  for (int l = 1; l < int(sizeof(V) / sizeof(v[0])); ++l) total += v[l];
  return total;
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
  std::vector<T> labels;        // class codes as T (compared in vector lanes), -1 on padding
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
  P.labels.assign(size_t(P.n_rows), T(-1));
  // Codes are compared as T in vector lanes: exact below 2^mantissa (2^24 classes in float32).
  const int64_t largest_code = int64_t(1) << std::numeric_limits<T>::digits;
  for (int64_t i = 0; i < n; ++i) {
    if (labels[i] < 0 || labels[i] >= largest_code)
      throw std::invalid_argument("snnl_loss_and_grad: class codes must be in [0, " +
                                  std::to_string(largest_code) + "), got " +
                                  std::to_string(labels[i]));
    P.labels[size_t(i)] = T(labels[i]);
  }
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
  using V = typename Vec<T>::type;
  using IV = typename IntVec<T>::type;
  using Lane = typename IntVec<T>::lane;
  constexpr int L = Vec<T>::lanes;
  const V zi = splat(P.squared[size_t(i)]);
  const V minus_inf = splat(-std::numeric_limits<T>::infinity());
  const V bound = splat(T(4.0 * double(P.dp + 8) * double(std::numeric_limits<T>::epsilon())));
  const IV n_lanes = IV{} + Lane(P.n), i_lanes = IV{} + Lane(i);
  unsigned recheck = 0;
  for (int v = 0; v < NV; ++v) {
    const V dot = load<V>(dots + v * L);
    const V zj = load<V>(P.squared.data() + j0 + v * L);
    const V distance = cosine ? splat(T(1)) - dot : zi + zj - splat(T(2)) * dot;
    const V clipped = vmax(distance, V{});
    const IV j = IntVec<T>::iota + Lane(j0 + v * L);
    const IV valid = (j < n_lanes) & (j != i_lanes);
    const V exponent = -clipped * splat(inverse_temperature);
    const V out = valid ? exponent : minus_inf;
    std::memcpy(s + v * L, &out, sizeof out);
    recheck |= lane_bits(valid & (distance < bound * (zi + zj)));
  }
  const T zi_scalar = P.squared[size_t(i)];
  const T* zj = P.squared.data() + j0;
  const T bound_scalar = T(4.0 * double(P.dp + 8) * double(std::numeric_limits<T>::epsilon()));
  if (!recheck) return;
  const int64_t d = P.d;
  for (int l = 0; l < NV * L; ++l) {
    const int64_t j = j0 + l;
    if (!(j < P.n && j != i)) continue;
    const T distance = cosine ? T(1) - dots[l] : zi_scalar + zj[l] - T(2) * dots[l];
    if (!(distance < bound_scalar * (zi_scalar + zj[l]))) continue;
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
  static_assert(NR == NV * L, "a tile row is NV vectors");
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
              V lane_max = load<V>(s);
              for (int v = 1; v < NV; ++v) lane_max = vmax(lane_max, load<V>(s + v * L));
              T tile_max = lane_max[0];
              for (int l = 1; l < L; ++l) tile_max = std::max(tile_max, T(lane_max[l]));
              const int64_t row = i - i_block;
              if (tile_max == -std::numeric_limits<T>::infinity()) continue;
              if (tile_max > running_max[row]) {
                const double factor = std::exp(double(running_max[row]) - double(tile_max));
                other_sum[row] *= factor;
                same_sum[row] *= factor;
                running_max[row] = tile_max;
              }
              const V m = splat(running_max[row]);
              const V yi = splat(P.labels[size_t(i)]);
              V all = V{}, same = V{};
              for (int v = 0; v < NV; ++v) {
                const V e = exp_nonpositive(load<V>(s + v * L) - m);
                all += e;
                same += load<V>(P.labels.data() + j0 + v * L) == yi ? e : V{};
              }
              const T tile_same = lane_sum(same);
              const T tile_other = lane_sum(all - same);
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
              const V ld_i = splat(col_ld[size_t(i)]), p_i = splat(col_p[size_t(i)]);
              const V c_i = splat(col_c[size_t(i)]), minus_r_i = splat(-col_q[size_t(i)]);
              const V yi = splat(P.labels[size_t(i)]);
              const V minus_inf = splat(-std::numeric_limits<T>::infinity());
              T* g_out = block_g.data() + size_t(row) * JB + (j0 - jb0);
              V g_total = V{}, gs_total = V{};
              for (int v = 0; v < NV; ++v) {
                const int64_t j = j0 + v * L;
                const V sv = load<V>(s + v * L);
                const auto valid = sv > minus_inf;
                const auto same = load<V>(P.labels.data() + j) == yi;  // p - [same]: p or -(1-p)
                const V f_i = same ? minus_r_i : p_i;
                const V f_j = same ? -load<V>(col_q.data() + j) : load<V>(col_p.data() + j);
                const V g_ij = c_i * exp_nonpositive(sv - ld_i) * f_i;
                const V g_ji = load<V>(col_c.data() + j) *
                               exp_nonpositive(sv - load<V>(col_ld.data() + j)) * f_j;
                const V g = valid ? g_ij + g_ji : V{};
                std::memcpy(g_out + v * L, &g, sizeof g);
                g_total += g;
                gs_total += valid ? g_ij * sv : V{};
              }
              const T tile_g = lane_sum(g_total), tile_gs = lane_sum(gs_total);
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
  if (n_samples < 2 || n_samples >= (int64_t(1) << 31))  // column indices are int32 vector lanes
    throw std::invalid_argument(std::string(op) + ": n_samples must be in [2, 2^31), got " +
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
