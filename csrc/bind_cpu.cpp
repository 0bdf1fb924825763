// fastlatent._cpu: converts NumPy arrays for the kernels in csrc/cpu and releases the GIL around
// them. Arrays are taken without forcecast, so a wrong dtype is a TypeError, never a silent copy.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "cpu/distances.hpp"
#include "cpu/kmeans.hpp"
#include "cpu/linkage.hpp"
#include "cpu/mixture.hpp"
#include "cpu/silhouette.hpp"
#include "cpu/snnl.hpp"

namespace py = pybind11;
namespace cpu = fastlatent::cpu;

namespace {

template <class T>
using Matrix = py::array_t<T, py::array::c_style>;

struct Shapes {
  int64_t n_x, n_y, n_features;
};

template <class T>
Shapes check_inputs(const char* op, const Matrix<T>& X, const Matrix<T>& Y) {
  if (X.ndim() != 2 || Y.ndim() != 2)
    throw std::invalid_argument(std::string(op) + ": X and Y must be 2-D, got " +
                                std::to_string(X.ndim()) + "-D and " +
                                std::to_string(Y.ndim()) + "-D");
  if (X.shape(1) != Y.shape(1))
    throw std::invalid_argument(std::string(op) + ": X and Y must have the same number of "
                                "columns, got " + std::to_string(X.shape(1)) + " and " +
                                std::to_string(Y.shape(1)));
  return {int64_t(X.shape(0)), int64_t(Y.shape(0)), int64_t(X.shape(1))};
}

template <class T>
Matrix<T> pairwise_distances(const Matrix<T>& X, const Matrix<T>& Y, const std::string& metric) {
  const char* op = "pairwise_distances";
  const Shapes s = check_inputs(op, X, Y);
  const cpu::Metric m = cpu::parse_metric(metric, op);
  Matrix<T> out({s.n_x, s.n_y});
  const T* x = X.data();
  const T* y = Y.data();
  T* o = out.mutable_data();
  {
    py::gil_scoped_release release;
    cpu::pairwise_distances(x, s.n_x, y, s.n_y, s.n_features, m, o);
  }
  return out;
}

template <class T>
std::pair<py::array_t<int64_t>, Matrix<T>> pairwise_distances_argmin_min(
    const Matrix<T>& X, const Matrix<T>& Y, const std::string& metric) {
  const char* op = "pairwise_distances_argmin_min";
  const Shapes s = check_inputs(op, X, Y);
  const cpu::Metric m = cpu::parse_metric(metric, op);
  if (s.n_y < 1) throw std::invalid_argument(std::string(op) + ": Y must have at least one row");
  py::array_t<int64_t> indices(s.n_x);
  Matrix<T> distances(s.n_x);
  const T* x = X.data();
  const T* y = Y.data();
  int64_t* i = indices.mutable_data();
  T* d = distances.mutable_data();
  {
    py::gil_scoped_release release;
    cpu::pairwise_distances_argmin_min(x, s.n_x, y, s.n_y, s.n_features, m, i, d);
  }
  return {indices, distances};
}

template <class T>
std::pair<Matrix<T>, py::array_t<int64_t>> kneighbors(const Matrix<T>& X, const Matrix<T>& Y,
                                                      int64_t n_neighbors,
                                                      const std::string& metric) {
  const char* op = "kneighbors";
  const Shapes s = check_inputs(op, X, Y);
  const cpu::Metric m = cpu::parse_metric(metric, op);
  if (n_neighbors < 1 || n_neighbors > s.n_y)
    throw std::invalid_argument(std::string(op) + ": n_neighbors must be in [1, " +
                                std::to_string(s.n_y) + "], got " + std::to_string(n_neighbors));
  Matrix<T> distances({s.n_x, n_neighbors});
  py::array_t<int64_t> indices({s.n_x, n_neighbors});
  const T* x = X.data();
  const T* y = Y.data();
  T* d = distances.mutable_data();
  int64_t* i = indices.mutable_data();
  {
    py::gil_scoped_release release;
    cpu::kneighbors(x, s.n_x, y, s.n_y, s.n_features, n_neighbors, m, d, i);
  }
  return {distances, indices};
}

template <class T>
std::pair<py::array_t<double>, py::array_t<double>> kmeans_update(
    const Matrix<T>& X, const py::array_t<T, py::array::c_style>& sample_weight,
    const py::array_t<int32_t, py::array::c_style>& labels, int64_t n_clusters) {
  const char* op = "kmeans_update";
  if (X.ndim() != 2 || sample_weight.ndim() != 1 || labels.ndim() != 1)
    throw std::invalid_argument(std::string(op) + ": X must be 2-D, sample_weight and labels 1-D");
  const int64_t n_samples = X.shape(0), n_features = X.shape(1);
  if (sample_weight.shape(0) != n_samples || labels.shape(0) != n_samples)
    throw std::invalid_argument(std::string(op) + ": X has " + std::to_string(n_samples) +
                                " rows but sample_weight has " +
                                std::to_string(sample_weight.shape(0)) + " and labels " +
                                std::to_string(labels.shape(0)));
  if (n_clusters < 1)
    throw std::invalid_argument(std::string(op) + ": n_clusters must be >= 1, got " +
                                std::to_string(n_clusters));
  py::array_t<double> sums({n_clusters, n_features});
  py::array_t<double> weights(n_clusters);
  const T* x = X.data();
  const T* w = sample_weight.data();
  const int32_t* l = labels.data();
  double* s = sums.mutable_data();
  double* k = weights.mutable_data();
  {
    py::gil_scoped_release release;
    cpu::kmeans_update(x, w, l, n_samples, n_features, n_clusters, s, k);
  }
  return {sums, weights};
}

template <class T>
py::tuple kmeans_step(const Matrix<T>& X, const py::array_t<T, py::array::c_style>& sample_weight,
                      const Matrix<T>& centers, bool with_distances) {
  const char* op = "kmeans_step";
  if (X.ndim() != 2 || centers.ndim() != 2 || sample_weight.ndim() != 1)
    throw std::invalid_argument(std::string(op) +
                                ": X and centers must be 2-D, sample_weight 1-D, got " +
                                std::to_string(X.ndim()) + "-D, " +
                                std::to_string(centers.ndim()) + "-D and " +
                                std::to_string(sample_weight.ndim()) + "-D");
  const int64_t n_samples = X.shape(0), n_features = X.shape(1);
  const int64_t n_clusters = centers.shape(0);
  if (centers.shape(1) != n_features)
    throw std::invalid_argument(std::string(op) + ": X and centers must have the same number of "
                                "columns, got " + std::to_string(n_features) + " and " +
                                std::to_string(centers.shape(1)));
  if (sample_weight.shape(0) != n_samples)
    throw std::invalid_argument(std::string(op) + ": X has " + std::to_string(n_samples) +
                                " rows but sample_weight has " +
                                std::to_string(sample_weight.shape(0)));
  if (n_clusters < 1)
    throw std::invalid_argument(std::string(op) + ": centers must have at least one row");
  if (n_features < 1)
    throw std::invalid_argument(std::string(op) + ": X must have at least one column");
  py::array_t<int32_t> labels(n_samples);
  Matrix<T> distances(with_distances ? n_samples : 0);
  py::array_t<double> sums({n_clusters, n_features});
  py::array_t<double> weights(n_clusters);
  const T* x = X.data();
  const T* w = sample_weight.data();
  const T* c = centers.data();
  int32_t* l = labels.mutable_data();
  T* d = with_distances ? distances.mutable_data() : nullptr;
  double* s = sums.mutable_data();
  double* k = weights.mutable_data();
  {
    py::gil_scoped_release release;
    cpu::kmeans_step(x, w, c, n_samples, n_features, n_clusters, l, d, s, k);
  }
  if (!with_distances) return py::make_tuple(labels, py::none(), sums, weights);
  return py::make_tuple(labels, distances, sums, weights);
}

template <class T>
Matrix<T> kmeans_distances(const Matrix<T>& X, const Matrix<T>& centers,
                           const py::array_t<int32_t, py::array::c_style>& labels) {
  const char* op = "kmeans_distances";
  if (X.ndim() != 2 || centers.ndim() != 2 || labels.ndim() != 1)
    throw std::invalid_argument(std::string(op) + ": X and centers must be 2-D, labels 1-D");
  const int64_t n_samples = X.shape(0), n_features = X.shape(1);
  if (centers.shape(1) != n_features)
    throw std::invalid_argument(std::string(op) + ": X and centers must have the same number of "
                                "columns, got " + std::to_string(n_features) + " and " +
                                std::to_string(centers.shape(1)));
  if (labels.shape(0) != n_samples)
    throw std::invalid_argument(std::string(op) + ": X has " + std::to_string(n_samples) +
                                " rows but labels has " + std::to_string(labels.shape(0)));
  Matrix<T> distances(n_samples);
  const T* x = X.data();
  const T* c = centers.data();
  const int32_t* l = labels.data();
  T* d = distances.mutable_data();
  {
    py::gil_scoped_release release;
    cpu::kmeans_distances(x, c, l, n_samples, n_features, centers.shape(0), d);
  }
  return distances;
}

template <class T>
py::tuple kmeans_plusplus_step(const Matrix<T>& X,
                               const py::array_t<double, py::array::c_style>& sample_weight,
                               const py::array_t<double, py::array::c_style>& closest,
                               const py::array_t<int64_t, py::array::c_style>& candidates) {
  const char* op = "kmeans_plusplus_step";
  if (X.ndim() != 2 || sample_weight.ndim() != 1 || closest.ndim() != 1 || candidates.ndim() != 1)
    throw std::invalid_argument(std::string(op) +
                                ": X must be 2-D, sample_weight, closest and candidates 1-D");
  const int64_t n_samples = X.shape(0), n_features = X.shape(1);
  const int64_t n_candidates = candidates.shape(0);
  if (sample_weight.shape(0) != n_samples || closest.shape(0) != n_samples)
    throw std::invalid_argument(std::string(op) + ": X has " + std::to_string(n_samples) +
                                " rows but sample_weight has " +
                                std::to_string(sample_weight.shape(0)) + " and closest " +
                                std::to_string(closest.shape(0)));
  py::array_t<double> new_closest(n_samples);
  const T* x = X.data();
  const double* w = sample_weight.data();
  const double* c = closest.data();
  const int64_t* j = candidates.data();
  double* o = new_closest.mutable_data();
  int64_t best = 0;
  double potential = 0.0;
  {
    py::gil_scoped_release release;
    cpu::kmeans_plusplus_step(x, w, c, j, n_samples, n_features, n_candidates, &best, &potential,
                              o);
  }
  return py::make_tuple(best, potential, new_closest);
}

// Shapes (n, d, k) of a Gaussian-mixture call, with the precision Cholesky factors checked
// against covariance_type's layout (full [k, d, d], tied [d, d], diag [k, d], spherical [k]).
template <class T>
Shapes check_gmm_model(const char* op, const Matrix<T>& X, const Matrix<double>& means,
                       const py::array_t<double, py::array::c_style>& precisions_cholesky,
                       cpu::CovarianceType type) {
  if (X.ndim() != 2 || means.ndim() != 2)
    throw std::invalid_argument(std::string(op) + ": X and means must be 2-D, got " +
                                std::to_string(X.ndim()) + "-D and " +
                                std::to_string(means.ndim()) + "-D");
  const int64_t n = X.shape(0), d = X.shape(1), k = means.shape(0);
  if (means.shape(1) != d)
    throw std::invalid_argument(std::string(op) + ": X and means must have the same number of "
                                "columns, got " + std::to_string(d) + " and " +
                                std::to_string(means.shape(1)));
  if (k < 1) throw std::invalid_argument(std::string(op) + ": means must have at least one row");
  if (d < 1) throw std::invalid_argument(std::string(op) + ": X must have at least one column");
  std::vector<int64_t> expected;
  switch (type) {
    case cpu::CovarianceType::Full: expected = {k, d, d}; break;
    case cpu::CovarianceType::Tied: expected = {d, d}; break;
    case cpu::CovarianceType::Diag: expected = {k, d}; break;
    case cpu::CovarianceType::Spherical: expected = {k}; break;
  }
  bool ok = precisions_cholesky.ndim() == py::ssize_t(expected.size());
  for (size_t a = 0; ok && a < expected.size(); ++a)
    ok = precisions_cholesky.shape(a) == expected[a];
  if (!ok) {
    std::string got, want;
    for (py::ssize_t a = 0; a < precisions_cholesky.ndim(); ++a)
      got += (a ? ", " : "") + std::to_string(precisions_cholesky.shape(a));
    for (size_t a = 0; a < expected.size(); ++a)
      want += (a ? ", " : "") + std::to_string(expected[a]);
    throw std::invalid_argument(std::string(op) + ": precisions_cholesky has shape (" + got +
                                "); expected (" + want + ")");
  }
  return {n, k, d};  // n_x = n, n_y = k, n_features = d
}

template <class T>
Matrix<T> gmm_estimate_log_prob(const Matrix<T>& X, const Matrix<double>& means,
                                const py::array_t<double, py::array::c_style>& precisions_cholesky,
                                const std::string& covariance_type) {
  const char* op = "gmm_estimate_log_prob";
  const cpu::CovarianceType type = cpu::parse_covariance_type(covariance_type, op);
  const Shapes s = check_gmm_model(op, X, means, precisions_cholesky, type);
  Matrix<T> out({s.n_x, s.n_y});
  const T* x = X.data();
  const double* mu = means.data();
  const double* p = precisions_cholesky.data();
  T* o = out.mutable_data();
  {
    py::gil_scoped_release release;
    cpu::gmm_estimate_log_prob(x, mu, p, s.n_x, s.n_features, s.n_y, type, o);
  }
  return out;
}

template <class T>
std::pair<Matrix<T>, py::array_t<double>> gmm_e_step(
    const Matrix<T>& X, const py::array_t<double, py::array::c_style>& log_weights,
    const Matrix<double>& means, const py::array_t<double, py::array::c_style>& precisions_cholesky,
    const std::string& covariance_type, bool responsibilities) {
  const char* op = "gmm_e_step";
  const cpu::CovarianceType type = cpu::parse_covariance_type(covariance_type, op);
  const Shapes s = check_gmm_model(op, X, means, precisions_cholesky, type);
  if (log_weights.ndim() != 1 || log_weights.shape(0) != s.n_y)
    throw std::invalid_argument(std::string(op) + ": log_weights must have shape (" +
                                std::to_string(s.n_y) + ",)");
  Matrix<T> log_resp({s.n_x, s.n_y});
  py::array_t<double> log_norm(s.n_x);
  const T* x = X.data();
  const double* lw = log_weights.data();
  const double* mu = means.data();
  const double* p = precisions_cholesky.data();
  T* r = log_resp.mutable_data();
  double* ln = log_norm.mutable_data();
  {
    py::gil_scoped_release release;
    cpu::gmm_e_step(x, lw, mu, p, s.n_x, s.n_features, s.n_y, type, r, ln, responsibilities);
  }
  return {log_resp, log_norm};
}

template <class T>
Matrix<T> gmm_responsibilities(const Matrix<T>& log_resp) {
  if (log_resp.ndim() != 2)
    throw std::invalid_argument("gmm_responsibilities: log_resp must be 2-D");
  Matrix<T> resp({log_resp.shape(0), log_resp.shape(1)});
  const T* in = log_resp.data();
  T* out = resp.mutable_data();
  const int64_t n = log_resp.shape(0) * log_resp.shape(1);
  {
    py::gil_scoped_release release;
    cpu::gmm_responsibilities(in, out, n);
  }
  return resp;
}

template <class T>
py::tuple gmm_moments(const Matrix<T>& X, const Matrix<T>& resp,
                      const std::string& covariance_type) {
  const char* op = "gmm_moments";
  const cpu::CovarianceType type = cpu::parse_covariance_type(covariance_type, op);
  if (X.ndim() != 2 || resp.ndim() != 2 || resp.shape(0) != X.shape(0))
    throw std::invalid_argument(std::string(op) + ": X and resp must be 2-D with the same rows");
  const int64_t n = X.shape(0), d = X.shape(1), k = resp.shape(1);
  py::array_t<double> nk(k);
  py::array_t<double> sums({k, d});
  py::array_t<double> extra;
  if (type == cpu::CovarianceType::Tied)
    extra = py::array_t<double>({d, d});
  else if (type != cpu::CovarianceType::Full)
    extra = py::array_t<double>({k, d});
  else
    extra = py::array_t<double>(0);
  const T* x = X.data();
  const T* r = resp.data();
  double* pk = nk.mutable_data();
  double* ps = sums.mutable_data();
  double* pe = extra.mutable_data();
  {
    py::gil_scoped_release release;
    cpu::gmm_moments(x, r, n, d, k, type, pk, ps, pe);
  }
  return py::make_tuple(nk, sums, extra);
}

template <class T>
py::array_t<double> gmm_full_scatter(const Matrix<T>& X, const Matrix<T>& resp,
                                     const Matrix<double>& means) {
  const char* op = "gmm_full_scatter";
  if (X.ndim() != 2 || resp.ndim() != 2 || means.ndim() != 2 || resp.shape(0) != X.shape(0) ||
      means.shape(0) != resp.shape(1) || means.shape(1) != X.shape(1))
    throw std::invalid_argument(std::string(op) + ": X [n, d], resp [n, k] and means [k, d] "
                                "must have matching shapes");
  const int64_t n = X.shape(0), d = X.shape(1), k = resp.shape(1);
  py::array_t<double> scatter({k, d, d});
  const T* x = X.data();
  const T* r = resp.data();
  const double* mu = means.data();
  double* s = scatter.mutable_data();
  {
    py::gil_scoped_release release;
    cpu::gmm_full_scatter(x, r, mu, n, d, k, s);
  }
  return scatter;
}

template <class T>
void define_mixture_overloads(py::module_& m) {
  m.def("gmm_estimate_log_prob", &gmm_estimate_log_prob<T>, py::arg("X").noconvert(),
        py::arg("means").noconvert(), py::arg("precisions_cholesky").noconvert(),
        py::arg("covariance_type"),
        "Gaussian log-densities [n, k] of X's dtype; means and precisions_cholesky float64.");
  m.def("gmm_e_step", &gmm_e_step<T>, py::arg("X").noconvert(),
        py::arg("log_weights").noconvert(), py::arg("means").noconvert(),
        py::arg("precisions_cholesky").noconvert(), py::arg("covariance_type"),
        py::arg("responsibilities") = false,
        "(log_resp [n, k] of X's dtype, log_norm float64 [n]): the fused E-step; with "
        "responsibilities=True the first array is exp(log_resp), from the log-sum-exp's own "
        "exponentials.");
  m.def("gmm_responsibilities", &gmm_responsibilities<T>, py::arg("log_resp").noconvert(),
        "exp(log_resp) [n, k] of log_resp's dtype (computed in float64).");
  m.def("gmm_moments", &gmm_moments<T>, py::arg("X").noconvert(), py::arg("resp").noconvert(),
        py::arg("covariance_type"),
        "(nk [k], resp^T X [k, d], extra) float64 for the M-step; extra is X^T X [d, d] (tied), "
        "resp^T X^2 [k, d] (diag, spherical) or empty (full).");
  m.def("gmm_full_scatter", &gmm_full_scatter<T>, py::arg("X").noconvert(),
        py::arg("resp").noconvert(), py::arg("means").noconvert(),
        "Weighted scatter matrices [k, d, d] float64: sum_i resp[i, c] (x_i - mu_c)(x_i - mu_c)^T.");
}

template <class T>
void define_overloads(py::module_& m) {
  m.def("pairwise_distances", &pairwise_distances<T>, py::arg("X").noconvert(),
        py::arg("Y").noconvert(), py::arg("metric"),
        "Distance matrix [n_x, n_y] between the rows of X and Y.");
  m.def("pairwise_distances_argmin_min", &pairwise_distances_argmin_min<T>,
        py::arg("X").noconvert(), py::arg("Y").noconvert(), py::arg("metric"),
        "(indices int64 [n_x], distances [n_x]) of the nearest row of Y for each row of X.");
  m.def("kneighbors", &kneighbors<T>, py::arg("X").noconvert(), py::arg("Y").noconvert(),
        py::arg("n_neighbors"), py::arg("metric"),
        "(distances [n_x, k], indices int64 [n_x, k]) of the k nearest rows of Y, sorted by "
        "(distance, index).");
  m.def("kmeans_update", &kmeans_update<T>, py::arg("X").noconvert(),
        py::arg("sample_weight").noconvert(), py::arg("labels").noconvert(),
        py::arg("n_clusters"),
        "(sums float64 [k, d], weights float64 [k]): weighted per-cluster sums and weights.");
  m.def("kmeans_step", &kmeans_step<T>, py::arg("X").noconvert(),
        py::arg("sample_weight").noconvert(), py::arg("centers").noconvert(),
        py::arg("with_distances") = true,
        "(labels int32 [n], squared distances [n] (None without with_distances), sums float64 "
        "[k, d], weights float64 [k]): nearest centre of each row and the weighted per-cluster "
        "sums, in one pass over X.");
  m.def("kmeans_distances", &kmeans_distances<T>, py::arg("X").noconvert(),
        py::arg("centers").noconvert(), py::arg("labels").noconvert(),
        "squared distances [n] of each row of X to its centre, centers[labels[i]]: the k-means "
        "step's distances bit for bit.");
  m.def("kmeans_plusplus_step", &kmeans_plusplus_step<T>, py::arg("X").noconvert(),
        py::arg("sample_weight").noconvert(), py::arg("closest").noconvert(),
        py::arg("candidates").noconvert(),
        "(best position int, best potential float, new closest float64 [n]): one greedy "
        "k-means++ step over the candidate rows, in one pass over X.");
}

py::array_t<double> silhouette_cluster_sums(const Matrix<double>& X,
                                            const py::array_t<int64_t, py::array::c_style>& offsets,
                                            const std::string& metric) {
  const char* op = "silhouette_cluster_sums";
  if (X.ndim() != 2 || offsets.ndim() != 1 || offsets.shape(0) < 2)
    throw std::invalid_argument(std::string(op) + ": X must be 2-D and cluster_offsets 1-D "
                                "with at least two entries");
  const cpu::Metric m = cpu::parse_metric(metric, op);
  const int64_t n = X.shape(0), d = X.shape(1), k = offsets.shape(0) - 1;
  py::array_t<double> sums({n, k});
  const double* x = X.data();
  const int64_t* o = offsets.data();
  double* s = sums.mutable_data();
  {
    py::gil_scoped_release release;
    cpu::silhouette_cluster_sums(x, n, d, o, k, m, s);
  }
  return sums;
}

// ---- soft nearest neighbour loss (csrc/cpu/snnl.cpp) ----
template <class T>
py::tuple snnl_loss_and_grad(const Matrix<T>& X, const py::array_t<int64_t, py::array::c_style>& labels,
                             double temperature, const std::string& metric, double eps,
                             bool gradient) {
  const char* op = "snnl_loss_and_grad";
  if (X.ndim() != 2)
    throw std::invalid_argument(std::string(op) + ": X must be 2-D, got " +
                                std::to_string(X.ndim()) + "-D");
  if (labels.ndim() != 1 || labels.shape(0) != X.shape(0))
    throw std::invalid_argument(std::string(op) + ": labels must be 1-D with one entry per row of X");
  if (metric != "sqeuclidean" && metric != "cosine")
    throw std::invalid_argument(std::string(op) + ": unknown metric '" + metric + "'");
  const int64_t n = X.shape(0), d = X.shape(1);
  const bool cosine = metric == "cosine";
  double loss = 0.0, grad_temperature = 0.0;
  Matrix<T> grad(gradient ? std::vector<py::ssize_t>{n, d} : std::vector<py::ssize_t>{0, d});
  const T* x = X.data();
  const int64_t* y = labels.data();
  T* g = gradient ? grad.mutable_data() : nullptr;
  {
    py::gil_scoped_release release;
    cpu::snnl_loss_and_grad(x, y, n, d, cosine, temperature, eps, &loss, g, &grad_temperature);
  }
  if (!gradient) return py::make_tuple(loss, py::none(), py::none());
  return py::make_tuple(loss, grad, grad_temperature);
}

template <class T>
void define_snnl_overloads(py::module_& m) {
  m.def("snnl_loss_and_grad", &snnl_loss_and_grad<T>, py::arg("X").noconvert(),
        py::arg("labels").noconvert(), py::arg("temperature"), py::arg("metric"), py::arg("eps"),
        py::arg("gradient"),
        "(loss float, grad_X [n, d] of X's dtype or None, dL/dT float or None): the soft nearest "
        "neighbour loss, streamed in tiles (metric 'sqeuclidean' or 'cosine').");
}

template <class T>
py::array_t<double> linkage(const Matrix<T>& X, const std::string& method,
                            const std::string& metric) {
  const char* op = "linkage";
  if (X.ndim() != 2)
    throw std::invalid_argument(std::string(op) + ": X must be 2-D, got " +
                                std::to_string(X.ndim()) + "-D");
  const int64_t n = X.shape(0), d = X.shape(1);
  if (n < 2 || d < 1)
    throw std::invalid_argument(std::string(op) + ": X must have at least 2 rows and 1 column, got " +
                                std::to_string(n) + " x " + std::to_string(d));
  const cpu::LinkageMethod lm = cpu::parse_linkage_method(method, op);
  const cpu::Metric m = cpu::parse_metric(metric, op);
  py::array_t<double> Z({n - 1, int64_t(4)});
  const T* x = X.data();
  double* z = Z.mutable_data();
  {
    py::gil_scoped_release release;
    cpu::linkage(x, n, d, lm, m, z);
  }
  return Z;
}

template <class T>
void define_linkage_overloads(py::module_& m) {
  m.def("linkage", &linkage<T>, py::arg("X").noconvert(), py::arg("method"), py::arg("metric"),
        "Linkage matrix Z float64 [n - 1, 4] in SciPy's format (pairs in merge order).");
}

}  // namespace

PYBIND11_MODULE(_cpu, m) {
  m.doc() = "fastlatent's native CPU kernels (C++17, OpenMP).";
  define_overloads<float>(m);
  define_overloads<double>(m);
  define_mixture_overloads<float>(m);
  define_mixture_overloads<double>(m);
  m.def("silhouette_cluster_sums", &silhouette_cluster_sums, py::arg("X").noconvert(),
        py::arg("cluster_offsets").noconvert(), py::arg("metric"),
        "Per-row sums of distances to each cluster, float64 [n, k]; X float64 with its rows "
        "grouped by cluster, cluster k being rows cluster_offsets[k] .. cluster_offsets[k+1]-1.");
  define_snnl_overloads<float>(m);
  define_snnl_overloads<double>(m);
  define_linkage_overloads<float>(m);
  define_linkage_overloads<double>(m);
  m.def("max_threads", &cpu::max_threads, "Threads an OpenMP region uses (omp_get_max_threads).");
}
