// Reference GEMM in plain TypeScript: row-major C = alpha * op(A) op(B) + beta * C.

export function sgemmTs(
  transA: boolean,
  transB: boolean,
  M: number,
  N: number,
  K: number,
  alpha: number,
  A: Float32Array,
  aOff: number,
  lda: number,
  B: Float32Array,
  bOff: number,
  ldb: number,
  beta: number,
  C: Float32Array,
  cOff: number,
  ldc: number,
): void {
  const row = new Float64Array(N);
  for (let i = 0; i < M; i++) {
    row.fill(0);
    for (let k = 0; k < K; k++) {
      const a = transA ? A[aOff + k * lda + i] : A[aOff + i * lda + k];
      if (a === 0) continue;
      if (transB) {
        for (let j = 0; j < N; j++) row[j] += a * B[bOff + j * ldb + k];
      } else {
        const b0 = bOff + k * ldb;
        for (let j = 0; j < N; j++) row[j] += a * B[b0 + j];
      }
    }
    const c0 = cOff + i * ldc;
    for (let j = 0; j < N; j++) {
      C[c0 + j] = alpha * row[j] + (beta === 0 ? 0 : beta * C[c0 + j]);
    }
  }
}
