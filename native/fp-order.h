// Included first by the files whose float arithmetic must give the same bits on every target
// (the quantized forward's float parts, and the C export's order): a * b + c stays a rounded
// product and a rounded sum, never contracted into one fused multiply-add behind the code's
// back. The build's -ffp-contract=fast (kept for the training kernels) would contract it where
// the target has FMA (any AArch64, x86 functions compiled for FMA), and clang contracts by
// default. Fused multiply-adds these files want are written out (std::fma, _mm*_fmadd_ps).
#pragma once
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif
