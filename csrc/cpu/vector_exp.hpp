// Internal to the CPU module: exp on whole vectors (GCC does not vectorise std::exp without
// -ffast-math), shared by the soft nearest neighbour loss (snnl.cpp) and the Gaussian mixture
// E-step (mixture.cpp). Cody-Waite reduction by ln 2 and a Taylor polynomial on
// |r| <= ln(2) / 2 (degree 7 in float: truncation 6e-9 relative; degree 13 in double: below
// 2^-57). round(x / ln 2) and 2^n come from the magic constant 1.5 * 2^(mantissa bits): its low
// bits hold n after the rounding add.
#pragma once

#include "cpu/tile_engine.hpp"

namespace fastlatent::cpu::detail {

// e^r for |r| <= ln(2) / 2, double: Horner on the Taylor series to r^13.
inline v4df exp_reduced(v4df r) {
  v4df p = splat(1.0 / 6227020800.0);
  p = fmadd(p, r, splat(1.0 / 479001600.0));
  p = fmadd(p, r, splat(1.0 / 39916800.0));
  p = fmadd(p, r, splat(1.0 / 3628800.0));
  p = fmadd(p, r, splat(1.0 / 362880.0));
  p = fmadd(p, r, splat(1.0 / 40320.0));
  p = fmadd(p, r, splat(1.0 / 5040.0));
  p = fmadd(p, r, splat(1.0 / 720.0));
  p = fmadd(p, r, splat(1.0 / 120.0));
  p = fmadd(p, r, splat(1.0 / 24.0));
  p = fmadd(p, r, splat(1.0 / 6.0));
  p = fmadd(p, r, splat(0.5));
  p = fmadd(p, r, splat(1.0));
  return fmadd(p, r, splat(1.0));
}

// (t, n): t = x / ln 2 + magic, whose low bits hold n = round(x / ln 2), and r = x - n ln 2
// (ln 2 in two parts, the high one with trailing zeros, so n ln2_hi is exact).
inline v4df reduce_by_ln2(v4df x, v4df& t) {
  const v4df magic = splat(6755399441055744.0);
  t = fmadd(x, splat(1.4426950408889634), magic);
  const v4df n = t - magic;
  const v4df r = fmadd(n, splat(-6.93147180369123816490e-01), x);
  return fmadd(n, splat(-1.90821492927058770002e-10), r);
}

// exp(x) for x <= 0 (x may be -inf), lane by lane; 0 where the result would be subnormal.
inline v8sf exp_nonpositive(v8sf x) {
  const v8sf lowest = splat(-87.0f);
  const v8si tiny = x < lowest;
  x = vmax(x, lowest);
  const v8sf magic = splat(12582912.0f);
  const v8sf t = fmadd(x, splat(1.44269504088896341f), magic);
  const v8sf n = t - magic;
  v8sf r = fmadd(n, splat(-0.693359375f), x);
  r = fmadd(n, splat(2.12194440e-4f), r);
  v8sf p = splat(1.0f / 5040.0f);
  p = fmadd(p, r, splat(1.0f / 720.0f));
  p = fmadd(p, r, splat(1.0f / 120.0f));
  p = fmadd(p, r, splat(1.0f / 24.0f));
  p = fmadd(p, r, splat(1.0f / 6.0f));
  p = fmadd(p, r, splat(0.5f));
  p = fmadd(p, r, splat(1.0f));
  p = fmadd(p, r, splat(1.0f));
  const v8si bits = ((v8si)t - (v8si)magic + 127) << 23;
  const v8sf result = p * (v8sf)bits;
  return (v8sf)((v8si)result & ~tiny);
}

inline v4df exp_nonpositive(v4df x) {
  const v4df lowest = splat(-708.0);
  const v4di tiny = x < lowest;
  x = vmax(x, lowest);
  v4df t;
  const v4df p = exp_reduced(reduce_by_ln2(x, t));
  const v4di bits = ((v4di)t - (v4di)splat(6755399441055744.0) + 1023) << 52;
  const v4df result = p * (v4df)bits;
  return (v4df)((v4di)result & ~tiny);
}

// exp(x) for any x (not NaN), within a few units in the last place of std::exp (tested against
// it): x clamped to [-746, 710] (0 below: exp(-746) rounds to 0; inf above), and 2^n applied as
// two factors 2^a 2^b, a = floor(n / 2), so that results reach the subnormals with one rounding.
inline v4df exp_any(v4df x) {
  x = vmin(vmax(x, splat(-746.0)), splat(710.0));
  v4df t;
  const v4df p = exp_reduced(reduce_by_ln2(x, t));
  const v4di n = (v4di)t - (v4di)splat(6755399441055744.0);  // in [-1077, 1025]
  const v4di a = n >> 1;                                       // floor(n / 2)
  return p * (v4df)((a + 1023) << 52) * (v4df)((n - a + 1023) << 52);
}

}  // namespace fastlatent::cpu::detail
