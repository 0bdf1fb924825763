// fastlatent._cuda: Python bindings of the CUDA kernels (csrc/cuda/distances.cu).
//
// Only converts: device pointers arrive as integers (CuPy's `.data.ptr`), the stream as an
// integer (`cupy.cuda.get_current_stream().ptr`, 0 for the default stream), metric and dtype
// as strings. Bad arguments raise ValueError naming the op and the value (std::invalid_argument);
// CUDA failures raise RuntimeError naming the op and the CUDA error (std::runtime_error).
// The GIL is released while the kernels are enqueued.

#include <pybind11/pybind11.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "cuda/distances.cuh"
#include "cuda/snnl.cuh"

namespace py = pybind11;
namespace flc = fastlatent::cuda;

namespace {

flc::Metric parse_metric(const std::string& metric, const char* op) {
  if (metric == "euclidean") return flc::Metric::euclidean;
  if (metric == "sqeuclidean") return flc::Metric::sqeuclidean;
  if (metric == "cosine") return flc::Metric::cosine;
  if (metric == "manhattan") return flc::Metric::manhattan;
  throw std::invalid_argument(std::string(op) + ": unknown metric '" + metric +
                              "' (expected one of euclidean, sqeuclidean, cosine, manhattan)");
}

enum class DType { float32, float64 };

DType parse_dtype(const std::string& dtype, const char* op) {
  if (dtype == "float32") return DType::float32;
  if (dtype == "float64") return DType::float64;
  throw std::invalid_argument(std::string(op) + ": unsupported dtype '" + dtype +
                              "' (expected float32 or float64)");
}

void check_sizes(const char* op, std::int64_t n_x, std::int64_t n_y, std::int64_t n_features) {
  if (n_x < 1) throw std::invalid_argument(std::string(op) + ": n_x must be >= 1, got " + std::to_string(n_x));
  if (n_y < 1) throw std::invalid_argument(std::string(op) + ": n_y must be >= 1, got " + std::to_string(n_y));
  if (n_features < 1)
    throw std::invalid_argument(std::string(op) + ": n_features must be >= 1, got " + std::to_string(n_features));
}

template <typename T>
T* as_pointer(std::uintptr_t address) {
  return reinterpret_cast<T*>(address);
}

void* as_stream(std::uintptr_t stream) { return reinterpret_cast<void*>(stream); }

void pairwise_distances(std::uintptr_t x, std::uintptr_t y, std::uintptr_t out, std::int64_t n_x,
                        std::int64_t n_y, std::int64_t n_features, const std::string& metric,
                        const std::string& dtype, std::uintptr_t stream) {
  constexpr const char* op = "pairwise_distances";
  check_sizes(op, n_x, n_y, n_features);
  const flc::Metric m = parse_metric(metric, op);
  const DType t = parse_dtype(dtype, op);
  py::gil_scoped_release release;
  if (t == DType::float32) {
    flc::pairwise_distances(as_pointer<const float>(x), as_pointer<const float>(y), as_pointer<float>(out), n_x, n_y,
                            n_features, m, as_stream(stream));
  } else {
    flc::pairwise_distances(as_pointer<const double>(x), as_pointer<const double>(y), as_pointer<double>(out), n_x,
                            n_y, n_features, m, as_stream(stream));
  }
}

void pairwise_distances_argmin_min(std::uintptr_t x, std::uintptr_t y, std::uintptr_t indices,
                                   std::uintptr_t distances, std::int64_t n_x, std::int64_t n_y,
                                   std::int64_t n_features, const std::string& metric, const std::string& dtype,
                                   std::uintptr_t stream) {
  constexpr const char* op = "pairwise_distances_argmin_min";
  check_sizes(op, n_x, n_y, n_features);
  const flc::Metric m = parse_metric(metric, op);
  const DType t = parse_dtype(dtype, op);
  py::gil_scoped_release release;
  if (t == DType::float32) {
    flc::pairwise_distances_argmin_min(as_pointer<const float>(x), as_pointer<const float>(y),
                                       as_pointer<std::int64_t>(indices), as_pointer<float>(distances), n_x, n_y,
                                       n_features, m, as_stream(stream));
  } else {
    flc::pairwise_distances_argmin_min(as_pointer<const double>(x), as_pointer<const double>(y),
                                       as_pointer<std::int64_t>(indices), as_pointer<double>(distances), n_x, n_y,
                                       n_features, m, as_stream(stream));
  }
}

void kneighbors(std::uintptr_t x, std::uintptr_t y, std::uintptr_t distances, std::uintptr_t indices,
                std::int64_t n_x, std::int64_t n_y, std::int64_t n_features, std::int64_t n_neighbors,
                const std::string& metric, const std::string& dtype, std::uintptr_t stream) {
  constexpr const char* op = "kneighbors";
  check_sizes(op, n_x, n_y, n_features);
  if (n_neighbors < 1 || n_neighbors > n_y)
    throw std::invalid_argument(std::string(op) + ": n_neighbors must be in [1, n_y] = [1, " + std::to_string(n_y) +
                                "], got " + std::to_string(n_neighbors));
  const flc::Metric m = parse_metric(metric, op);
  const DType t = parse_dtype(dtype, op);
  py::gil_scoped_release release;
  if (t == DType::float32) {
    flc::kneighbors(as_pointer<const float>(x), as_pointer<const float>(y), as_pointer<float>(distances),
                    as_pointer<std::int64_t>(indices), n_x, n_y, n_features, n_neighbors, m, as_stream(stream));
  } else {
    flc::kneighbors(as_pointer<const double>(x), as_pointer<const double>(y), as_pointer<double>(distances),
                    as_pointer<std::int64_t>(indices), n_x, n_y, n_features, n_neighbors, m, as_stream(stream));
  }
}

// ---- soft nearest neighbour loss (csrc/cuda/snnl.cu; never run by its author) ----
void snnl_row_stats(std::uintptr_t z, std::uintptr_t squared, std::uintptr_t labels, std::int64_t n,
                    std::int64_t d, const std::string& metric, double temperature, const std::string& dtype,
                    std::uintptr_t row_max, std::uintptr_t same_sum, std::uintptr_t other_sum,
                    std::uintptr_t stream) {
  constexpr const char* op = "snnl_row_stats";
  if (metric != "sqeuclidean" && metric != "cosine")
    throw std::invalid_argument(std::string(op) + ": unknown metric '" + metric + "'");
  const bool cosine = metric == "cosine";
  const DType t = parse_dtype(dtype, op);
  py::gil_scoped_release release;
  if (t == DType::float32)
    flc::snnl_row_stats(as_pointer<const float>(z), as_pointer<const float>(squared),
                        as_pointer<const std::int32_t>(labels), n, d, cosine, temperature,
                        as_pointer<double>(row_max), as_pointer<double>(same_sum), as_pointer<double>(other_sum),
                        as_stream(stream));
  else
    flc::snnl_row_stats(as_pointer<const double>(z), as_pointer<const double>(squared),
                        as_pointer<const std::int32_t>(labels), n, d, cosine, temperature,
                        as_pointer<double>(row_max), as_pointer<double>(same_sum), as_pointer<double>(other_sum),
                        as_stream(stream));
}

void snnl_gradient_sums(std::uintptr_t z, std::uintptr_t squared, std::uintptr_t labels, std::int64_t n,
                        std::int64_t d, const std::string& metric, double temperature, const std::string& dtype,
                        std::uintptr_t log_denominator, std::uintptr_t pick, std::uintptr_t one_minus_pick,
                        std::uintptr_t scale, std::uintptr_t v, std::uintptr_t row_sum, std::uintptr_t s_sum,
                        std::uintptr_t stream) {
  constexpr const char* op = "snnl_gradient_sums";
  if (metric != "sqeuclidean" && metric != "cosine")
    throw std::invalid_argument(std::string(op) + ": unknown metric '" + metric + "'");
  const bool cosine = metric == "cosine";
  const DType t = parse_dtype(dtype, op);
  py::gil_scoped_release release;
  if (t == DType::float32)
    flc::snnl_gradient_sums(as_pointer<const float>(z), as_pointer<const float>(squared),
                            as_pointer<const std::int32_t>(labels), n, d, cosine, temperature,
                            as_pointer<const double>(log_denominator), as_pointer<const double>(pick),
                            as_pointer<const double>(one_minus_pick), as_pointer<const double>(scale),
                            as_pointer<double>(v), as_pointer<double>(row_sum), as_pointer<double>(s_sum),
                            as_stream(stream));
  else
    flc::snnl_gradient_sums(as_pointer<const double>(z), as_pointer<const double>(squared),
                            as_pointer<const std::int32_t>(labels), n, d, cosine, temperature,
                            as_pointer<const double>(log_denominator), as_pointer<const double>(pick),
                            as_pointer<const double>(one_minus_pick), as_pointer<const double>(scale),
                            as_pointer<double>(v), as_pointer<double>(row_sum), as_pointer<double>(s_sum),
                            as_stream(stream));
}

}  // namespace

PYBIND11_MODULE(_cuda, m) {
  m.doc() = "fastlatent's CUDA kernels. Pointers are device addresses of C-contiguous arrays; "
            "work is enqueued on the given stream (0: the default stream) and not waited for.";

  m.def("device_count", &flc::device_count,
        "Number of CUDA devices; 0 when there is no driver or no device (never raises).");
  m.def("device_name", &flc::device_name, "Name of the current CUDA device, '' when there is none.");

  m.def("pairwise_distances", &pairwise_distances, py::arg("x_ptr"), py::arg("y_ptr"), py::arg("out_ptr"),
        py::arg("n_x"), py::arg("n_y"), py::arg("n_features"), py::arg("metric"), py::arg("dtype"),
        py::arg("stream_ptr") = 0,
        "out (n_x x n_y) = distances between the rows of x (n_x x n_features) and y (n_y x n_features).");
  m.def("pairwise_distances_argmin_min", &pairwise_distances_argmin_min, py::arg("x_ptr"), py::arg("y_ptr"),
        py::arg("indices_ptr"), py::arg("distances_ptr"), py::arg("n_x"), py::arg("n_y"), py::arg("n_features"),
        py::arg("metric"), py::arg("dtype"), py::arg("stream_ptr") = 0,
        "indices (n_x, int64) and distances (n_x) of the nearest row of y to each row of x; ties to the lower "
        "index.");
  m.def("kneighbors", &kneighbors, py::arg("x_ptr"), py::arg("y_ptr"), py::arg("distances_ptr"),
        py::arg("indices_ptr"), py::arg("n_x"), py::arg("n_y"), py::arg("n_features"), py::arg("n_neighbors"),
        py::arg("metric"), py::arg("dtype"), py::arg("stream_ptr") = 0,
        "distances and indices (n_x x n_neighbors, int64) of the n_neighbors nearest rows of y to each row of "
        "x, by increasing (distance, index).");

  m.def("snnl_row_stats", &snnl_row_stats, py::arg("z_ptr"), py::arg("squared_ptr"), py::arg("labels_ptr"),
        py::arg("n"), py::arg("d"), py::arg("metric"), py::arg("temperature"), py::arg("dtype"),
        py::arg("row_max_ptr"), py::arg("same_sum_ptr"), py::arg("other_sum_ptr"), py::arg("stream_ptr") = 0,
        "Soft nearest neighbour loss, pass 1: per-row max exponent and shifted same/other-class sums "
        "(float64); see csrc/cuda/snnl.cuh. Never run by its author.");
  m.def("snnl_gradient_sums", &snnl_gradient_sums, py::arg("z_ptr"), py::arg("squared_ptr"),
        py::arg("labels_ptr"), py::arg("n"), py::arg("d"), py::arg("metric"), py::arg("temperature"),
        py::arg("dtype"), py::arg("log_denominator_ptr"), py::arg("pick_ptr"), py::arg("one_minus_pick_ptr"),
        py::arg("scale_ptr"), py::arg("v_ptr"), py::arg("row_sum_ptr"), py::arg("s_sum_ptr"),
        py::arg("stream_ptr") = 0,
        "Soft nearest neighbour loss, pass 2: v = G z, row sums of G and of g*s (float64); see "
        "csrc/cuda/snnl.cuh. Never run by its author.");
}
