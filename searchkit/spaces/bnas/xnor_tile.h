// The scalar XNOR-popcount dot products of xnor.cpp, included once per instruction set
// (inside a `#pragma GCC target` region and a namespace of its own), so __builtin_popcountll
// becomes that ISA's popcount.
//
// One output row: pixel ox reads word k at x + ox * step + off[k] of the zero-padded packed
// input; w8 holds the weights by output octets, [octets][K][8] words. A 4-output x 2-pixel
// tile keeps its 8 sums in registers. out[o * stride + ox] = sum_k popcount(w[o][k] ^ x(ox)[k]).

inline void row(const uint64_t* x, int64_t step, const int64_t* off, const uint64_t* w8, int64_t K,
                int64_t octets, int64_t width, int32_t* out, int64_t stride) {
  for (int64_t q4 = 0; q4 < 2 * octets; ++q4) {  // output quads: half an octet each
    const uint64_t* wq = w8 + (q4 / 2) * K * 8 + (q4 % 2) * 4;
    int32_t* o = out + q4 * 4 * stride;
    int64_t ox = 0;
    for (; ox + 2 <= width; ox += 2) {
      const uint64_t* x0 = x + ox * step;
      const uint64_t* x1 = x0 + step;
      const uint64_t* w = wq;
      int64_t s00 = 0, s01 = 0, s10 = 0, s11 = 0, s20 = 0, s21 = 0, s30 = 0, s31 = 0;
      for (int64_t k = 0; k < K; ++k, w += 8) {
        const uint64_t a = x0[off[k]], b = x1[off[k]];
        s00 += __builtin_popcountll(w[0] ^ a);
        s01 += __builtin_popcountll(w[0] ^ b);
        s10 += __builtin_popcountll(w[1] ^ a);
        s11 += __builtin_popcountll(w[1] ^ b);
        s20 += __builtin_popcountll(w[2] ^ a);
        s21 += __builtin_popcountll(w[2] ^ b);
        s30 += __builtin_popcountll(w[3] ^ a);
        s31 += __builtin_popcountll(w[3] ^ b);
      }
      o[ox] = (int32_t)s00; o[ox + 1] = (int32_t)s01;  // |sums| < 2^31: Cin * taps bits
      o[stride + ox] = (int32_t)s10; o[stride + ox + 1] = (int32_t)s11;
      o[2 * stride + ox] = (int32_t)s20; o[2 * stride + ox + 1] = (int32_t)s21;
      o[3 * stride + ox] = (int32_t)s30; o[3 * stride + ox + 1] = (int32_t)s31;
    }
    for (; ox < width; ++ox) {  // an odd row's last pixel
      const uint64_t* x0 = x + ox * step;
      const uint64_t* w = wq;
      int64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      for (int64_t k = 0; k < K; ++k, w += 8) {
        const uint64_t a = x0[off[k]];
        s0 += __builtin_popcountll(w[0] ^ a);
        s1 += __builtin_popcountll(w[1] ^ a);
        s2 += __builtin_popcountll(w[2] ^ a);
        s3 += __builtin_popcountll(w[3] ^ a);
      }
      o[ox] = (int32_t)s0; o[stride + ox] = (int32_t)s1;
      o[2 * stride + ox] = (int32_t)s2; o[3 * stride + ox] = (int32_t)s3;
    }
  }
}
