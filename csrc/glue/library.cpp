// The operator library `musicrep`: every op's schema, in one place. Each glue file registers its
// kernels for the op's schema under TORCH_LIBRARY_IMPL(musicrep, CPU / CUDA / ..., m); the fake
// (shape-only) implementations and the autograd formulas are registered in Python, in
// musicrep.ops.registration, which the dispatcher imports itself when it first needs one
// (set_python_module). Ops registered this way are what torch.compile, torch.export,
// torch.jit.trace and the ONNX exporter see as single graph nodes (docs/native.md).
#include <torch/library.h>

TORCH_LIBRARY(musicrep, m) {
  m.set_python_module("musicrep.ops.registration");
  // [B, n_mels, frames] of wave [B, T]; pad_mode 0 reflect / 1 constant / 2 replicate, log_mode
  // 0 none / 1 log / 2 db / 3 log1p / 4 log10p, norm_p 0 none / -1 Slaney / p > 0 unit L_p
  m.def("mel_spectrogram(Tensor wave, int n_fft, int hop_length, int win_length, int n_mels, "
        "float sample_rate, float f_min, float f_max, bool htk, float norm_p, float power, bool center, "
        "int pad_mode, int log_mode, float log_floor, float log_scale, bool check_finite) -> Tensor");
  // float64 [n_mels, n_fft // 2 + 1]; no tensor input: one kernel for every backend
  m.def("mel_filterbank(int n_mels, int n_fft, float sample_rate, float f_min, float f_max, bool htk, "
        "float norm_p) -> Tensor");
  // lse [M] of u [Mc, D]: log sum_{c != r} exp(u_r . u_c * inv_tau), and its gradient
  m.def("nt_xent_lse(Tensor u, int M, float inv_tau) -> Tensor");
  m.def("nt_xent_lse_backward(Tensor u, Tensor lse, Tensor g, int M, float inv_tau) -> Tensor");
  // item b of x [batch, time] read at start[b] + n * ratio[b], n < out_len; no gradient
  m.def("resample_shift(Tensor x, Tensor ratio, Tensor start, int out_len, int zeros) -> Tensor");
}
