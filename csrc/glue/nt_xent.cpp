// The operators musicrep::nt_xent_lse and nt_xent_lse_backward (its gradient, which the autograd
// formula in musicrep.ops.registration calls): the fused NT-Xent core. musicrep.ops.nt_xent validates every argument;
// these TORCH_CHECKs are only the backstop before raw pointers are handed on.
#include "cpu/nt_xent.h"
#include "glue/checks.h"
#include "glue/cuda_stream.h"
#include <torch/library.h>

#ifdef MUSICREP_WITH_CUDA
#include <c10/cuda/CUDAException.h>

#include "cuda/nt_xent_cuda.h"
#endif

namespace musicrep {
namespace {

void check_inputs(const at::Tensor& u, int64_t M, double inv_tau) {
  check_device(u, "nt_xent_lse", "u");
  TORCH_CHECK(std::isfinite(inv_tau) && inv_tau > 0, "nt_xent_lse: inv_tau must be finite and > 0, got ",
              inv_tau);
  TORCH_CHECK(u.dim() == 2 && u.is_contiguous(), "nt_xent_lse: u must be a contiguous [Mc, D] tensor");
  TORCH_CHECK(u.size(0) >= 2 && u.size(1) >= 1, "nt_xent_lse: need at least 2 candidates and D >= 1");
  TORCH_CHECK(0 < M && M <= u.size(0), "nt_xent_lse: need 0 < M <= Mc");
}

// Accumulation (and lse/gradient) dtype: float64 stays float64, everything else is float32.
at::ScalarType acc_type(const at::Tensor& u) {
  return u.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

void check_backward_inputs(const at::Tensor& u, const at::Tensor& lse, const at::Tensor& g, int64_t M,
                           double inv_tau) {
  check_inputs(u, M, inv_tau);
  const auto acc = acc_type(u);
  TORCH_CHECK(lse.device() == u.device() && g.device() == u.device(), "nt_xent_lse: mixed devices");
  TORCH_CHECK(lse.dim() == 1 && lse.size(0) == M && lse.scalar_type() == acc && lse.is_contiguous(),
              "nt_xent_lse: lse must be a contiguous [M] tensor in the accumulation dtype");
  TORCH_CHECK(g.dim() == 1 && g.size(0) == M && g.scalar_type() == acc && g.is_contiguous(),
              "nt_xent_lse: g must be a contiguous [M] tensor in the accumulation dtype");
}

// The value check lives in the op (not in a Python branch), so a traced loss keeps it.
void check_finite(const at::Tensor& u) {
  TORCH_CHECK_VALUE(at::isfinite(u).all().item<bool>(),
                    "nt_xent: the embeddings hold non-finite values (nan or inf)");
}

#ifdef MUSICREP_WITH_CUDA
cuda::Dtype cuda_dtype(const at::Tensor& u) {
  switch (u.scalar_type()) {
    case at::kFloat: return cuda::Dtype::f32;
    case at::kDouble: return cuda::Dtype::f64;
    case at::kHalf: return cuda::Dtype::f16;
    case at::kBFloat16: return cuda::Dtype::bf16;
    default: TORCH_CHECK(false, "nt_xent_lse: unsupported CUDA dtype ", u.scalar_type());
  }
}
#endif

#ifdef MUSICREP_WITH_CUDA
at::Tensor nt_xent_lse_cuda(const at::Tensor& u, int64_t M, double inv_tau) {
  check_inputs(u, M, inv_tau);
  check_finite(u);
  const int64_t Mc = u.size(0), D = u.size(1);
  auto lse = at::empty({M}, u.options().dtype(acc_type(u)));
  const c10::cuda::CUDAGuard guard(u.device());
  cuda::nt_xent_lse_forward(u.data_ptr(), cuda_dtype(u), Mc, M, D, inv_tau, lse.data_ptr(),
                            current_stream(u).stream());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return lse;
}

at::Tensor nt_xent_lse_backward_cuda(const at::Tensor& u, const at::Tensor& lse, const at::Tensor& g,
                                     int64_t M, double inv_tau) {
  check_backward_inputs(u, lse, g, M, inv_tau);
  const int64_t Mc = u.size(0), D = u.size(1);
  auto grad = at::empty({Mc, D}, u.options().dtype(acc_type(u)));
  const c10::cuda::CUDAGuard guard(u.device());
  cuda::nt_xent_lse_backward(u.data_ptr(), cuda_dtype(u), lse.data_ptr(), g.data_ptr(), Mc, M, D, inv_tau,
                             grad.data_ptr(), current_stream(u).stream());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return grad;
}
#endif

at::Tensor nt_xent_lse_cpu(const at::Tensor& u, int64_t M, double inv_tau) {
  check_inputs(u, M, inv_tau);
  check_finite(u);
  TORCH_CHECK(u.is_cpu(), "nt_xent_lse: the CPU kernel got a tensor on ", u.device());
  const int64_t Mc = u.size(0), D = u.size(1);
  auto lse = at::empty({M}, u.options().dtype(acc_type(u)));
  if (u.scalar_type() == at::kDouble) {
    cpu::nt_xent_lse_forward<double>(u.data_ptr<double>(), Mc, M, D, inv_tau, lse.data_ptr<double>());
  } else {
    TORCH_CHECK(u.scalar_type() == at::kFloat, "nt_xent_lse: CPU kernels take float32 or float64");
    cpu::nt_xent_lse_forward<float>(u.data_ptr<float>(), Mc, M, D, static_cast<float>(inv_tau),
                                    lse.data_ptr<float>());
  }
  return lse;
}

at::Tensor nt_xent_lse_backward_cpu(const at::Tensor& u, const at::Tensor& lse, const at::Tensor& g,
                                    int64_t M, double inv_tau) {
  check_backward_inputs(u, lse, g, M, inv_tau);
  TORCH_CHECK(u.is_cpu(), "nt_xent_lse: the CPU kernel got a tensor on ", u.device());
  const int64_t Mc = u.size(0), D = u.size(1);
  auto grad = at::empty({Mc, D}, u.options().dtype(acc_type(u)));
  if (u.scalar_type() == at::kDouble) {
    cpu::nt_xent_lse_backward<double>(u.data_ptr<double>(), lse.data_ptr<double>(), g.data_ptr<double>(),
                                      Mc, M, D, inv_tau, grad.data_ptr<double>());
  } else {
    TORCH_CHECK(u.scalar_type() == at::kFloat, "nt_xent_lse: CPU kernels take float32 or float64");
    cpu::nt_xent_lse_backward<float>(u.data_ptr<float>(), lse.data_ptr<float>(), g.data_ptr<float>(),
                                     Mc, M, D, static_cast<float>(inv_tau), grad.data_ptr<float>());
  }
  return grad;
}

}  // namespace

TORCH_LIBRARY_IMPL(musicrep, CPU, m) {
  m.impl("nt_xent_lse", &nt_xent_lse_cpu);
  m.impl("nt_xent_lse_backward", &nt_xent_lse_backward_cpu);
}

#ifdef MUSICREP_WITH_CUDA
TORCH_LIBRARY_IMPL(musicrep, CUDA, m) {
  m.impl("nt_xent_lse", &nt_xent_lse_cuda);
  m.impl("nt_xent_lse_backward", &nt_xent_lse_backward_cuda);
}
#endif

}  // namespace musicrep
