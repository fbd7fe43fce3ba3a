#include "cpu/filterbank.h"
#include "glue/checks.h"
#include "registry.h"

namespace musicrep {

static at::Tensor mel_filterbank(int64_t n_mels, int64_t n_fft, double sample_rate, double f_min,
                                 double f_max, bool htk, double norm_p) {
  check_mel_filters("mel_filterbank", n_mels, n_fft, sample_rate, f_min, f_max, norm_p);
  auto out = at::empty({n_mels, n_fft / 2 + 1}, at::TensorOptions().dtype(at::kDouble));
  cpu::mel_filterbank(out.data_ptr<double>(), n_mels, n_fft, sample_rate, f_min, f_max, htk, norm_p);
  return out;
}

MUSICREP_BIND(bind_mel_filterbank) {
  m.def("mel_filterbank", &mel_filterbank, "Triangular mel filters [n_mels, n_fft // 2 + 1], float64",
        pybind11::arg("n_mels"), pybind11::arg("n_fft"), pybind11::arg("sample_rate"),
        pybind11::arg("f_min"), pybind11::arg("f_max"), pybind11::arg("htk"), pybind11::arg("norm_p"));
}

}  // namespace musicrep
