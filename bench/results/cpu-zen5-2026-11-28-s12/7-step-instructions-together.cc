// Throughput of the int4 decode step's instructions together on one core, 8 independent rows, no
// loads (twelfth session, ../cpu_kernels.md): permute + FMA, with the shift, the "magic float"
// variant (a logic op in place of the permute). Cycles at 4.1 GHz (a dependent scalar-add loop's
// clock here). Not part of the build.
#include <immintrin.h>

#include <chrono>
#include <cstdio>
static double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
constexpr double kGHz = 4.1;
template <class F>
double Rate(F f) {
  double best = 0;
  for (int rep = 0; rep < 20; ++rep) {
    double t0 = Now();
    long it = f();
    double t = Now() - t0;
    double r = it / t;
    if (r > best) best = r;
  }
  return best;
}
#define BODY(name, per_iter, decl, stmt)                                       \
  {                                                                            \
    double r = Rate([&] {                                                      \
      decl;                                                                    \
      long n = 2000000;                                                        \
      for (long i = 0; i < n; ++i) {                                           \
        stmt;                                                                  \
      }                                                                        \
      return n;                                                                \
    });                                                                        \
    printf("%-44s %.2f iters/cycle  (%.2f ops/cycle)\n", name, r / kGHz / 1e9, \
           r / kGHz / 1e9 * per_iter);                                         \
  }
int main() {
  __m512 sink = _mm512_setzero_ps();
  // 8 independent lanes j for each stmt group
#define V8(x) x(0) x(1) x(2) x(3) x(4) x(5) x(6) x(7)
#define DECL_A                                                                                  \
  __m512 a0 = _mm512_set1_ps(0), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0; \
  __m512i q0 = _mm512_set1_epi32(1), q1 = q0, q2 = q0, q3 = q0, q4 = q0, q5 = q0, q6 = q0,      \
          q7 = q0;                                                                              \
  __m512i sh = _mm512_set1_epi32(0);                                                            \
  __m512 t = _mm512_set1_ps(1), x = _mm512_set1_ps(0);
#define SINK                                             \
  sink = _mm512_add_ps(                                  \
      sink,                                              \
      _mm512_add_ps(_mm512_add_ps(a0, a1),               \
                    _mm512_add_ps(_mm512_add_ps(a2, a3), \
                                  _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7)))));
  {
    DECL_A
#define S(j) a##j = _mm512_fmadd_ps(x, _mm512_permutexvar_ps(q##j, t), a##j);
    BODY("perm+fma (8 rows)", 8, ,
         V8(S) __asm__(""
                       : "+v"(q0), "+v"(q1), "+v"(q2), "+v"(q3), "+v"(q4), "+v"(q5), "+v"(q6),
                         "+v"(q7));)
#undef S
    SINK
  }
  {
    DECL_A
#define S(j) a##j = _mm512_fmadd_ps(x, _mm512_permutexvar_ps(_mm512_srlv_epi32(q##j, sh), t), a##j);
    BODY("srlv+perm+fma (8 rows)", 8, ,
         V8(S) __asm__(""
                       : "+v"(q0), "+v"(q1), "+v"(q2), "+v"(q3), "+v"(q4), "+v"(q5), "+v"(q6),
                         "+v"(q7));)
#undef S
    SINK
  }
  {
    DECL_A
#define S(j)                                                                                    \
  a##j = _mm512_fmadd_ps(x, _mm512_castsi512_ps(_mm512_ternarylogic_epi32(q##j, sh, q0, 0xE8)), \
                         a##j);
    BODY("ternlog+fma (8 rows)", 8, ,
         V8(S) __asm__(""
                       : "+v"(q0), "+v"(q1), "+v"(q2), "+v"(q3), "+v"(q4), "+v"(q5), "+v"(q6),
                         "+v"(q7));)
#undef S
    SINK
  }
  {
    DECL_A
#define S(j)                                                                                     \
  a##j = _mm512_fmadd_ps(                                                                        \
      x,                                                                                         \
      _mm512_castsi512_ps(_mm512_ternarylogic_epi32(_mm512_srlv_epi32(q##j, sh), sh, q0, 0xE8)), \
      a##j);
    BODY("srlv+ternlog+fma (8 rows)", 8, ,
         V8(S) __asm__(""
                       : "+v"(q0), "+v"(q1), "+v"(q2), "+v"(q3), "+v"(q4), "+v"(q5), "+v"(q6),
                         "+v"(q7));)
#undef S
    SINK
  }
  {
    DECL_A
#define S(j) a##j = _mm512_permutexvar_ps(_mm512_srlv_epi32(q##j, sh), t);
    BODY("srlv+perm (8 rows)", 8, ,
         V8(S) __asm__(""
                       : "+v"(q0), "+v"(q1), "+v"(q2), "+v"(q3), "+v"(q4), "+v"(q5), "+v"(q6),
                         "+v"(q7));
         __asm__(""
                 : "+v"(a0), "+v"(a1), "+v"(a2), "+v"(a3), "+v"(a4), "+v"(a5), "+v"(a6), "+v"(a7));)
#undef S
    SINK
  }
  {
    __m256 b0 = _mm256_set1_ps(0), b1 = b0, b2 = b0, b3 = b0, b4 = b0, b5 = b0, b6 = b0, b7 = b0;
    __m256i r0 = _mm256_set1_epi32(1), r1 = r0, r2 = r0, r3 = r0, r4 = r0, r5 = r0, r6 = r0,
            r7 = r0;
    __m256i m = _mm256_set1_epi32(3);
#define S(j) r##j = _mm256_ternarylogic_epi32(r##j, m, r0, 0xE8);
    BODY("ternlog ymm (8 chains)", 8, , V8(S) __asm__("" : "+v"(m));)
#undef S
    volatile int z = _mm256_extract_epi32(_mm256_add_epi32(r1, r7), 0);
    (void)z;
    (void)b1;
    (void)b2;
    (void)b3;
    (void)b4;
    (void)b5;
    (void)b6;
    (void)b7;
    (void)b0;
  }
  float f[16];
  _mm512_storeu_ps(f, sink);
  printf("%f\n", f[0]);
}
