// Bit-packed XNOR-popcount convolution: the CPU kernel of space=bnas's W1A1 convs.
//
// y[b, o, p] = scale[o] * sum over the taps t of p inside the image of
//              (Cg - 2 * popcount(xbits[b, t(p), g] ^ wbits[o, t]))
// where bit c of a word is sign(x_c) >= 0 (64 channels per uint64, zero bits past Cg on both
// sides, so they never differ) and Cg = Cin / groups. Taps in the padding contribute 0, as a
// zero-padded float conv of the signs does: the dot product is exact integer arithmetic.
//
// Why this shape: the input is packed once per call (zero words in the padding), so an output
// pixel's receptive field is a fixed list of word offsets and each output a dot product of two
// short word rows; a register tile of outputs x 2 pixels reuses each loaded word. A zero padding
// word adds popcount(w) to a sum, removed per border pixel with the precomputed popcount of each
// weight tap. Dispatched at run time: AVX-512 VPOPCNTDQ (a vector popcount on 8 words at once),
// AVX2 (a byte-table popcount on 4 words), hardware POPCNT, or portable C++.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <utility>
#if defined(__x86_64__)
#include <immintrin.h>
#endif
#include <cstdint>
#include <vector>

namespace {

struct Geometry {
  int64_t cg, cout_g, groups, words, kh, kw, stride, pad, dil, H, W, Ho, Wo;
  int64_t K() const { return kh * kw * words; }  // words per im2col row, per group
};

#if defined(__x86_64__)
#pragma GCC push_options
#pragma GCC target("popcnt")
namespace popcnt {
#include "xnor_tile.h"
}
#pragma GCC pop_options

// AVX2 has no vector popcount: count bits per byte with a 16-entry table (vpshufb on each
// nibble), sum bytes for up to 31 words (8 bits each: <= 248), then widen with vpsadbw. One
// ymm holds 4 outputs' words; a tile is 8 outputs x 2 pixels, 16 products per 8 shuffles.
namespace avx2 {
__attribute__((target("avx2,popcnt"))) inline __m256i bytes(__m256i v, __m256i lut, __m256i low) {
  const __m256i lo = _mm256_and_si256(v, low), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
  return _mm256_add_epi8(_mm256_shuffle_epi8(lut, lo), _mm256_shuffle_epi8(lut, hi));
}

__attribute__((target("avx2,popcnt"))) inline void put(__m256i s, int32_t* o, int64_t stride) {
  alignas(32) int64_t v[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(v), s);
  for (int i = 0; i < 4; ++i) o[i * stride] = static_cast<int32_t>(v[i]);
}

__attribute__((target("avx2,popcnt"))) void row(const uint64_t* x, int64_t step, const int64_t* off,
                                                const uint64_t* w8, int64_t K, int64_t octets, int64_t width,
                                                int32_t* out, int64_t stride) {
  const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2,
                                       3, 2, 3, 3, 4);
  const __m256i low = _mm256_set1_epi8(0x0f), zero = _mm256_setzero_si256();
  for (int64_t oc = 0; oc < octets; ++oc) {
    const uint64_t* wq = w8 + oc * K * 8;
    int32_t* o = out + oc * 8 * stride;
    for (int64_t ox = 0; ox < width; ox += 2) {
      const bool pair = ox + 1 < width;
      const uint64_t* x0 = x + ox * step;
      const uint64_t* x1 = pair ? x0 + step : x0;
      __m256i s00 = zero, s01 = zero, s10 = zero, s11 = zero;  // 64-bit sums: (outputs 0-3 | 4-7) x pixel
      for (int64_t k0 = 0; k0 < K; k0 += 31) {
        const int64_t k1 = std::min<int64_t>(K, k0 + 31);
        __m256i t00 = zero, t01 = zero, t10 = zero, t11 = zero;  // byte counts
        for (int64_t k = k0; k < k1; ++k) {
          const __m256i wa = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wq + k * 8));
          const __m256i wb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wq + k * 8 + 4));
          const __m256i a = _mm256_set1_epi64x(static_cast<long long>(x0[off[k]]));
          const __m256i b = _mm256_set1_epi64x(static_cast<long long>(x1[off[k]]));
          t00 = _mm256_add_epi8(t00, bytes(_mm256_xor_si256(wa, a), lut, low));
          t01 = _mm256_add_epi8(t01, bytes(_mm256_xor_si256(wa, b), lut, low));
          t10 = _mm256_add_epi8(t10, bytes(_mm256_xor_si256(wb, a), lut, low));
          t11 = _mm256_add_epi8(t11, bytes(_mm256_xor_si256(wb, b), lut, low));
        }
        s00 = _mm256_add_epi64(s00, _mm256_sad_epu8(t00, zero));
        s01 = _mm256_add_epi64(s01, _mm256_sad_epu8(t01, zero));
        s10 = _mm256_add_epi64(s10, _mm256_sad_epu8(t10, zero));
        s11 = _mm256_add_epi64(s11, _mm256_sad_epu8(t11, zero));
      }
      put(s00, o + ox, stride);
      put(s10, o + 4 * stride + ox, stride);
      if (pair) {
        put(s01, o + ox + 1, stride);
        put(s11, o + 4 * stride + ox + 1, stride);
      }
    }
  }
}
}  // namespace avx2

// AVX-512 VPOPCNTDQ counts the bits of 8 words in one instruction: one zmm holds an output
// octet's words (w8's layout), a tile is 8 outputs x 4 pixels, 4 accumulators of 64-bit sums.
namespace avx512 {
__attribute__((target("avx512f,avx512vpopcntdq"))) inline void put(__m512i s, int32_t* o, int64_t stride) {
  alignas(64) int64_t v[8];
  _mm512_store_si512(v, s);
  for (int i = 0; i < 8; ++i) o[i * stride] = static_cast<int32_t>(v[i]);
}

__attribute__((target("avx512f,avx512vpopcntdq"))) void row(const uint64_t* x, int64_t step, const int64_t* off,
                                                            const uint64_t* w8, int64_t K, int64_t octets,
                                                            int64_t width, int32_t* out, int64_t stride) {
  for (int64_t oc = 0; oc < octets; ++oc) {
    const uint64_t* wq = w8 + oc * K * 8;
    int32_t* o = out + oc * 8 * stride;
    for (int64_t ox = 0; ox < width; ox += 4) {
      const int64_t n = std::min<int64_t>(4, width - ox);  // pixels of this tile; the rest re-read the last
      const uint64_t* x0 = x + ox * step;
      const uint64_t* x1 = x0 + (n > 1 ? step : 0);
      const uint64_t* x2 = x0 + (n > 2 ? 2 * step : 0);
      const uint64_t* x3 = x0 + (n > 3 ? 3 * step : 0);
      __m512i s0 = _mm512_setzero_si512(), s1 = s0, s2 = s0, s3 = s0;
      for (int64_t k = 0; k < K; ++k) {
        const __m512i w = _mm512_loadu_si512(wq + k * 8);
        const int64_t d = off[k];
        s0 = _mm512_add_epi64(s0, _mm512_popcnt_epi64(_mm512_xor_si512(w, _mm512_set1_epi64((long long)x0[d]))));
        s1 = _mm512_add_epi64(s1, _mm512_popcnt_epi64(_mm512_xor_si512(w, _mm512_set1_epi64((long long)x1[d]))));
        s2 = _mm512_add_epi64(s2, _mm512_popcnt_epi64(_mm512_xor_si512(w, _mm512_set1_epi64((long long)x2[d]))));
        s3 = _mm512_add_epi64(s3, _mm512_popcnt_epi64(_mm512_xor_si512(w, _mm512_set1_epi64((long long)x3[d]))));
      }
      put(s0, o + ox, stride);
      if (n > 1) put(s1, o + ox + 1, stride);
      if (n > 2) put(s2, o + ox + 2, stride);
      if (n > 3) put(s3, o + ox + 3, stride);
    }
  }
}
}  // namespace avx512
#endif
namespace portable {
#include "xnor_tile.h"
}

using RowFn = void (*)(const uint64_t*, int64_t, const int64_t*, const uint64_t*, int64_t, int64_t, int64_t,
                      int32_t*, int64_t);

int best_isa() {
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vpopcntdq")) return 3;
  if (__builtin_cpu_supports("avx2")) return 2;
  if (__builtin_cpu_supports("popcnt")) return 1;
#endif
  return 0;
}

int forced = -1;  // -1: the best this CPU has

int active_isa() {
  const int best = best_isa();
  return forced < 0 ? best : std::min(forced, best);
}

RowFn row_for(int isa) {
#if defined(__x86_64__)
  if (isa == 3) return avx512::row;
  if (isa == 2) return avx2::row;
  if (isa == 1) return popcnt::row;
#endif
  return portable::row;
}

// pack sample b of x (C, H, W) into the zero-padded bits[((h + pad) * Wp + w + pad) * gw + g * words + word]
void pack_input(const float* x, const Geometry& G, int64_t Wp, uint64_t* bits, std::vector<uint64_t>& word) {
  const int64_t HW = G.H * G.W, gw = G.groups * G.words;
  word.resize(HW);
  for (int64_t g = 0; g < G.groups; ++g)
    for (int64_t wd = 0; wd < G.words; ++wd) {
      std::fill(word.begin(), word.end(), 0ULL);
      uint64_t* acc = word.data();
      for (int64_t c = wd * 64; c < std::min<int64_t>(G.cg, wd * 64 + 64); ++c) {
        const float* plane = x + (g * G.cg + c) * HW;
        const int shift = static_cast<int>(c % 64);
        for (int64_t p = 0; p < HW; ++p)  // branch-free and contiguous (vectorised): the signs are random
          acc[p] |= static_cast<uint64_t>(plane[p] >= 0.f) << shift;
      }
      for (int64_t h = 0; h < G.H; ++h) {
        uint64_t* line = bits + ((h + G.pad) * Wp + G.pad) * gw + g * G.words + wd;
        for (int64_t w = 0; w < G.W; ++w) line[w * gw] = acc[h * G.W + w];
      }
    }
}

}  // namespace

// x (B, Cin, H, W) float; weight (groups, Cout/groups, kh*kw*words) int64 bits; scale (Cout,);
// wpop (groups, Cout/groups, kh*kw) int64: popcount of each weight tap
at::Tensor xnor_conv(const at::Tensor& x_, const at::Tensor& weight, const at::Tensor& scale_,
                     const at::Tensor& wpop_, const c10::optional<at::Tensor>& bias_, int64_t kh, int64_t kw,
                     int64_t stride, int64_t pad, int64_t dil) {
  TORCH_CHECK(x_.dim() == 4 && x_.scalar_type() == at::kFloat, "xnor_conv: x must be float (B, C, H, W)");
  TORCH_CHECK(weight.dim() == 3 && weight.scalar_type() == at::kLong, "xnor_conv: weight must be int64 (G, Cout/G, K)");
  const at::Tensor x = x_.contiguous(), w = weight.contiguous(), scale = scale_.to(at::kFloat).contiguous();
  const at::Tensor wpop = wpop_.to(at::kLong).contiguous();
  Geometry G{};
  G.groups = w.size(0);
  G.cout_g = w.size(1);
  G.kh = kh; G.kw = kw; G.stride = stride; G.pad = pad; G.dil = dil;
  TORCH_CHECK(x.size(1) % G.groups == 0, "xnor_conv: input channels not divisible by groups");
  G.cg = x.size(1) / G.groups;
  G.words = (G.cg + 63) / 64;
  TORCH_CHECK(w.size(2) == G.K(), "xnor_conv: weight has ", w.size(2), " words per row, expected ", G.K());
  TORCH_CHECK(scale.numel() == w.size(0) * w.size(1) && wpop.numel() == scale.numel() * kh * kw,
              "xnor_conv: scale needs one value and wpop one popcount per output (and tap)");
  TORCH_CHECK(kh >= 1 && kw >= 1 && stride >= 1 && pad >= 0 && dil >= 1, "xnor_conv: bad geometry");
  G.H = x.size(2); G.W = x.size(3);
  G.Ho = (G.H + 2 * pad - dil * (kh - 1) - 1) / stride + 1;
  G.Wo = (G.W + 2 * pad - dil * (kw - 1) - 1) / stride + 1;
  const int64_t B = x.size(0), cout = G.groups * G.cout_g, P = G.Ho * G.Wo, K = G.K();
  at::Tensor y = at::empty({B, cout, G.Ho, G.Wo}, x.options());
  const at::Tensor bias_t = bias_.has_value() ? bias_->to(at::kFloat).contiguous() : at::Tensor();
  const float* bias = bias_t.defined() ? bias_t.data_ptr<float>() : nullptr;
  const RowFn row = row_for(active_isa());
  const uint64_t* wbits = reinterpret_cast<const uint64_t*>(w.data_ptr<int64_t>());
  const int64_t* pop = wpop.data_ptr<int64_t>();
  const float* sc = scale.data_ptr<float>();
  const int64_t gw = G.groups * G.words, octets = (G.cout_g + 7) / 8, taps = kh * kw;
  // weights interleaved by output octets, [g][octet][K][8], zero rows past cout_g (discarded)
  std::vector<uint64_t> w8(G.groups * octets * K * 8, 0ULL);
  for (int64_t g = 0; g < G.groups; ++g)
    for (int64_t o = 0; o < G.cout_g; ++o)
      for (int64_t k = 0; k < K; ++k)
        w8[((g * octets + o / 8) * K + k) * 8 + o % 8] = wbits[(g * G.cout_g + o) * K + k];
  const int64_t Hp = G.H + 2 * pad, Wp = G.W + 2 * pad;
  std::vector<int64_t> off(K);  // word k of a pixel's receptive field, from its top-left padded word
  for (int64_t ky = 0; ky < kh; ++ky)
    for (int64_t kx = 0; kx < kw; ++kx)
      for (int64_t wd = 0; wd < G.words; ++wd)
        off[(ky * kw + kx) * G.words + wd] = (ky * dil * Wp + kx * dil) * gw + wd;
  std::vector<uint64_t> packed(Hp * Wp * gw), word;
  for (int64_t b = 0; b < B; ++b) {
    std::fill(packed.begin(), packed.end(), 0ULL);
    pack_input(x.data_ptr<float>() + b * x.size(1) * G.H * G.W, G, Wp, packed.data(), word);
    float* yb = y.data_ptr<float>() + b * cout * P;
    at::parallel_for(0, G.Ho, 1, [&](int64_t r0, int64_t r1) {
      std::vector<int32_t> out(octets * 8 * G.Wo);
      std::vector<int32_t> valid(G.Wo);
      std::vector<std::pair<int64_t, int64_t>> padded;  // (pixel, tap) in the padding
      for (int64_t oy = r0; oy < r1; ++oy) {
        padded.clear();
        for (int64_t ox = 0; ox < G.Wo; ++ox) {  // which taps of each pixel lie inside the image
          valid[ox] = 0;
          for (int64_t ky = 0; ky < kh; ++ky)
            for (int64_t kx = 0; kx < kw; ++kx) {
              const int64_t iy = oy * stride - pad + ky * dil, ix = ox * stride - pad + kx * dil;
              const bool in = iy >= 0 && iy < G.H && ix >= 0 && ix < G.W;
              valid[ox] += in;
              if (!in) padded.emplace_back(ox, ky * kw + kx);
            }
        }
        for (int64_t g = 0; g < G.groups; ++g) {
          row(packed.data() + oy * stride * Wp * gw + g * G.words, stride * gw, off.data(),
              w8.data() + g * octets * K * 8, K, octets, G.Wo, out.data(), G.Wo);
          for (int64_t o = 0; o < G.cout_g; ++o) {
            const int64_t oc = g * G.cout_g + o;
            const int64_t* wp = pop + oc * taps;
            int32_t* so = out.data() + o * G.Wo;
            for (const auto& [q, t] : padded)  // a zero padding word counted popcount(w): not a tap
              so[q] -= static_cast<int32_t>(wp[t]);
            const float s0 = sc[oc], b0 = bias ? bias[oc] : 0.f;
            float* yo = yb + oc * P + oy * G.Wo;
            for (int64_t q = 0; q < G.Wo; ++q)  // int32 -> float: vectorised
              yo[q] = s0 * static_cast<float>(valid[q] * static_cast<int32_t>(G.cg) - 2 * so[q]) + b0;
          }
        }
      }
    });
  }
  return y;
}

int64_t xnor_isa() { return active_isa(); }

int64_t xnor_force_isa(int64_t isa) {
  forced = static_cast<int>(isa);
  return active_isa();
}

TORCH_LIBRARY(searchkit_xnor, m) {
  m.def("conv(Tensor x, Tensor weight, Tensor scale, Tensor wpop, Tensor? bias, int kh, int kw, int stride, "
        "int pad, int dil) -> Tensor");
  m.def("isa() -> int");
  m.def("force_isa(int isa) -> int");
}

TORCH_LIBRARY_IMPL(searchkit_xnor, CPU, m) { m.impl("conv", &xnor_conv); }

TORCH_LIBRARY_IMPL(searchkit_xnor, CompositeExplicitAutograd, m) {
  m.impl("isa", &xnor_isa);
  m.impl("force_isa", &xnor_force_isa);
}
