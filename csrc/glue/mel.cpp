// musicrep._C.mel_spectrogram: checks (a backstop: musicrep.ops.mel_spectrogram validates first),
// the tables of the configuration (cached, see glue/mel_table_cache.h), and dispatch to the CPU
// loop or the CUDA kernels on the wave's device and its current stream.
#include "cpu/mel.h"
#include "glue/checks.h"
#include "glue/cuda_stream.h"
#include "glue/mel_table_cache.h"
#include "registry.h"
#ifdef MUSICREP_WITH_CUDA
#include "cuda/mel_cuda.h"
#endif

namespace musicrep {

namespace {

template <typename T>
void run(const at::Tensor& wave, at::Tensor& out, const MelParams& q, const MelTableKey& key,
         const cpu::MelFilterSpec& spec) {
  const auto tables = MelTableCache<T>::instance().get(key, q, spec);
  const int64_t batch = wave.size(0);
  if (wave.is_cpu()) {
    cpu::mel_spectrogram<T>(wave.data_ptr<T>(), out.data_ptr<T>(), batch, q, tables->view());
    return;
  }
#ifdef MUSICREP_WITH_CUDA
  const c10::cuda::CUDAGuard guard(wave.device());
  const c10::cuda::CUDAStream stream = current_stream(wave);
  // the cache may drop the tables while this launch is queued: the allocator must not hand
  // their memory on before this stream has read them
  tables->reals.record_stream(stream);
  tables->ints.record_stream(stream);
  cuda::launch_mel_spectrogram<T>(wave.data_ptr<T>(), out.data_ptr<T>(), batch, q, tables->view(),
                                  stream.stream());
#else
  TORCH_CHECK(false, "mel_spectrogram: musicrep._C was built without CUDA kernels");
#endif
}

bool is_pow2(int64_t n) { return n >= 2 && (n & (n - 1)) == 0; }

}  // namespace

static at::Tensor mel_spectrogram(const at::Tensor& wave, int64_t n_fft, int64_t hop_length,
                                  int64_t win_length, int64_t n_mels, double sample_rate,
                                  double f_min, double f_max, bool htk, double norm_p, double power,
                                  bool center, int64_t pad_mode, int64_t log_mode, double log_floor,
                                  double log_scale) {
  check_device(wave, "mel_spectrogram", "wave");
  TORCH_CHECK(wave.dim() == 2 && wave.is_contiguous(), "mel_spectrogram: wave must be contiguous [B, T]");
  TORCH_CHECK(wave.scalar_type() == at::kFloat || wave.scalar_type() == at::kDouble,
              "mel_spectrogram: wave must be float32 or float64");
  TORCH_CHECK(wave.size(0) > 0 && wave.size(1) > 0, "mel_spectrogram: empty wave");
  TORCH_CHECK(hop_length > 0 && 0 < win_length && win_length <= n_fft,
              "mel_spectrogram: need hop_length > 0 and 0 < win_length <= n_fft");
  check_mel_filters("mel_spectrogram", n_mels, n_fft, sample_rate, f_min, f_max, norm_p);
  TORCH_CHECK(0 <= pad_mode && pad_mode <= 2 && 0 <= log_mode && log_mode <= 4,
              "mel_spectrogram: bad pad or log mode");
  TORCH_CHECK(std::isfinite(power) && power > 0 && std::isfinite(log_floor) && log_floor > 0 &&
                  std::isfinite(log_scale) && log_scale > 0,
              "mel_spectrogram: power, log_floor and log_scale must be finite and > 0");
  const int64_t length = wave.size(1);
  const int64_t pad = center ? n_fft / 2 : 0;
  TORCH_CHECK(length + 2 * pad >= n_fft, "mel_spectrogram: clip shorter than n_fft");
  TORCH_CHECK(!center || pad_mode != kPadReflect || pad < length,
              "mel_spectrogram: reflect padding needs more samples than n_fft // 2");
  MelParams q{length, n_fft, hop_length, n_mels, 1 + (length + 2 * pad - n_fft) / hop_length, pad,
              static_cast<int>(pad_mode), static_cast<int>(log_mode), power, log_floor, log_scale,
              is_pow2(n_fft), wave.is_cpu() ? cpu::bluestein_size(n_fft) : 0};
  const cpu::MelFilterSpec spec{sample_rate, f_min, f_max, htk, norm_p};
  const MelTableKey key{n_fft,   win_length, n_mels, q.bluestein, q.pow2, htk, sample_rate,
                        f_min,   f_max,      norm_p, wave.device()};
  auto out = at::empty({wave.size(0), n_mels, q.n_frames}, wave.options());
  if (wave.scalar_type() == at::kFloat)
    run<float>(wave, out, q, key, spec);
  else
    run<double>(wave, out, q, key, spec);
  return out;
}

MUSICREP_BIND(bind_mel_spectrogram) {
  using pybind11::arg;
  m.def("mel_spectrogram", &mel_spectrogram,
        "Fused (log-)mel spectrogram [B, n_mels, frames] of wave [B, T] (float32/float64, CPU or CUDA)",
        arg("wave"), arg("n_fft"), arg("hop_length"), arg("win_length"), arg("n_mels"),
        arg("sample_rate"), arg("f_min"), arg("f_max"), arg("htk"), arg("norm_p"), arg("power"),
        arg("center"), arg("pad_mode"), arg("log_mode"), arg("log_floor"), arg("log_scale"));
  m.def("mel_table_cache_size", [] {
    return MelTableCache<float>::instance().size() + MelTableCache<double>::instance().size();
  }, "How many mel table sets (one per configuration, dtype and device) are kept");
  m.def("mel_table_cache_clear", [] {
    MelTableCache<float>::instance().clear();
    MelTableCache<double>::instance().clear();
  }, "Drop the kept mel tables (the next call of each configuration rebuilds them)");
}

}  // namespace musicrep
