// Throughput of single 512-bit instructions on one core: 12 independent chains of one
// instruction, per cycle of a dependent scalar-add loop (twelfth session, ../cpu_kernels.md).
// Not part of the build.
#include <immintrin.h>
#include <chrono>
#include <cstdio>
static double Now(){return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();}
#define N 12
template<class F> double Rate(F f){ double best=0; for(int rep=0;rep<30;++rep){double t0=Now(); long it=f(); double t=Now()-t0; double r=it/t; if(r>best)best=r;} return best;}
int main(){
  // the clock: a dependent chain of scalar adds (one per cycle)
  double clk = Rate([]{ long a=0; long n=20000000; for(long i=0;i<n;++i){ __asm__ volatile("add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0" : "+r"(a)); } return 4*n; });
  printf("clock (dependent scalar adds) %.2f GHz\n", clk/1e9);
  auto run=[&](const char* name, auto body){ double r=Rate(body); printf("%-40s %.2f ops/cycle\n", name, r/clk); };
  run("vpermps", []{ __m512 v[N]; __m512i idx=_mm512_set1_epi32(3); for(int i=0;i<N;++i) v[i]=_mm512_set1_ps(i); long n=1000000; for(long i=0;i<n;++i){ 
#pragma GCC unroll 12
 for(int j=0;j<N;++j){ v[j]=_mm512_permutexvar_ps(idx,v[j]); } __asm__("" : "+v"(idx)); } float s=0; for(int j=0;j<N;++j) s+=_mm512_reduce_add_ps(v[j]); volatile float z=s;(void)z; return n*N; });
  run("vpermps (idx varies, table fixed)", []{ __m512i v[N]; __m512 t=_mm512_set1_ps(1); for(int i=0;i<N;++i) v[i]=_mm512_set1_epi32(i); long n=1000000; for(long i=0;i<n;++i){ 
#pragma GCC unroll 12
 for(int j=0;j<N;++j){ v[j]=_mm512_castps_si512(_mm512_permutexvar_ps(v[j],t)); } } int s=0; for(int j=0;j<N;++j) s+=_mm512_reduce_add_epi32(v[j]); volatile int z=s;(void)z; return n*N; });
  run("vpsrlvd", []{ __m512i v[N]; __m512i sh=_mm512_set1_epi32(0); for(int i=0;i<N;++i) v[i]=_mm512_set1_epi32(i); long n=1000000; for(long i=0;i<n;++i){ 
#pragma GCC unroll 12
 for(int j=0;j<N;++j){ v[j]=_mm512_srlv_epi32(v[j],sh);} __asm__("" : "+v"(sh)); } int s=0; for(int j=0;j<N;++j) s+=_mm512_reduce_add_epi32(v[j]); volatile int z=s;(void)z; return n*N; });
  run("vpsrld imm", []{ __m512i v[N]; for(int i=0;i<N;++i) v[i]=_mm512_set1_epi32(i); long n=1000000; for(long i=0;i<n;++i){ 
#pragma GCC unroll 12
 for(int j=0;j<N;++j){ v[j]=_mm512_srli_epi32(v[j],0); __asm__("" : "+v"(v[j]));} } int s=0; for(int j=0;j<N;++j) s+=_mm512_reduce_add_epi32(v[j]); volatile int z=s;(void)z; return n*N; });
  run("vpshufb", []{ __m512i v[N]; __m512i sh=_mm512_set1_epi32(0x03020100); for(int i=0;i<N;++i) v[i]=_mm512_set1_epi32(i); long n=1000000; for(long i=0;i<n;++i){ 
#pragma GCC unroll 12
 for(int j=0;j<N;++j){ v[j]=_mm512_shuffle_epi8(v[j],sh);} __asm__("" : "+v"(sh)); } int s=0; for(int j=0;j<N;++j) s+=_mm512_reduce_add_epi32(v[j]); volatile int z=s;(void)z; return n*N; });
  run("vpermilps var", []{ __m512 v[N]; __m512i idx=_mm512_set1_epi32(0x0); for(int i=0;i<N;++i) v[i]=_mm512_set1_ps(i); long n=1000000; for(long i=0;i<n;++i){ 
#pragma GCC unroll 12
 for(int j=0;j<N;++j){ v[j]=_mm512_permutevar_ps(v[j],idx); } __asm__("" : "+v"(idx)); } float s=0; for(int j=0;j<N;++j) s+=_mm512_reduce_add_ps(v[j]); volatile float z=s;(void)z; return n*N; });
  run("vpermt2ps", []{ __m512 v[N]; __m512i idx=_mm512_set1_epi32(3); __m512 b=_mm512_set1_ps(2); for(int i=0;i<N;++i) v[i]=_mm512_set1_ps(i); long n=1000000; for(long i=0;i<n;++i){ 
#pragma GCC unroll 12
 for(int j=0;j<N;++j){ v[j]=_mm512_permutex2var_ps(v[j],idx,b); } __asm__("" : "+v"(idx)); } float s=0; for(int j=0;j<N;++j) s+=_mm512_reduce_add_ps(v[j]); volatile float z=s;(void)z; return n*N; });
  run("vpermb", []{ __m512i v[N]; __m512i t=_mm512_set1_epi32(0x01020304); for(int i=0;i<N;++i) v[i]=_mm512_set1_epi32(i); long n=1000000; for(long i=0;i<n;++i){ 
#pragma GCC unroll 12
 for(int j=0;j<N;++j){ __m512i r; __asm__("vpermb %1, %2, %0" : "=v"(r) : "v"(t), "v"(v[j])); v[j]=r;} } int s=0; for(int j=0;j<N;++j) s+=_mm512_reduce_add_epi32(v[j]); volatile int z=s;(void)z; return n*N; });
  run("vfmadd", []{ __m512 v[N]; __m512 a=_mm512_set1_ps(1), b=_mm512_set1_ps(0); for(int i=0;i<N;++i) v[i]=_mm512_set1_ps(i); long n=1000000; for(long i=0;i<n;++i){ 
#pragma GCC unroll 12
 for(int j=0;j<N;++j){ v[j]=_mm512_fmadd_ps(a,b,v[j]); } __asm__("" : "+v"(a)); } float s=0; for(int j=0;j<N;++j) s+=_mm512_reduce_add_ps(v[j]); volatile float z=s;(void)z; return n*N; });
  run("vpternlogd", []{ __m512i v[N]; __m512i a=_mm512_set1_epi32(1), b=_mm512_set1_epi32(2); for(int i=0;i<N;++i) v[i]=_mm512_set1_epi32(i); long n=1000000; for(long i=0;i<n;++i){ 
#pragma GCC unroll 12
 for(int j=0;j<N;++j){ v[j]=_mm512_ternarylogic_epi32(v[j],a,b,0xE8);} __asm__("" : "+v"(a)); } int s=0; for(int j=0;j<N;++j) s+=_mm512_reduce_add_epi32(v[j]); volatile int z=s;(void)z; return n*N; });
  run("vcvtdq2ps", []{ __m512i v[N]; for(int i=0;i<N;++i) v[i]=_mm512_set1_epi32(i); long n=1000000; for(long i=0;i<n;++i){ 
#pragma GCC unroll 12
 for(int j=0;j<N;++j){ v[j]=_mm512_castps_si512(_mm512_cvtepi32_ps(v[j]));} } int s=0; for(int j=0;j<N;++j) s+=_mm512_reduce_add_epi32(v[j]); volatile int z=s;(void)z; return n*N; });
  run("vcvtph2ps zmm<-ymm", []{ __m512 v[N]; for(int i=0;i<N;++i) v[i]=_mm512_set1_ps(i); long n=1000000; for(long i=0;i<n;++i){ 
#pragma GCC unroll 12
 for(int j=0;j<N;++j){ v[j]=_mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_castps_si512(v[j])));} } float s=0; for(int j=0;j<N;++j) s+=_mm512_reduce_add_ps(v[j]); volatile float z=s;(void)z; return n*N; });
  run("vpmovzxbd zmm<-xmm", []{ __m512i v[N]; for(int i=0;i<N;++i) v[i]=_mm512_set1_epi32(i); long n=1000000; for(long i=0;i<n;++i){ 
#pragma GCC unroll 12
 for(int j=0;j<N;++j){ v[j]=_mm512_cvtepu8_epi32(_mm512_castsi512_si128(v[j]));} } int s=0; for(int j=0;j<N;++j) s+=_mm512_reduce_add_epi32(v[j]); volatile int z=s;(void)z; return n*N; });
}
