// 1xN block-sparse matrix times dense columns: the CPU kernel of space=onexn.
//
// y[b, r*N + i, p] = act(bias[r*N + i] + sum_k values[k, i] * x[b, coloff[col[k]] + p])
// for the blocks k of block row r (crow[r] <= k < crow[r+1]), i < N, p < P.
// A 1x1 conv is this with coloff[c] = c*H*W; a 3x3 conv (stride 1) reads the padded
// input through one column per (c, ky, kx) at offset c*plane + ky*row + kx (implicit
// im2col); a linear layer is P = 1.
//
// Why this shape: an N-row block shares one input column, so the kernel keeps a tile of
// output rows x pixels in registers and streams x once per block (the FMA-bound form; an
// out[i:i+N] += w * x[j] loop is load/store-bound, see docs/onexn.md). ISA is chosen at
// run time: AVX-512F, AVX2+FMA, or portable C++.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define SK_X86 1
#else
#define SK_X86 0
#endif

namespace {

struct Job {
  const float* x;        // one sample
  const int32_t* crow;   // R + 1
  const int32_t* col;    // nnzb
  const float* values;   // nnzb x N
  const int64_t* coloff; // per column
  const float* bias;     // R*N or nullptr
  float* y;              // one sample, (R*N) x P
  int64_t N, P;
  int act;               // 0 none, 1 relu, 2 relu6
  int64_t cstride;       // > 0: column c starts at c * cstride (1x1, linear), no table look-up
  int64_t Py = 0;        // y's row pitch: P, or wv/wc of it where the grid is written compact
  int64_t wv = 0, wc = 0;  // wc > 0 (AVX-512 only): of each wc grid columns the first wv are kept
  inline int64_t off(int64_t k) const { return cstride ? (int64_t)col[k] * cstride : coloff[col[k]]; }
};

inline float epi(float v, int act) {
  if (act >= 1) v = v < 0.f ? 0.f : v;
  if (act == 2) v = v > 6.f ? 6.f : v;
  return v;
}

// ---------------------------------------------------------------- portable
template <int ROWS>
void rows_portable(const Job& j, int64_t r, int64_t i0) {
  constexpr int T = 16;
  const int64_t b0 = j.crow[r], b1 = j.crow[r + 1];
  for (int64_t p0 = 0; p0 < j.P; p0 += T) {
    const int64_t w = std::min<int64_t>(T, j.P - p0);
    float acc[ROWS][T] = {};
    for (int64_t k = b0; k < b1; ++k) {
      const float* xp = j.x + j.off(k) + p0;
      const float* v = j.values + k * j.N + i0;
      for (int i = 0; i < ROWS; ++i)
        for (int64_t q = 0; q < w; ++q) acc[i][q] += v[i] * xp[q];
    }
    for (int i = 0; i < ROWS; ++i) {
      const int64_t row = r * j.N + i0 + i;
      const float bb = j.bias ? j.bias[row] : 0.f;
      for (int64_t q = 0; q < w; ++q) j.y[row * j.P + p0 + q] = epi(acc[i][q] + bb, j.act);
    }
  }
}

// Any N: tiles of TOP rows (> 4), then 4, 2, 1 for the rest of the block (extra arguments follow i0).
#define SK_ROW_TILES(FN, TOP, ...)                                       \
  int64_t i0 = 0;                                                        \
  for (; i0 + TOP <= j.N; i0 += TOP) FN<TOP>(j, r, i0, ##__VA_ARGS__);   \
  for (; i0 + 4 <= j.N; i0 += 4) FN<4>(j, r, i0, ##__VA_ARGS__);         \
  if (i0 + 2 <= j.N) { FN<2>(j, r, i0, ##__VA_ARGS__); i0 += 2; }        \
  if (i0 < j.N) FN<1>(j, r, i0, ##__VA_ARGS__);

void row_portable(const Job& j, int64_t r) { SK_ROW_TILES(rows_portable, 8) }

#if SK_X86
// ---------------------------------------------------------------- AVX-512: 8 rows x 32 px
// One tile of ROWS rows x w <= 32 pixels from p0; FULL (w = 32) stores unmasked. The loads
// stay masked even then: GCC folds a plain load into every FMA, reading x once per row.
template <int ROWS, bool FULL>
__attribute__((target("avx512f"))) inline void tile_avx512(const Job& j, int64_t r, int64_t i0, int64_t p0,
                                                           int64_t w, const float* bias) {
  const int64_t b0 = j.crow[r], b1 = j.crow[r + 1];
  const __m512 zero = _mm512_setzero_ps(), six = _mm512_set1_ps(6.f);
  const __mmask16 m0 = w >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << w) - 1);
  const __mmask16 m1 = w >= 32 ? (__mmask16)0xFFFF : (w <= 16 ? (__mmask16)0 : (__mmask16)((1u << (w - 16)) - 1));
  __m512 a0[ROWS], a1[ROWS];
#pragma GCC unroll 8
  for (int i = 0; i < ROWS; ++i) a0[i] = a1[i] = bias ? _mm512_set1_ps(bias[i]) : zero;  // no add after
  for (int64_t k = b0; k < b1; ++k) {
    const float* xp = j.x + j.off(k) + p0;
    const __m512 x0 = _mm512_maskz_loadu_ps(m0, xp);
    const __m512 x1 = _mm512_maskz_loadu_ps(m1, xp + 16);
    const float* v = j.values + k * j.N + i0;
#pragma GCC unroll 8
    for (int i = 0; i < ROWS; ++i) {
      const __m512 s = _mm512_set1_ps(v[i]);
      a0[i] = _mm512_fmadd_ps(s, x0, a0[i]);
      a1[i] = _mm512_fmadd_ps(s, x1, a1[i]);
    }
  }
  // Where the padded grid (wc columns a row) is written compact (wv of them), a tile that
  // spans a row's spare columns squeezes them out in registers; others store as they are.
  int64_t d0 = p0, d1 = p0 + 16;
  __mmask16 s0 = m0, s1 = m1;
  bool squeeze = false;
  if (j.wc) {
    const int64_t h = p0 / j.wc, c = p0 % j.wc, h1 = (p0 + 16) / j.wc, c1 = (p0 + 16) % j.wc;
    d0 = h * j.wv + std::min(c, j.wv);
    d1 = h1 * j.wv + std::min(c1, j.wv);
    uint32_t valid = 0;
    for (int64_t q = 0, cc = c; q < w; ++q, cc = cc + 1 == j.wc ? 0 : cc + 1) valid |= (uint32_t)(cc < j.wv) << q;
    squeeze = valid != ((uint32_t)m1 << 16 | m0);
    s0 = (__mmask16)valid;
    s1 = (__mmask16)(valid >> 16);
  }
  const __mmask16 n0 = (__mmask16)((1u << __builtin_popcount(s0)) - 1),
                  n1 = (__mmask16)((1u << __builtin_popcount(s1)) - 1);
#pragma GCC unroll 8
  for (int i = 0; i < ROWS; ++i) {
    __m512 o0 = a0[i], o1 = a1[i];
    if (j.act >= 1) { o0 = _mm512_max_ps(o0, zero); o1 = _mm512_max_ps(o1, zero); }
    if (j.act == 2) { o0 = _mm512_min_ps(o0, six); o1 = _mm512_min_ps(o1, six); }
    float* yp = j.y + (r * j.N + i0 + i) * j.Py;
    if (squeeze) {
      _mm512_mask_storeu_ps(yp + d0, n0, _mm512_maskz_compress_ps(s0, o0));
      _mm512_mask_storeu_ps(yp + d1, n1, _mm512_maskz_compress_ps(s1, o1));
    } else if (FULL) {
      _mm512_storeu_ps(yp + d0, o0);
      _mm512_storeu_ps(yp + d0 + 16, o1);
    } else {
      _mm512_mask_storeu_ps(yp + d0, m0, o0);
      _mm512_mask_storeu_ps(yp + d0 + 16, m1, o1);
    }
  }
}

template <int ROWS>
__attribute__((target("avx512f"))) void rows_avx512(const Job& j, int64_t r, int64_t i0, int64_t pa, int64_t pb) {
  const float* bias = j.bias ? j.bias + r * j.N + i0 : nullptr;
  int64_t p0 = pa;
  for (; p0 + 32 <= pb; p0 += 32) tile_avx512<ROWS, true>(j, r, i0, p0, 32, bias);
  if (p0 < pb) tile_avx512<ROWS, false>(j, r, i0, p0, pb - p0, bias);
}

// Few pixels (linear layers, tiny maps): vectorise along the block's N rows instead.
__attribute__((target("avx512f"))) void cols_avx512(const Job& j, int64_t r) {
  const int64_t b0 = j.crow[r], b1 = j.crow[r + 1];
  for (int64_t i0 = 0; i0 < j.N; i0 += 32) {
    const int64_t n = std::min<int64_t>(32, j.N - i0);
    const __mmask16 m0 = n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1);
    const __mmask16 m1 = n >= 32 ? (__mmask16)0xFFFF : (n <= 16 ? (__mmask16)0 : (__mmask16)((1u << (n - 16)) - 1));
    for (int64_t p0 = 0; p0 < j.P; p0 += 4) {
      const int64_t w = std::min<int64_t>(4, j.P - p0);
      __m512 a0[4], a1[4];
      for (int q = 0; q < 4; ++q) a0[q] = a1[q] = _mm512_setzero_ps();
      for (int64_t k = b0; k < b1; ++k) {
        const float* v = j.values + k * j.N + i0;
        const __m512 v0 = _mm512_maskz_loadu_ps(m0, v), v1 = _mm512_maskz_loadu_ps(m1, v + 16);
        const float* xp = j.x + j.off(k) + p0;
        for (int q = 0; q < w; ++q) {
          const __m512 s = _mm512_set1_ps(xp[q]);
          a0[q] = _mm512_fmadd_ps(v0, s, a0[q]);
          a1[q] = _mm512_fmadd_ps(v1, s, a1[q]);
        }
      }
      alignas(64) float buf[32];
      for (int q = 0; q < w; ++q) {
        _mm512_store_ps(buf, a0[q]);
        _mm512_store_ps(buf + 16, a1[q]);
        for (int64_t i = 0; i < n; ++i) {
          const int64_t row = r * j.N + i0 + i;
          j.y[row * j.P + p0 + q] = epi(buf[i] + (j.bias ? j.bias[row] : 0.f), j.act);
        }
      }
    }
  }
}

// One pixel (a linear layer at batch b): 16 rows per vector, four independent accumulators
// so consecutive blocks do not wait on one FMA chain.
__attribute__((target("avx512f"))) void gemv_avx512(const Job& j, int64_t r) {
  const int64_t b0 = j.crow[r], b1 = j.crow[r + 1];
  for (int64_t i0 = 0; i0 < j.N; i0 += 16) {
    const int64_t n = std::min<int64_t>(16, j.N - i0);
    const __mmask16 m = n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1);
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    const float* v = j.values + i0;
    int64_t k = b0;
    for (; k + 4 <= b1; k += 4) {
      a0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, v + k * j.N), _mm512_set1_ps(j.x[j.off(k)]), a0);
      a1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, v + (k + 1) * j.N), _mm512_set1_ps(j.x[j.off(k + 1)]), a1);
      a2 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, v + (k + 2) * j.N), _mm512_set1_ps(j.x[j.off(k + 2)]), a2);
      a3 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, v + (k + 3) * j.N), _mm512_set1_ps(j.x[j.off(k + 3)]), a3);
    }
    for (; k < b1; ++k)
      a0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, v + k * j.N), _mm512_set1_ps(j.x[j.off(k)]), a0);
    alignas(64) float buf[16];
    _mm512_store_ps(buf, _mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
    for (int64_t i = 0; i < n; ++i) {
      const int64_t row = r * j.N + i0 + i;
      j.y[row] = epi(buf[i] + (j.bias ? j.bias[row] : 0.f), j.act);
    }
  }
}

__attribute__((target("avx512f"))) void rowp_avx512(const Job& j, int64_t r, int64_t pa, int64_t pb) {
  SK_ROW_TILES(rows_avx512, 8, pa, pb)
}

__attribute__((target("avx512f"))) void row_avx512(const Job& j, int64_t r) {
  if (j.P == 1 && j.N >= 4) return gemv_avx512(j, r);
  if (j.P < 16 && j.N >= 8) return cols_avx512(j, r);
  rowp_avx512(j, r, 0, j.P);
}

// ---------------------------------------------------------------- AVX2+FMA: 6 rows x 16 px
// 12 accumulators, two x vectors and a broadcast: 15 of AVX2's 16 registers. Only a tail
// tile masks its loads and stores: AMD runs a masked store (vmaskmovps) microcoded, which
// made the small-K 1x1 layers store-bound.
__attribute__((target("avx2,fma"))) inline __m256i tail_mask(int64_t w) {
  const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)std::max<int64_t>(0, std::min<int64_t>(8, w))), idx);
}

template <int ROWS, bool FULL>
__attribute__((target("avx2,fma"))) inline void tile_avx2(const Job& j, int64_t r, int64_t i0, int64_t p0,
                                                         int64_t w, const float* bias) {
  const int64_t b0 = j.crow[r], b1 = j.crow[r + 1];
  const __m256i m0 = tail_mask(w), m1 = tail_mask(w - 8);
  __m256 a0[ROWS], a1[ROWS];
#pragma GCC unroll 8
  for (int i = 0; i < ROWS; ++i) a0[i] = a1[i] = bias ? _mm256_set1_ps(bias[i]) : _mm256_setzero_ps();
  for (int64_t k = b0; k < b1; ++k) {
    const float* xp = j.x + j.off(k) + p0;
    const __m256 x0 = FULL ? _mm256_loadu_ps(xp) : _mm256_maskload_ps(xp, m0);
    const __m256 x1 = FULL ? _mm256_loadu_ps(xp + 8) : _mm256_maskload_ps(xp + 8, m1);
    const float* v = j.values + k * j.N + i0;
#pragma GCC unroll 8
    for (int i = 0; i < ROWS; ++i) {
      const __m256 s = _mm256_broadcast_ss(v + i);
      a0[i] = _mm256_fmadd_ps(s, x0, a0[i]);
      a1[i] = _mm256_fmadd_ps(s, x1, a1[i]);
    }
  }
  const __m256 zero = _mm256_setzero_ps(), six = _mm256_set1_ps(6.f);
#pragma GCC unroll 8
  for (int i = 0; i < ROWS; ++i) {
    __m256 o0 = a0[i], o1 = a1[i];
    if (j.act >= 1) { o0 = _mm256_max_ps(o0, zero); o1 = _mm256_max_ps(o1, zero); }
    if (j.act == 2) { o0 = _mm256_min_ps(o0, six); o1 = _mm256_min_ps(o1, six); }
    float* yp = j.y + (r * j.N + i0 + i) * j.Py + p0;
    if (FULL) {
      _mm256_storeu_ps(yp, o0);
      _mm256_storeu_ps(yp + 8, o1);
    } else {
      _mm256_maskstore_ps(yp, m0, o0);
      _mm256_maskstore_ps(yp + 8, m1, o1);
    }
  }
}

template <int ROWS>
__attribute__((target("avx2,fma"))) void rows_avx2(const Job& j, int64_t r, int64_t i0, int64_t pa, int64_t pb) {
  const float* bias = j.bias ? j.bias + r * j.N + i0 : nullptr;
  int64_t p0 = pa;
  for (; p0 + 16 <= pb; p0 += 16) tile_avx2<ROWS, true>(j, r, i0, p0, 16, bias);
  if (p0 < pb) tile_avx2<ROWS, false>(j, r, i0, p0, pb - p0, bias);
}

// One pixel (a linear layer): 8 rows per vector, four accumulators over consecutive blocks.
__attribute__((target("avx2,fma"))) void gemv_avx2(const Job& j, int64_t r) {
  const int64_t b0 = j.crow[r], b1 = j.crow[r + 1];
  for (int64_t i0 = 0; i0 < j.N; i0 += 8) {
    const int64_t n = std::min<int64_t>(8, j.N - i0);
    const __m256i m = tail_mask(n);
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    const float* v = j.values + i0;
    int64_t k = b0;
    for (; k + 4 <= b1; k += 4) {
      a0 = _mm256_fmadd_ps(_mm256_maskload_ps(v + k * j.N, m), _mm256_set1_ps(j.x[j.off(k)]), a0);
      a1 = _mm256_fmadd_ps(_mm256_maskload_ps(v + (k + 1) * j.N, m), _mm256_set1_ps(j.x[j.off(k + 1)]), a1);
      a2 = _mm256_fmadd_ps(_mm256_maskload_ps(v + (k + 2) * j.N, m), _mm256_set1_ps(j.x[j.off(k + 2)]), a2);
      a3 = _mm256_fmadd_ps(_mm256_maskload_ps(v + (k + 3) * j.N, m), _mm256_set1_ps(j.x[j.off(k + 3)]), a3);
    }
    for (; k < b1; ++k) a0 = _mm256_fmadd_ps(_mm256_maskload_ps(v + k * j.N, m), _mm256_set1_ps(j.x[j.off(k)]), a0);
    alignas(32) float buf[8];
    _mm256_store_ps(buf, _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (int64_t i = 0; i < n; ++i) {
      const int64_t row = r * j.N + i0 + i;
      j.y[row] = epi(buf[i] + (j.bias ? j.bias[row] : 0.f), j.act);
    }
  }
}

__attribute__((target("avx2,fma"))) void rowp_avx2(const Job& j, int64_t r, int64_t pa, int64_t pb) {
  SK_ROW_TILES(rows_avx2, 6, pa, pb)
}

__attribute__((target("avx2,fma"))) void row_avx2(const Job& j, int64_t r) {
  if (j.P == 1 && j.N >= 4) return gemv_avx2(j, r);
  rowp_avx2(j, r, 0, j.P);
}
#endif

enum Isa { PORTABLE = 0, AVX2 = 1, AVX512 = 2 };

int detect_isa() {
  const char* forced = std::getenv("SEARCHKIT_ONEXN_ISA");
  int best = PORTABLE;
#if SK_X86
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) best = AVX2;
  if (__builtin_cpu_supports("avx512f")) best = AVX512;
#endif
  if (forced) {
    const std::string f(forced);
    const int want = f == "avx512" ? AVX512 : f == "avx2" ? AVX2 : f == "portable" ? PORTABLE : best;
    return std::min(want, best);  // never run an ISA the CPU lacks
  }
  return best;
}

int best_isa() {
  static const int isa = detect_isa();
  return isa;
}

std::atomic<int> forced_isa{-1};  // set by onexn_force_isa (tests run every path)

int current_isa() {
  const int f = forced_isa.load(std::memory_order_relaxed);
  return f >= 0 ? std::min(f, best_isa()) : best_isa();
}

// Smallest and largest of n int32 (the per-call index check: ~1 us for 40k blocks with AVX-512,
// where a scalar loop cost a fifth of a linear layer's time, and as much as the layer on AVX2).
#if SK_X86
__attribute__((target("avx512f"))) void minmax_avx512(const int32_t* v, int64_t n, int32_t& lo, int32_t& hi) {
  __m512i a = _mm512_set1_epi32(lo), b = _mm512_set1_epi32(hi);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512i x = _mm512_loadu_si512(v + i);
    a = _mm512_min_epi32(a, x);
    b = _mm512_max_epi32(b, x);
  }
  lo = _mm512_reduce_min_epi32(a);
  hi = _mm512_reduce_max_epi32(b);
  for (; i < n; ++i) { lo = std::min(lo, v[i]); hi = std::max(hi, v[i]); }
}

__attribute__((target("avx2"))) void minmax_avx2(const int32_t* v, int64_t n, int32_t& lo, int32_t& hi) {
  __m256i a = _mm256_set1_epi32(lo), b = _mm256_set1_epi32(hi);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i x = _mm256_loadu_si256((const __m256i*)(v + i));
    a = _mm256_min_epi32(a, x);
    b = _mm256_max_epi32(b, x);
  }
  alignas(32) int32_t la[8], lb[8];
  _mm256_store_si256((__m256i*)la, a);
  _mm256_store_si256((__m256i*)lb, b);
  for (int q = 0; q < 8; ++q) { lo = std::min(lo, la[q]); hi = std::max(hi, lb[q]); }
  for (; i < n; ++i) { lo = std::min(lo, v[i]); hi = std::max(hi, v[i]); }
}
#endif

void minmax_i32(const int32_t* v, int64_t n, int32_t& lo, int32_t& hi) {
#if SK_X86
  if (current_isa() == AVX512) return minmax_avx512(v, n, lo, hi);
  if (current_isa() == AVX2) return minmax_avx2(v, n, lo, hi);
#endif
  for (int64_t i = 0; i < n; ++i) { lo = std::min(lo, v[i]); hi = std::max(hi, v[i]); }
}

// Every block names a column < ncol and crow_indices span the blocks in order.
void check_indices(const at::Tensor& cr, const at::Tensor& cl, int64_t ncol) {
  const int64_t R = cr.numel() - 1;
  const int32_t* clp = cl.data_ptr<int32_t>();
  int32_t cmin = 0, cmax = 0;
  minmax_i32(clp, cl.numel(), cmin, cmax);
  TORCH_CHECK(cmin >= 0 && (cl.numel() == 0 || cmax < ncol), "onexn: a block names a column out of range");
  const int32_t* crp = cr.data_ptr<int32_t>();
  TORCH_CHECK(crp[0] == 0 && crp[R] == cl.numel(), "onexn: crow_indices do not span the blocks");
  for (int64_t r = 0; r < R; ++r) TORCH_CHECK(crp[r] <= crp[r + 1], "onexn: crow_indices decrease");
}

#if SK_X86
// A linear layer, batch B: one pass over the weights, each loaded block used for up to 8
// samples (NB accumulators), 16 rows per vector; NB = 1 keeps 4 accumulators over blocks.
template <int NB>
__attribute__((target("avx512f"))) void linear_rows_avx512(const float* x, int64_t C, const int32_t* crow,
                                                           const int32_t* col, const float* vals, int64_t N,
                                                           const float* bias, float* y, int64_t ystride, int act,
                                                           int64_t r) {
  const int64_t b0 = crow[r], b1 = crow[r + 1];
  const __m512 zero = _mm512_setzero_ps(), six = _mm512_set1_ps(6.f);
  for (int64_t i0 = 0; i0 < N; i0 += 16) {
    const int64_t n = std::min<int64_t>(16, N - i0);
    const __mmask16 m = n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1);
    const float* v = vals + i0;
    __m512 acc[NB == 1 ? 4 : NB];
    for (auto& a : acc) a = zero;
    int64_t k = b0;
    if (NB == 1) {
      for (; k + 4 <= b1; k += 4)
        for (int u = 0; u < 4; ++u)
          acc[u] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, v + (k + u) * N), _mm512_set1_ps(x[col[k + u]]), acc[u]);
      acc[0] = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
    }
    for (; k < b1; ++k) {
      const __m512 w = _mm512_maskz_loadu_ps(m, v + k * N);
      const float* xp = x + col[k];
      for (int q = 0; q < NB; ++q) acc[q] = _mm512_fmadd_ps(w, _mm512_set1_ps(xp[q * C]), acc[q]);
    }
    const __m512 bb = bias ? _mm512_maskz_loadu_ps(m, bias + r * N + i0) : zero;
    for (int q = 0; q < NB; ++q) {
      __m512 o = _mm512_add_ps(acc[q], bb);
      if (act >= 1) o = _mm512_max_ps(o, zero);
      if (act == 2) o = _mm512_min_ps(o, six);
      _mm512_mask_storeu_ps(y + q * ystride + r * N + i0, m, o);
    }
  }
}

// y (B, R*N) = x (B, C) through the blocks; false where the kernel has no such path.
bool linear_avx512(const float* x, int64_t B, int64_t C, const at::Tensor& cr, const at::Tensor& cl,
                   const at::Tensor& va, const float* bias, float* y, int64_t act) {
  const int64_t R = cr.numel() - 1, N = va.size(1);
  if (current_isa() != AVX512 || N < 4) return false;
  const int32_t* crp = cr.data_ptr<int32_t>();
  const int32_t* clp = cl.data_ptr<int32_t>();
  const float* vp = va.data_ptr<float>();
  at::parallel_for(0, R, 1, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t b = 0; b < B; b += 8) {
        const float* xb = x + b * C;
        float* yb = y + b * R * N;
        switch (std::min<int64_t>(8, B - b)) {
          case 1: linear_rows_avx512<1>(xb, C, crp, clp, vp, N, bias, yb, R * N, (int)act, r); break;
          case 2: linear_rows_avx512<2>(xb, C, crp, clp, vp, N, bias, yb, R * N, (int)act, r); break;
          case 3: linear_rows_avx512<3>(xb, C, crp, clp, vp, N, bias, yb, R * N, (int)act, r); break;
          case 4: linear_rows_avx512<4>(xb, C, crp, clp, vp, N, bias, yb, R * N, (int)act, r); break;
          case 5: linear_rows_avx512<5>(xb, C, crp, clp, vp, N, bias, yb, R * N, (int)act, r); break;
          case 6: linear_rows_avx512<6>(xb, C, crp, clp, vp, N, bias, yb, R * N, (int)act, r); break;
          case 7: linear_rows_avx512<7>(xb, C, crp, clp, vp, N, bias, yb, R * N, (int)act, r); break;
          default: linear_rows_avx512<8>(xb, C, crp, clp, vp, N, bias, yb, R * N, (int)act, r); break;
        }
      }
  });
  return true;
}
#endif

// Row ranges [edge[i], edge[i+1]) of about equal work (a block's FMAs, plus a row's stores)
// for `parts` tasks: after filter rearrangement the strong rows come first and keep most blocks,
// so equal row counts leave one thread with most of the work.
std::vector<int64_t> balanced_rows(const int32_t* crow, int64_t R, int64_t parts) {
  std::vector<int64_t> edge(parts + 1, R);
  const int64_t total = crow[R] + R;
  int64_t r = 0;
  for (int64_t i = 0; i < parts; ++i) {
    const int64_t target = total * i / parts;
    while (r < R && crow[r] + r < target) ++r;
    edge[i] = r;
  }
  return edge;
}

// y (B, R*N, P) for x (B, L); every read is checked once per call (min/max, vectorisable).
// wc > 0 (the AVX-512 pixel path only): y keeps wv of every wc grid columns, (B, R*N, P/wc*wv).
void run_blocks(const float* xp, int64_t B, int64_t L, const at::Tensor& cr, const at::Tensor& cl,
                const at::Tensor& va, const int64_t* cop, int64_t ncol, const float* bp, float* yp, int64_t P,
                int64_t act, int64_t cstride = 0, int64_t wv = 0, int64_t wc = 0) {
  const int64_t R = cr.numel() - 1, N = va.size(1);
  int64_t lo = 0, hi = 0;
  for (int64_t c = 0; c < ncol; ++c) { lo = std::min(lo, cop[c]); hi = std::max(hi, cop[c]); }
  TORCH_CHECK(lo >= 0 && (ncol == 0 || hi + P <= L), "onexn: a column reads past the input");
  check_indices(cr, cl, ncol);
  const int32_t* clp = cl.data_ptr<int32_t>();
  const int32_t* crp = cr.data_ptr<int32_t>();
  const int isa = current_isa();
  const float* vp = va.data_ptr<float>();
  const int64_t Py = wc ? P / wc * wv : P;
  TORCH_CHECK(!wc || (isa == AVX512 && P >= 16 && P % wc == 0 && wv <= wc), "onexn: no compact path here");
  auto job = [&](int64_t b) {
    Job j{xp + b * L, crp, clp, vp, cop, bp, yp + b * R * N * Py, N, P, (int)act, cstride};
    j.Py = Py;
    j.wv = wv;
    j.wc = wc;
    return j;
  };
  const int64_t threads = at::get_num_threads();
#if SK_X86
  // Pixel chunks (the vector paths). Rows of many blocks read as many input columns per pixel
  // tile: going tile-major, 128 pixels through every block row, reuses them from L1 where
  // row-major streams each of them from L2 once a row. And where a sample's rows would be
  // shared among threads, chunks narrow instead: equal chunks are equal work, block rows
  // are not (after rearrangement a few strong rows hold most blocks).
  const int64_t nnzb = cl.numel();
  const bool tiles = isa >= AVX2 && P > 128 && nnzb >= 24 * R, split = isa >= AVX2 && threads > 1 && P >= 64;
  if (tiles || split) {
    const int64_t want = 4 * threads, per = (want + B - 1) / B;  // chunks a sample to keep threads busy
    int64_t PC = tiles ? 128 : P;
    if (split && B * ((P + PC - 1) / PC) < want) PC = std::max<int64_t>(32, ((P + per - 1) / per + 31) / 32 * 32);
    const int64_t nc = (P + PC - 1) / PC;
    // still too few tasks (small maps): split the block rows too, by their work
    const int64_t rg = threads == 1 || B * nc >= 2 * threads ? 1 : std::min<int64_t>(R, (want + B * nc - 1) / (B * nc));
    const std::vector<int64_t> edge = balanced_rows(crp, R, rg);
    at::parallel_for(0, B * nc * rg, 1, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t b = t / (nc * rg), g = t / nc % rg, c = t % nc;
        const Job j = job(b);
        for (int64_t r = edge[g]; r < edge[g + 1]; ++r)
          (isa == AVX512 ? rowp_avx512 : rowp_avx2)(j, r, c * PC, std::min(P, (c + 1) * PC));
      }
    });
    return;
  }
#endif
  const int64_t parts = threads > 1 ? std::min<int64_t>(R, 4 * threads) : R;
  const std::vector<int64_t> edge = threads > 1 ? balanced_rows(crp, R, parts) : std::vector<int64_t>();
  at::parallel_for(0, B * parts, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t b = t / parts, q = t % parts;
      const Job j = job(b);
      for (int64_t r = edge.empty() ? q : edge[q]; r < (edge.empty() ? q + 1 : edge[q + 1]); ++r) {
#if SK_X86
        if (isa == AVX512) { row_avx512(j, r); continue; }
        if (isa == AVX2) { row_avx2(j, r); continue; }
#endif
        row_portable(j, r);
      }
    }
  });
}

void check_blocks(const at::Tensor& crow, const at::Tensor& col, const at::Tensor& values) {
  TORCH_CHECK(crow.scalar_type() == at::kInt && col.scalar_type() == at::kInt, "onexn: indices must be int32");
  TORCH_CHECK(values.dim() == 2 && values.scalar_type() == at::kFloat, "onexn: values must be (nnzb, N) float32");
  TORCH_CHECK(crow.numel() >= 1 && col.numel() == values.size(0), "onexn: crow/col/values disagree");
}

const float* bias_of(const c10::optional<at::Tensor>& bias, int64_t rows, at::Tensor& keep) {
  if (!bias.has_value() || !bias->defined()) return nullptr;
  keep = bias->contiguous();
  TORCH_CHECK(keep.scalar_type() == at::kFloat && keep.numel() == rows, "onexn: bias must have ", rows, " floats");
  return keep.data_ptr<float>();
}

at::Tensor onexn_mm(const at::Tensor& x, const at::Tensor& crow, const at::Tensor& col,
                    const at::Tensor& values, const at::Tensor& coloff, const c10::optional<at::Tensor>& bias,
                    int64_t P, int64_t act) {
  TORCH_CHECK(x.device().is_cpu() && x.scalar_type() == at::kFloat && x.dim() == 2,
              "onexn_mm: x must be a 2-D float32 CPU tensor (batch, elements)");
  TORCH_CHECK(coloff.scalar_type() == at::kLong, "onexn_mm: coloff must be int64");
  check_blocks(crow, col, values);
  const auto xc = x.contiguous(), cr = crow.contiguous(), cl = col.contiguous(), va = values.contiguous(),
             co = coloff.contiguous();
  const int64_t R = cr.numel() - 1, N = va.size(1), B = xc.size(0);
  at::Tensor bk;
  const float* bp = bias_of(bias, R * N, bk);
  auto y = at::empty({B, R * N, P}, xc.options());
  run_blocks(xc.data_ptr<float>(), B, xc.size(1), cr, cl, va, co.data_ptr<int64_t>(), co.numel(), bp,
             y.data_ptr<float>(), P, act);
  return y;
}

// A whole layer in one call: x (B, C, H, W) for a k x k conv (stride 1, 'same' padding) or a
// 1x1 conv at any stride, or (B, C) for a linear layer; columns are c*k*k + ky*k + kx.
at::Tensor onexn_conv(const at::Tensor& x, const at::Tensor& crow, const at::Tensor& col, const at::Tensor& values,
                      const c10::optional<at::Tensor>& bias, int64_t k, int64_t stride, int64_t act) {
  TORCH_CHECK(x.device().is_cpu() && x.scalar_type() == at::kFloat && (x.dim() == 4 || x.dim() == 2),
              "onexn_conv: x must be a float32 CPU tensor (B, C, H, W) or (B, C)");
  TORCH_CHECK(k >= 1 && k % 2 == 1 && stride >= 1 && (k == 1 || stride == 1), "onexn_conv: unsupported geometry");
  check_blocks(crow, col, values);
  const bool linear = x.dim() == 2;
#if SK_X86
  if (linear) {
    const auto xc = x.contiguous(), cr = crow.contiguous(), cl = col.contiguous(), va = values.contiguous();
    const int64_t R = cr.numel() - 1, N = va.size(1), B = xc.size(0), C = xc.size(1);
    check_indices(cr, cl, C);
    at::Tensor bk;
    const float* bp = bias_of(bias, R * N, bk);
    auto y = at::empty({B, R * N}, xc.options());
    if (linear_avx512(xc.data_ptr<float>(), B, C, cr, cl, va, bp, y.data_ptr<float>(), act)) return y;
  }
#endif
  at::Tensor xs = linear ? x.unsqueeze(-1).unsqueeze(-1) : x;
  if (stride > 1) xs = xs.slice(2, 0, c10::nullopt, stride).slice(3, 0, c10::nullopt, stride);
  const int64_t B = xs.size(0), C = xs.size(1), H = xs.size(2), W = xs.size(3), pad = k / 2;
  // implicit im2col: outputs on an H x (W + 2 pad) grid of the padded input (one spare row)
  at::Tensor xp = k > 1 ? at::constant_pad_nd(xs, {pad, pad, pad, pad + 1}, 0.0) : xs.contiguous();
  const int64_t rows = xp.size(2), cols = xp.size(3), kk = k * k;
  std::vector<int64_t> off(C * kk);
  for (int64_t c = 0; c < C; ++c)
    for (int64_t t = 0; t < kk; ++t) off[c * kk + t] = c * rows * cols + (t / k) * cols + (t % k);
  const auto cr = crow.contiguous(), cl = col.contiguous(), va = values.contiguous();
  const int64_t R = cr.numel() - 1, N = va.size(1), P = H * cols;
  at::Tensor bk;
  const float* bp = bias_of(bias, R * N, bk);
  // AVX-512 writes the outputs compact; the other paths write the grid, then drop its spare columns
  const bool compact = k > 1 && current_isa() == AVX512 && P >= 16;
  auto y = at::empty({B, R * N, H, compact ? W : cols}, xp.options());
  run_blocks(xp.data_ptr<float>(), B, C * rows * cols, cr, cl, va, off.data(), C * kk, bp, y.data_ptr<float>(), P,
             act, k == 1 ? rows * cols : 0, compact ? W : 0, compact ? cols : 0);
  if (k > 1 && !compact) y = y.narrow(3, 0, W).contiguous();
  return linear ? y.reshape({B, R * N}) : y;
}

int64_t onexn_isa() { return current_isa(); }

// -1: the best this CPU has; otherwise at most that ISA. Returns the one now in force.
int64_t onexn_force_isa(int64_t isa) {
  forced_isa.store((int)isa, std::memory_order_relaxed);
  return current_isa();
}

}  // namespace

TORCH_LIBRARY(searchkit, m) {
  m.def("onexn_mm(Tensor x, Tensor crow, Tensor col, Tensor values, Tensor coloff, Tensor? bias, int P, int act) -> Tensor");
  m.def("onexn_conv(Tensor x, Tensor crow, Tensor col, Tensor values, Tensor? bias, int k, int stride, int act) -> Tensor");
  m.def("onexn_isa() -> int");
  m.def("onexn_force_isa(int isa) -> int");
}

TORCH_LIBRARY_IMPL(searchkit, CPU, m) {
  m.impl("onexn_mm", &onexn_mm);
  m.impl("onexn_conv", &onexn_conv);
}

TORCH_LIBRARY_IMPL(searchkit, CompositeExplicitAutograd, m) {
  m.impl("onexn_isa", &onexn_isa);
  m.impl("onexn_force_isa", &onexn_force_isa);
}
