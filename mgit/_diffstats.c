/*
 * mgit._diffstats: the statistics of the difference of two runs of tensor elements, in one
 * pass (mgit.diff.stats.StatsAccumulator; its numpy code is the fallback when this module is
 * not built, and gives the same numbers up to the order of float64 additions).
 *
 * pair_stats(a, a_code, b, b_code, out) reads n elements of each side (codes: 'f' float32,
 * 'd' float64, 'b' bfloat16, all little-endian), widens them to double and returns
 *     (ss_a, ss_b, ss_d, dot, sum_abs, max_abs, changed, nonfinite_a, nonfinite_b, finite_pairs)
 * over the pairs where both sides are finite (ss: sums of squares, d = b - a, dot = sum a*b),
 * with changed counting every pair whose values differ (NaN equals NaN) and the nonfinite
 * counts per side. When out (a writable buffer of n float32) is given, it receives d, or 0
 * where either side (or d) is not finite: the difference matrix of the rank estimate.
 *
 * Blocks of BLOCK elements are summed first assuming every element is finite, in four lanes of
 * float64 (branch-free, vectorized); a block where x - x is not 0 for some
 * element (an inf or a NaN) is summed again element by element with the masks. The GIL is
 * released around the loop.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <math.h>
#include <stdint.h>
#include <string.h>

#define BLOCK 4096

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) && \
    !defined(MGIT_NO_CLONES)
#define HOT __attribute__((target_clones("avx2", "default")))
#else
#define HOT
#endif

typedef struct {
    double ss_a, ss_b, ss_d, dot, sum_abs, max_abs;
    long long changed, nonfinite_a, nonfinite_b, finite_pairs;
} stats_t;

static inline double load(const uint8_t *p, char code, size_t i) {
    if (code == 'f') {
        float v;
        memcpy(&v, p + 4 * i, 4);
        return (double)v;
    }
    if (code == 'd') {
        double v;
        memcpy(&v, p + 8 * i, 8);
        return v;
    }
    uint16_t h;
    memcpy(&h, p + 2 * i, 2);
    uint32_t w = (uint32_t)h << 16;
    float v;
    memcpy(&v, &w, 4);
    return (double)v;
}

/* Widen one block of up to BLOCK elements into x. */
static HOT void widen(const uint8_t *p, char code, size_t start, size_t n, double *x) {
    size_t i;
    if (code == 'f') {
        const uint8_t *q = p + 4 * start;
        for (i = 0; i < n; i++) {
            float v;
            memcpy(&v, q + 4 * i, 4);
            x[i] = (double)v;
        }
    } else if (code == 'd') {
        memcpy(x, p + 8 * start, 8 * n);
    } else {
        for (i = 0; i < n; i++) x[i] = load(p, code, start + i);
    }
}

typedef double v4d __attribute__((vector_size(32)));
typedef long long v4l __attribute__((vector_size(32)));

/* Macros, not functions: a vector argument or return value would depend on the clone's ABI. */
#define HSUM(v) (((v)[0] + (v)[1]) + ((v)[2] + (v)[3]))

/* Sums of one block assuming every element is finite; returns 0 if one is not. Four lanes
 * (GCC vector extensions: AVX2 where the clone runs, else two SSE2 halves), so the sums are
 * four interleaved float64 sums. */
static HOT int block_fast(const double *a, const double *b, size_t n, float *out, stats_t *s) {
    const v4d zero = {0, 0, 0, 0};
    const v4l absmask = {0x7fffffffffffffffLL, 0x7fffffffffffffffLL, 0x7fffffffffffffffLL,
                         0x7fffffffffffffffLL};
    v4d sa = zero, sb = zero, sd = zero, dt = zero, ab = zero, mx = zero, bad = zero;
    v4l ch = {0, 0, 0, 0};
    size_t i, n4 = n & ~(size_t)3;
    for (i = 0; i < n4; i += 4) {
        v4d x, y;
        memcpy(&x, a + i, sizeof x);
        memcpy(&y, b + i, sizeof y);
        v4d d = y - x;
        v4d ad = (v4d)((v4l)d & absmask);
        bad += (x - x) + (y - y); /* NaN as soon as one element is inf or NaN */
        sa += x * x;
        sb += y * y;
        sd += d * d;
        dt += x * y;
        ab += ad;
        v4l gt = ad > mx;
        mx = (v4d)(((v4l)ad & gt) | ((v4l)mx & ~gt));
        ch -= (d != zero);
    }
    double bad1 = HSUM(bad), sa1 = 0, sb1 = 0, sd1 = 0, dt1 = 0, ab1 = 0, mx1 = 0;
    long long ch1 = 0;
    for (; i < n; i++) {
        double x = a[i], y = b[i];
        double d = y - x;
        double ad = fabs(d);
        bad1 += (x - x) + (y - y);
        sa1 += x * x;
        sb1 += y * y;
        sd1 += d * d;
        dt1 += x * y;
        ab1 += ad;
        mx1 = ad > mx1 ? ad : mx1;
        ch1 += d != 0.0;
    }
    if (bad1 != 0.0) return 0;
    s->ss_a += HSUM(sa) + sa1;
    s->ss_b += HSUM(sb) + sb1;
    s->ss_d += HSUM(sd) + sd1;
    s->dot += HSUM(dt) + dt1;
    s->sum_abs += HSUM(ab) + ab1;
    for (int j = 0; j < 4; j++) {
        if (mx[j] > mx1) mx1 = mx[j];
    }
    if (mx1 > s->max_abs) s->max_abs = mx1;
    s->changed += ch[0] + ch[1] + ch[2] + ch[3] + ch1;
    s->finite_pairs += (long long)n;
    if (out != NULL) {
        for (i = 0; i < n; i++) {
            double d = b[i] - a[i];
            out[i] = isfinite(d) ? (float)d : 0.0f;
        }
    }
    return 1;
}

/* One block element by element, with the non-finite rules. */
static void block_masked(const double *a, const double *b, size_t n, float *out, stats_t *s) {
    size_t i;
    for (i = 0; i < n; i++) {
        double x = a[i], y = b[i];
        int fa = isfinite(x), fb = isfinite(y);
        if (!fa) s->nonfinite_a++;
        if (!fb) s->nonfinite_b++;
        if (!(x == y || (isnan(x) && isnan(y)))) s->changed++;
        if (!(fa && fb)) {
            if (out != NULL) out[i] = 0.0f;
            continue;
        }
        double d = y - x;
        double ad = fabs(d);
        s->finite_pairs++;
        s->ss_a += x * x;
        s->ss_b += y * y;
        s->ss_d += d * d;
        s->dot += x * y;
        s->sum_abs += ad;
        if (ad > s->max_abs) s->max_abs = ad;
        if (out != NULL) out[i] = isfinite(d) ? (float)d : 0.0f;
    }
}

static int itemsize_of(char code) {
    switch (code) {
        case 'f': return 4;
        case 'd': return 8;
        case 'b': return 2;
        default: return 0;
    }
}

static PyObject *py_pair_stats(PyObject *self, PyObject *args) {
    PyObject *a_obj, *b_obj, *out_obj = Py_None;
    int a_code, b_code;
    Py_buffer a, b, out;
    int have_out = 0;
    PyObject *result = NULL;
    stats_t s;
    (void)self;
    if (!PyArg_ParseTuple(args, "OCOC|O:pair_stats", &a_obj, &a_code, &b_obj, &b_code, &out_obj))
        return NULL;
    int ka = itemsize_of((char)a_code), kb = itemsize_of((char)b_code);
    if (ka == 0 || kb == 0) {
        PyErr_SetString(PyExc_ValueError, "element codes are 'f' (float32), 'd' (float64), 'b' (bfloat16)");
        return NULL;
    }
    if (PyObject_GetBuffer(a_obj, &a, PyBUF_SIMPLE) < 0) return NULL;
    if (PyObject_GetBuffer(b_obj, &b, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&a);
        return NULL;
    }
    size_t n = (size_t)a.len / (size_t)ka;
    if ((size_t)a.len % (size_t)ka != 0 || (size_t)b.len != n * (size_t)kb) {
        PyErr_SetString(PyExc_ValueError, "the two sides must hold the same number of whole elements");
        goto done;
    }
    if (out_obj != Py_None) {
        if (PyObject_GetBuffer(out_obj, &out, PyBUF_SIMPLE | PyBUF_WRITABLE) < 0) goto done;
        have_out = 1;
        if ((size_t)out.len != n * 4) {
            PyErr_SetString(PyExc_ValueError, "out must hold one float32 per element");
            goto done;
        }
    }
    memset(&s, 0, sizeof s);
    {
        const uint8_t *pa = (const uint8_t *)a.buf, *pb = (const uint8_t *)b.buf;
        float *po = have_out ? (float *)out.buf : NULL;
        char ca = (char)a_code, cb = (char)b_code;
        int oom = 0;
        Py_BEGIN_ALLOW_THREADS
        double *xa = (double *)PyMem_RawMalloc(2 * BLOCK * sizeof(double));
        if (xa == NULL) {
            oom = 1;
        } else {
            double *xb = xa + BLOCK;
            for (size_t start = 0; start < n; start += BLOCK) {
                size_t m = n - start < BLOCK ? n - start : BLOCK;
                widen(pa, ca, start, m, xa);
                widen(pb, cb, start, m, xb);
                float *o = po != NULL ? po + start : NULL;
                if (!block_fast(xa, xb, m, o, &s)) block_masked(xa, xb, m, o, &s);
            }
            PyMem_RawFree(xa);
        }
        Py_END_ALLOW_THREADS
        if (oom) {
            PyErr_NoMemory();
            goto done;
        }
    }
    result = Py_BuildValue("(ddddddLLLL)", s.ss_a, s.ss_b, s.ss_d, s.dot, s.sum_abs, s.max_abs,
                           s.changed, s.nonfinite_a, s.nonfinite_b, s.finite_pairs);
done:
    if (have_out) PyBuffer_Release(&out);
    PyBuffer_Release(&b);
    PyBuffer_Release(&a);
    return result;
}

static PyMethodDef methods[] = {
    {"pair_stats", py_pair_stats, METH_VARARGS,
     "pair_stats(a, a_code, b, b_code, out=None) -> (ss_a, ss_b, ss_d, dot, sum_abs, max_abs,\n"
     "changed, nonfinite_a, nonfinite_b, finite_pairs)\n\n"
     "Codes 'f', 'd', 'b' (float32, float64, bfloat16); out: None or n writable float32."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "mgit._diffstats",
    "One-pass statistics of the difference of two runs of tensor elements (see mgit/_diffstats.c).",
    -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__diffstats(void) { return PyModule_Create(&module); }
