// The operator musicrep::mel_spectrogram: checks (a backstop: musicrep.ops.mel_spectrogram validates
// first; the finiteness of the samples is checked only here), the tables of the configuration
// (cached, see glue/mel_table_cache.h), and the CPU loop or the CUDA kernels on the wave's device
// and its current stream.
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

// One call's settings, checked (a backstop: musicrep.ops.mel_spectrogram validates first), with
// the key of its cached tables.
struct MelCall {
  MelParams q;
  cpu::MelFilterSpec spec;
  MelTableKey key;
};

bool is_pow2(int64_t n) { return n >= 2 && (n & (n - 1)) == 0; }

bool all_finite(const at::Tensor& wave) {
  // a finite sum proves every sample finite in one cheap reduction; only an overflowing or
  // non-finite sum needs the elementwise scan
  return at::isfinite(wave.sum()).item<bool>() || at::isfinite(wave).all().item<bool>();
}

MelCall prepare(const at::Tensor& wave, int64_t n_fft, int64_t hop_length, int64_t win_length,
                int64_t n_mels, double sample_rate, double f_min, double f_max, bool htk, double norm_p,
                double power, bool center, int64_t pad_mode, int64_t log_mode, double log_floor,
                double log_scale, bool check_finite) {
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
  // the value check lives in the op, so no Python branch on the samples is left to trace
  TORCH_CHECK_VALUE(!check_finite || all_finite(wave), "wave contains NaN or infinite samples");
  MelParams q{length, n_fft, hop_length, n_mels, 1 + (length + 2 * pad - n_fft) / hop_length, pad,
              static_cast<int>(pad_mode), static_cast<int>(log_mode), power, log_floor, log_scale,
              is_pow2(n_fft), wave.is_cpu() ? cpu::bluestein_size(n_fft) : 0};
  const cpu::MelFilterSpec spec{sample_rate, f_min, f_max, htk, norm_p};
  const MelTableKey key{n_fft,   win_length, n_mels, q.bluestein, q.pow2, htk, sample_rate,
                        f_min,   f_max,      norm_p, wave.device()};
  return {q, spec, key};
}

template <typename T>
std::shared_ptr<const MelTableEntry<T>> tables_of(const MelCall& c) {
  return MelTableCache<T>::instance().get(c.key, c.q, c.spec);
}

#define MEL_ARGS                                                                                   \
  const at::Tensor &wave, int64_t n_fft, int64_t hop_length, int64_t win_length, int64_t n_mels,   \
      double sample_rate, double f_min, double f_max, bool htk, double norm_p, double power,       \
      bool center, int64_t pad_mode, int64_t log_mode, double log_floor, double log_scale,         \
      bool check_finite
#define MEL_CALL                                                                                   \
  prepare(wave, n_fft, hop_length, win_length, n_mels, sample_rate, f_min, f_max, htk, norm_p,     \
          power, center, pad_mode, log_mode, log_floor, log_scale, check_finite)

at::Tensor mel_spectrogram_cpu(MEL_ARGS) {
  TORCH_CHECK(wave.is_cpu(), "mel_spectrogram: the CPU kernel got a tensor on ", wave.device());
  const MelCall c = MEL_CALL;
  auto out = at::empty({wave.size(0), n_mels, c.q.n_frames}, wave.options());
  AT_DISPATCH_FLOATING_TYPES(wave.scalar_type(), "mel_spectrogram", [&] {
    cpu::mel_spectrogram<scalar_t>(wave.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), wave.size(0), c.q,
                                   tables_of<scalar_t>(c)->view());
  });
  return out;
}

#ifdef MUSICREP_WITH_CUDA
at::Tensor mel_spectrogram_cuda(MEL_ARGS) {
  const MelCall c = MEL_CALL;
  const c10::cuda::CUDAGuard guard(wave.device());
  const c10::cuda::CUDAStream stream = current_stream(wave);
  auto out = at::empty({wave.size(0), n_mels, c.q.n_frames}, wave.options());
  AT_DISPATCH_FLOATING_TYPES(wave.scalar_type(), "mel_spectrogram", [&] {
    const auto tables = tables_of<scalar_t>(c);
    // the cache may drop the tables while this launch is queued: the allocator must not hand
    // their memory on before this stream has read them
    tables->reals.record_stream(stream);
    tables->ints.record_stream(stream);
    cuda::launch_mel_spectrogram<scalar_t>(wave.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), wave.size(0),
                                           c.q, tables->view(), stream.stream());
  });
  return out;
}
#endif

}  // namespace

TORCH_LIBRARY_IMPL(musicrep, CPU, m) { m.impl("mel_spectrogram", &mel_spectrogram_cpu); }

#ifdef MUSICREP_WITH_CUDA
TORCH_LIBRARY_IMPL(musicrep, CUDA, m) { m.impl("mel_spectrogram", &mel_spectrogram_cuda); }
#endif

// Not kernels: the table cache, for tests and benchmarks.
MUSICREP_BIND(bind_mel_table_cache) {
  m.def("mel_table_cache_size", [] {
    return MelTableCache<float>::instance().size() + MelTableCache<double>::instance().size();
  }, "How many mel table sets (one per configuration, dtype and device) are kept");
  m.def("mel_table_cache_clear", [] {
    MelTableCache<float>::instance().clear();
    MelTableCache<double>::instance().clear();
  }, "Drop the kept mel tables (the next call of each configuration rebuilds them)");
}

}  // namespace musicrep
