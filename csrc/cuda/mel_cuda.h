// Launchers for the fused mel front end on the GPU (CUDA headers only; called from glue/mel.cpp).
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/mel.h"

namespace musicrep::cuda {

// out[b, m, f] for wave [batch, q.length], one block per frame; `t` holds device pointers.
template <typename T>
void launch_mel_spectrogram(const T* wave, T* out, int64_t batch, const MelParams& q,
                            const MelTables<T>& t, cudaStream_t stream);

}  // namespace musicrep::cuda
