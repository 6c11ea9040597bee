// The latency distribution for loop-bench's CDF pictures, shared by the C peers: the
// value at each percentile of loop-bench's list (1 … 99, 99.5, 99.9; `cdfPercentiles`
// in Sources/loop-bench/Report.swift), nearest rank, printed as " cdf_us=a,b,..." (µs).
#ifndef LOOP_BENCH_CDF_H
#define LOOP_BENCH_CDF_H
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

static void print_cdf(const int64_t *sorted_ns, size_t n) {
    if (n == 0) return;
    printf(" cdf_us=");
    for (int i = 0; i < 101; i++) {
        double point = i < 99 ? i + 1 : (i == 99 ? 99.5 : 99.9);
        size_t rank = (size_t)ceil(point / 100.0 * (double)n);
        if (rank < 1) rank = 1;
        if (rank > n) rank = n;
        printf("%s%.1f", i ? "," : "", sorted_ns[rank - 1] / 1000.0);
    }
}
#endif
