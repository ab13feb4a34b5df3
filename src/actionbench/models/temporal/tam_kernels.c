/* TAM's aggregation and its backward, fused for CPUs: one read of each input and one write of each output.
 *
 * out[t] = ReLU(w0 x[t-1] + w1 x[t] + w2 x[t+1]) on (N, T, frame) activations, zero outside the clip. A frame is
 * `rows` x `cols`, contiguous; a channel is a row (NCHW frames: C rows of H*W) or a column (channels_last frames:
 * H*W rows of C). Weights are (3, C). A "line" is one row of one clip followed through its T frames; OpenMP threads
 * take ranges of lines (torch's own OpenMP runtime: libgomp.so.1 is already loaded, so no second thread pool).
 * Built by actionbench/models/native.py and called through ctypes: no Python or torch headers, it compiles in
 * about a second.
 *
 * Backward, per line: g[t] = grad[t] * (out[t] > 0) lives in a ring of three rows, never in memory;
 * grad_x[s] = w1 g[s] + w0 g[s+1] + w2 g[s-1]; the weight gradients (the sums of g[t] x[t-1], g[t] x[t],
 * g[t] x[t+1] per channel) are summed over a frame's row in REAL, then in double per fixed range of lines: the same
 * result on any number of threads.
 */
#include <stdint.h>

#ifndef REAL

#define REAL float
#define NAME(f) f##_f32
#include "tam_kernels.c" /* this file again, for the other type */
#undef REAL
#undef NAME

#define REAL double
#define NAME(f) f##_f64
#include "tam_kernels.c" /* this file again, for the other type */

#else

static void NAME(forward_lines)(const REAL *x, const REAL *w, REAL *out, int64_t frames, int64_t rows,
                                int64_t cols, int channel_rows, int64_t first, int64_t last) {
    const int64_t frame = rows * cols, channels = channel_rows ? rows : cols;
    const REAL *w0 = w, *w1 = w + channels, *w2 = w + 2 * channels;
    for (int64_t line = first; line < last; ++line) {
        const int64_t clip = line / rows, row = line % rows, start = clip * frames * frame + row * cols;
        for (int64_t t = 0; t < frames; ++t) {
            const REAL *cur = x + start + t * frame;
            /* At the clip's ends the missing neighbour's weight is zero and `cur` stands in for it. */
            const REAL *prev = t > 0 ? cur - frame : cur, *next = t < frames - 1 ? cur + frame : cur;
            const REAL use_prev = t > 0, use_next = t < frames - 1;
            REAL *o = out + start + t * frame;
            if (channel_rows) {
                const REAL a = use_prev * w0[row], b = w1[row], c = use_next * w2[row];
#pragma omp simd
                for (int64_t i = 0; i < cols; ++i) {
                    const REAL v = a * prev[i] + b * cur[i] + c * next[i];
                    o[i] = v > 0 ? v : 0;
                }
            } else {
#pragma omp simd
                for (int64_t i = 0; i < cols; ++i) {
                    const REAL v = use_prev * w0[i] * prev[i] + w1[i] * cur[i] + use_next * w2[i] * next[i];
                    o[i] = v > 0 ? v : 0;
                }
            }
        }
    }
}

static void NAME(backward_lines)(const REAL *grad, const REAL *x, const REAL *w, const REAL *out, REAL *grad_x,
                                 double *wsum, REAL *ring, int64_t frames, int64_t rows, int64_t cols,
                                 int channel_rows, int64_t first, int64_t last) {
    const int64_t frame = rows * cols, channels = channel_rows ? rows : cols;
    const REAL *w0 = w, *w1 = w + channels, *w2 = w + 2 * channels;
    double *s0 = wsum, *s1 = wsum ? wsum + channels : 0, *s2 = wsum ? wsum + 2 * channels : 0;
    for (int64_t line = first; line < last; ++line) {
        const int64_t clip = line / rows, row = line % rows, start = clip * frames * frame + row * cols;
        for (int64_t t = -1; t < frames; ++t) {
            if (t + 1 < frames) { /* g[t+1] into the ring */
                const REAL *gr = grad + start + (t + 1) * frame, *ou = out + start + (t + 1) * frame;
                REAL *g = ring + ((t + 2) % 3) * cols;
#pragma omp simd
                for (int64_t i = 0; i < cols; ++i) {
                    const REAL v = gr[i]; /* read unconditionally: a conditional read does not vectorise */
                    g[i] = ou[i] > 0 ? v : 0;
                }
            }
            if (t < 0)
                continue;
            const REAL *gc = ring + ((t + 1) % 3) * cols;
            const REAL *gp = t > 0 ? ring + (t % 3) * cols : gc;
            const REAL *gn = t < frames - 1 ? ring + ((t + 2) % 3) * cols : gc;
            const REAL use_prev = t > 0, use_next = t < frames - 1;
            const REAL *xc = x + start + t * frame;
            const REAL *xp = t > 0 ? xc - frame : xc, *xn = t < frames - 1 ? xc + frame : xc;
            if (grad_x) { /* x[t] fed out[t+1] through w0 and out[t-1] through w2 */
                REAL *gx = grad_x + start + t * frame;
                if (channel_rows) {
                    const REAL a = use_next * w0[row], b = w1[row], c = use_prev * w2[row];
#pragma omp simd
                    for (int64_t i = 0; i < cols; ++i)
                        gx[i] = a * gn[i] + b * gc[i] + c * gp[i];
                } else {
#pragma omp simd
                    for (int64_t i = 0; i < cols; ++i)
                        gx[i] = use_next * w0[i] * gn[i] + w1[i] * gc[i] + use_prev * w2[i] * gp[i];
                }
            }
            if (!wsum)
                continue;
            if (channel_rows) {
                REAL a = 0, b = 0, c = 0;
#pragma omp simd reduction(+ : a, b, c)
                for (int64_t i = 0; i < cols; ++i) {
                    a += gc[i] * xp[i];
                    b += gc[i] * xc[i];
                    c += gc[i] * xn[i];
                }
                s0[row] += use_prev * a;
                s1[row] += b;
                s2[row] += use_next * c;
            } else {
#pragma omp simd
                for (int64_t i = 0; i < cols; ++i) {
                    s0[i] += use_prev * gc[i] * xp[i];
                    s1[i] += gc[i] * xc[i];
                    s2[i] += use_next * gc[i] * xn[i];
                }
            }
        }
    }
}

void NAME(tam_forward)(const REAL *x, const REAL *w, REAL *out, int64_t clips, int64_t frames, int64_t rows,
                       int64_t cols, int channel_rows, int threads) {
    const int64_t lines = clips * rows, pieces = lines < 4 * threads ? lines : 4 * threads;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t k = 0; k < pieces; ++k)
        NAME(forward_lines)(x, w, out, frames, rows, cols, channel_rows, lines * k / pieces,
                            lines * (k + 1) / pieces);
}

/* grad_x or wsum may be NULL (not needed). wsum: (pieces, 3, C) zeros; ring: pieces * 3 * cols scratch values.
 * The pieces are fixed ranges of lines, whatever the number of threads: sum wsum over pieces in order. */
void NAME(tam_backward)(const REAL *grad, const REAL *x, const REAL *w, const REAL *out, REAL *grad_x,
                        double *wsum, REAL *ring, int64_t clips, int64_t frames, int64_t rows, int64_t cols,
                        int channel_rows, int64_t pieces, int threads) {
    const int64_t lines = clips * rows, channels = channel_rows ? rows : cols;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t k = 0; k < pieces; ++k)
        NAME(backward_lines)(grad, x, w, out, grad_x, wsum ? wsum + k * 3 * channels : 0, ring + k * 3 * cols,
                             frames, rows, cols, channel_rows, lines * k / pieces, lines * (k + 1) / pieces);
}

#endif
