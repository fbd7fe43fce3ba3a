#include "cpu/filterbank.h"
#include "glue/checks.h"
#include <torch/library.h>

// The operator musicrep::mel_filterbank (float64, on the CPU).
namespace musicrep {

static at::Tensor mel_filterbank(int64_t n_mels, int64_t n_fft, double sample_rate, double f_min,
                                 double f_max, bool htk, double norm_p) {
  check_mel_filters("mel_filterbank", n_mels, n_fft, sample_rate, f_min, f_max, norm_p);
  auto out = at::empty({n_mels, n_fft / 2 + 1}, at::TensorOptions().dtype(at::kDouble));
  cpu::mel_filterbank(out.data_ptr<double>(), n_mels, n_fft, sample_rate, f_min, f_max, htk, norm_p);
  return out;
}

// No tensor input, so the dispatcher has no device to go by: one kernel serves every backend.
TORCH_LIBRARY_IMPL(musicrep, CompositeExplicitAutograd, m) { m.impl("mel_filterbank", &mel_filterbank); }

}  // namespace musicrep
