// The fused mel front end on the GPU: one block per frame. The frame is windowed into shared
// memory, transformed there (radix-2 FFT of n_fft / 2 complex points, or a plain DFT for other
// sizes), turned into a power spectrum in shared memory, and reduced by the sparse mel filters;
// only the [B, n_mels, frames] result reaches global memory. The math is kernels/mel.h's.
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "cuda/mel_cuda.h"

namespace musicrep::cuda {

namespace {

constexpr int kThreads = 256;

// Mel filters of the power spectrum in shared memory, log-compressed, to out[b, :, f].
template <typename T>
__device__ void mel_store(const T* spec, T* out, int64_t b, int64_t f, const MelParams& q,
                          const MelTables<T>& t) {
  for (int64_t m = threadIdx.x; m < q.n_mels; m += blockDim.x)
    out[(b * q.n_mels + m) * q.n_frames + f] = log_compress(mel_dot(spec, t, m), q);
}

template <typename T>
__global__ void mel_fft_kernel(const T* __restrict__ wave, T* __restrict__ out, MelParams q,
                               MelTables<T> t) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* re = reinterpret_cast<T*>(smem_raw);
  const int64_t M = q.n_fft / 2;
  T* im = re + M;
  T* spec = im + M;  // [M + 1]
  const int64_t b = blockIdx.x / q.n_frames, f = blockIdx.x % q.n_frames;
  const T* clip = wave + b * q.length;

  for (int64_t m = threadIdx.x; m < M; m += blockDim.x) {
    const int64_t j = 2 * int64_t{t.bitrev[m]};
    re[m] = frame_sample(clip, f, j, t.window, q);
    im[m] = frame_sample(clip, f, j + 1, t.window, q);
  }
  __syncthreads();
  for (int64_t h = 1; h < M; h <<= 1) {
    for (int64_t p = threadIdx.x; p < M / 2; p += blockDim.x) {
      const int64_t j = p & (h - 1);
      const int64_t a = 2 * (p - j) + j;
      butterfly(re[a], im[a], re[a + h], im[a + h], t.stage_re[h + j], t.stage_im[h + j]);
    }
    __syncthreads();
  }
  for (int64_t k = threadIdx.x; k <= M; k += blockDim.x) {
    const int64_t z = k == M ? 0 : k, c = k == 0 ? 0 : M - k;
    T xr, xi;
    real_fft_unpack(re[z], im[z], re[c], im[c], t.unpack_re[k], t.unpack_im[k], xr, xi);
    spec[k] = spectral_power(xr, xi, q.power);
  }
  __syncthreads();
  mel_store(spec, out, b, f, q, t);
}

template <typename T>
__global__ void mel_dft_kernel(const T* __restrict__ wave, T* __restrict__ out, MelParams q,
                               MelTables<T> t) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* x = reinterpret_cast<T*>(smem_raw);
  T* spec = x + q.n_fft;  // [n_fft / 2 + 1]
  const int64_t b = blockIdx.x / q.n_frames, f = blockIdx.x % q.n_frames;
  const T* clip = wave + b * q.length;
  for (int64_t j = threadIdx.x; j < q.n_fft; j += blockDim.x) x[j] = frame_sample(clip, f, j, t.window, q);
  __syncthreads();
  for (int64_t k = threadIdx.x; k <= q.n_fft / 2; k += blockDim.x) {
    T xr, xi;
    dft_bin(x, q.n_fft, k, t.dft_cos, t.dft_sin, xr, xi);
    spec[k] = spectral_power(xr, xi, q.power);
  }
  __syncthreads();
  mel_store(spec, out, b, f, q, t);
}

void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess)
    throw std::runtime_error(std::string("mel_spectrogram (CUDA): ") + what + ": " + cudaGetErrorString(err));
}

}  // namespace

template <typename T>
void launch_mel_spectrogram(const T* wave, T* out, int64_t batch, const MelParams& q,
                            const MelTables<T>& t, cudaStream_t stream) {
  const int64_t blocks = batch * q.n_frames;
  if (blocks == 0) return;
  if (blocks > 0x7fffffff) throw std::runtime_error("mel_spectrogram (CUDA): too many frames");
  // FFT: re, im [M] and spec [M + 1]; DFT: x [n_fft] and spec [n_fft / 2 + 1]
  const size_t shared = sizeof(T) * (q.n_fft + q.n_fft / 2 + 1);
  const auto kernel = q.pow2 ? mel_fft_kernel<T> : mel_dft_kernel<T>;
  if (shared > 48 * 1024)
    check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                               static_cast<int>(shared)), "n_fft too large for shared memory");
  kernel<<<static_cast<unsigned>(blocks), kThreads, shared, stream>>>(wave, out, q, t);
  check(cudaGetLastError(), "kernel launch");
}

template void launch_mel_spectrogram<float>(const float*, float*, int64_t, const MelParams&,
                                            const MelTables<float>&, cudaStream_t);
template void launch_mel_spectrogram<double>(const double*, double*, int64_t, const MelParams&,
                                             const MelTables<double>&, cudaStream_t);

}  // namespace musicrep::cuda
