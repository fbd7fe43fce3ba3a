// Shared by the CPU (g++) and CUDA (nvcc) builds: every kernel's per-element math is written
// once as MR_HD inline functions, so the CPU tests exercise exactly what the GPU computes.
#pragma once

#if defined(__CUDACC__)
#define MR_HD __host__ __device__ __forceinline__
#else
#define MR_HD inline
#endif
