// Backstop checks shared by the glue files. The Python ops validate every argument with a clear
// message first; these keep a direct call to musicrep._C from reaching the kernels with a tensor
// that has no data (meta), a value that makes them divide by zero or cast NaN to an integer, or
// a size whose tables would exhaust memory. They raise (RuntimeError in Python), never crash.
#pragma once
#include <torch/extension.h>

#include <cmath>

namespace musicrep {

// The largest frame the mel kernels take: their tables hold n_mels x (n_fft / 2 + 1) weights.
constexpr int64_t kMaxNFft = int64_t{1} << 16;

inline void check_device(const at::Tensor& t, const char* op, const char* name) {
  TORCH_CHECK(t.is_cpu() || t.is_cuda(), op, ": ", name, " must be on the CPU or a CUDA device, got ",
              t.device());
}

// Mel filter settings: the same rules as musicrep.ops.validate.
inline void check_mel_filters(const char* op, int64_t n_mels, int64_t n_fft, double sample_rate,
                              double f_min, double f_max, double norm_p) {
  TORCH_CHECK(n_mels > 0 && 0 < n_fft && n_fft <= kMaxNFft, op, ": need n_mels > 0 and 0 < n_fft <= ",
              kMaxNFft, ", got n_mels=", n_mels, ", n_fft=", n_fft);
  TORCH_CHECK(std::isfinite(sample_rate) && sample_rate > 0, op, ": sample_rate must be finite and > 0");
  TORCH_CHECK(std::isfinite(f_min) && std::isfinite(f_max) && 0 <= f_min && f_min < f_max &&
                  f_max <= sample_rate / 2 * (1 + 1e-9),
              op, ": need 0 <= f_min < f_max <= sample_rate / 2, got f_min=", f_min, ", f_max=", f_max);
  TORCH_CHECK(norm_p == 0 || norm_p == -1 || (std::isfinite(norm_p) && norm_p > 0), op,
              ": norm_p must be 0 (none), -1 (Slaney) or a finite p > 0, got ", norm_p);
}

}  // namespace musicrep
