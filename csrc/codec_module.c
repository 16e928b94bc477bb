/* cnnzip._codec: the CPython binding of the .cnnz coders (codec_*.c). It checks every
 * buffer's size and dtype, releases the GIL around the work, and turns a corrupt stream
 * into StreamError (which cnnzip.codec turns into CnnzFormatError). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#include "codec.h"

static PyObject *StreamError;

static const char *MESSAGES[CC_NCODES] = {
    [CC_OK] = "ok",
    [CC_NOMEM] = "out of memory",
    [CC_RANS_SHORT] = "rANS stream is shorter than its lane states",
    [CC_RANS_VARINT] = "rANS lane word counts are truncated or longer than 4 bytes",
    [CC_RANS_HALF_WORD] = "rANS stream ends in half a word",
    [CC_RANS_COUNTS] = "rANS lane word counts exceed the stream",
    [CC_RANS_END] = "rANS stream does not end where its symbols do (corrupt data)",
    [CC_RANS_TABLE] = "rANS frequencies do not sum to 2**16",
    [CC_SYMBOL] = "stream symbol outside its table",
    [CC_HUFF_SHORT] = "Huffman stream ends before all its symbols",
    [CC_HUFF_SPARE] = "Huffman stream does not end where its symbols do (bits to spare: corrupt data)",
    [CC_HUFF_TABLE] = "Huffman code table is not canonical",
    [CC_GAPS] = "relative indices do not fit the tensor (positions past its end, a filler "
                "after the last weight, or another count of weights than the header's)",
};

static PyObject *fail(int rc) {
    if (rc == CC_NOMEM) return PyErr_NoMemory();
    PyErr_SetString(StreamError, rc > 0 && rc < CC_NCODES ? MESSAGES[rc] : "corrupt stream");
    return NULL;
}

/* A C-contiguous buffer whose struct format is one of `formats` (e.g. "BH"), of exactly
 * `count` items when count >= 0. */
static int get(PyObject *obj, Py_buffer *v, int writable, const char *formats, Py_ssize_t count,
               const char *what) {
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, v, flags) < 0) return -1;
    const char *f = v->format ? v->format : "B";
    if (*f == '<' || *f == '=' || *f == '@') f++;
    if (strlen(f) != 1 || !strchr(formats, *f)) {
        PyErr_Format(PyExc_TypeError, "%s has format %s, expected one of %s", what, v->format,
                     formats);
        PyBuffer_Release(v);
        return -1;
    }
    if (count >= 0 && v->len / v->itemsize != count) {
        PyErr_Format(PyExc_ValueError, "%s has %zd items, expected %zd", what,
                     v->len / v->itemsize, count);
        PyBuffer_Release(v);
        return -1;
    }
    return 0;
}

static cc_syms syms_of(Py_buffer *v) { return (cc_syms){v->buf, v->itemsize == 2}; }

#define I64 "lq"

static PyObject *py_rans_decode(PyObject *self, PyObject *args) {
    PyObject *data_o, *freq_o, *out_o;
    Py_ssize_t n;
    (void)self;
    if (!PyArg_ParseTuple(args, "OnOO", &data_o, &n, &freq_o, &out_o)) return NULL;
    if (n < 0) return PyErr_Format(PyExc_ValueError, "n must be >= 0");
    Py_buffer data, freq, out;
    if (get(data_o, &data, 0, "Bbc", -1, "data") < 0) return NULL;
    if (get(freq_o, &freq, 0, I64, -1, "freq") < 0) goto fail_data;
    if (get(out_o, &out, 1, "BH", n, "out") < 0) goto fail_freq;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = cc_rans_decode(data.buf, (size_t)data.len, (size_t)n, freq.buf, (size_t)(freq.len / 8),
                        syms_of(&out));
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&out);
    PyBuffer_Release(&freq);
    PyBuffer_Release(&data);
    if (rc) return fail(rc);
    Py_RETURN_NONE;
fail_freq:
    PyBuffer_Release(&freq);
fail_data:
    PyBuffer_Release(&data);
    return NULL;
}

static PyObject *py_rans_encode(PyObject *self, PyObject *args) {
    PyObject *obj[5];
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOOO", &obj[0], &obj[1], &obj[2], &obj[3], &obj[4]))
        return NULL;
    Py_buffer v[5];
    const char *fmt[5] = {"BH", I64, "B", I64, "H"};
    const char *what[5] = {"symbols", "freq", "states", "counts", "words"};
    size_t n = 0, lanes = 1, nwords = 0;
    int got = 0, rc = CC_OK;
    for (; got < 5; got++) {
        Py_ssize_t want[5] = {-1, -1, (Py_ssize_t)(6 * lanes), (Py_ssize_t)lanes, (Py_ssize_t)n};
        if (get(obj[got], &v[got], got >= 2, fmt[got], want[got], what[got]) < 0) break;
        if (got == 0) {
            n = (size_t)(v[0].len / v[0].itemsize);
            lanes = cc_rans_lanes(n);
        }
    }
    if (got == 5) {
        Py_BEGIN_ALLOW_THREADS
        rc = cc_rans_encode(syms_of(&v[0]), n, v[1].buf, (size_t)(v[1].len / 8), v[2].buf,
                            v[3].buf, v[4].buf, &nwords);
        Py_END_ALLOW_THREADS
    }
    int complete = got == 5;
    while (got-- > 0) PyBuffer_Release(&v[got]);
    if (!complete) return NULL;
    if (rc) return fail(rc);
    return PyLong_FromSize_t(nwords);
}

static PyObject *py_huff_decode(PyObject *self, PyObject *args) {
    PyObject *body_o, *bounds_o, *lj_o, *lens_o, *syms_o, *out_o;
    Py_ssize_t block, n;
    int width;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOnnOOOiO", &body_o, &bounds_o, &block, &n, &lj_o, &lens_o,
                          &syms_o, &width, &out_o))
        return NULL;
    if (block < 1 || n < 0) return PyErr_Format(PyExc_ValueError, "block >= 1 and n >= 0");
    Py_ssize_t nblocks = (n + block - 1) / block;
    Py_buffer v[6];
    const char *fmt[6] = {"Bbc", I64, I64, I64, I64, "BH"};
    const char *what[6] = {"body", "bounds", "lj", "lens", "syms", "out"};
    PyObject *obj[6] = {body_o, bounds_o, lj_o, lens_o, syms_o, out_o};
    Py_ssize_t want[6] = {-1, nblocks + 1, -1, -1, -1, n};
    int got = 0;
    for (; got < 6; got++)
        if (get(obj[got], &v[got], got == 5, fmt[got], want[got], what[got]) < 0) break;
    int rc = CC_OK;
    if (got == 6 && (v[3].len != v[2].len || v[4].len != v[2].len)) rc = CC_HUFF_TABLE;
    if (got == 6 && rc == CC_OK) {
        Py_BEGIN_ALLOW_THREADS
        rc = cc_huff_decode(v[0].buf, (size_t)v[0].len, v[1].buf, (size_t)nblocks, (size_t)block,
                            (size_t)n, v[2].buf, v[3].buf, v[4].buf, (size_t)(v[2].len / 8), width,
                            syms_of(&v[5]));
        Py_END_ALLOW_THREADS
    }
    int complete = got == 6;
    while (got-- > 0) PyBuffer_Release(&v[got]);
    if (!complete) return NULL;
    if (rc) return fail(rc);
    Py_RETURN_NONE;
}

static PyObject *py_huff_encode(PyObject *self, PyObject *args) {
    PyObject *in_o, *code_o, *lens_o, *bits_o, *offsets_o;
    Py_ssize_t block;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOnOO", &in_o, &code_o, &lens_o, &block, &bits_o, &offsets_o))
        return NULL;
    if (block < 1) return PyErr_Format(PyExc_ValueError, "block must be >= 1");
    Py_buffer v[5];
    const char *fmt[5] = {"BH", I64, I64, "B", "I"};
    const char *what[5] = {"symbols", "code", "lens", "bits", "offsets"};
    PyObject *obj[5] = {in_o, code_o, lens_o, bits_o, offsets_o};
    int got = 0;
    for (; got < 5; got++)
        if (get(obj[got], &v[got], got >= 3, fmt[got], -1, what[got]) < 0) break;
    int rc = CC_OK;
    if (got == 5) {
        size_t n = (size_t)(v[0].len / v[0].itemsize), nsym = (size_t)(v[1].len / 8);
        size_t nblocks = (n + (size_t)block - 1) / (size_t)block;
        uint64_t bits = 0;
        const int64_t *lens = v[2].buf;
        if (v[2].len != v[1].len) rc = CC_HUFF_TABLE;
        for (size_t i = 0; rc == CC_OK && i < n; i++) { /* the exact size, checked first */
            uint32_t s = cc_get(syms_of(&v[0]), i);
            if (s >= nsym || lens[s] < 1 || lens[s] > 24) rc = CC_SYMBOL;
            else bits += (uint64_t)lens[s];
        }
        if (rc == CC_OK && ((uint64_t)v[3].len != (bits + 7) / 8 ||
                            (size_t)(v[4].len / 4) != (nblocks ? nblocks - 1 : 0))) {
            PyErr_SetString(PyExc_ValueError, "bits or offsets buffer of the wrong size");
            rc = -1;
        }
        if (rc == CC_OK) {
            memset(v[3].buf, 0, (size_t)v[3].len);
            Py_BEGIN_ALLOW_THREADS
            rc = cc_huff_encode(syms_of(&v[0]), n, v[1].buf, lens, nsym, (size_t)block, v[3].buf,
                                v[4].buf);
            Py_END_ALLOW_THREADS
        }
    }
    int complete = got == 5;
    while (got-- > 0) PyBuffer_Release(&v[got]);
    if (!complete || rc < 0) return NULL;
    if (rc) return fail(rc);
    Py_RETURN_NONE;
}

static PyObject *py_expand(PyObject *self, PyObject *args) {
    PyObject *gaps_o, *codes_o, *values_o, *out_o;
    int p;
    Py_ssize_t count;
    (void)self;
    if (!PyArg_ParseTuple(args, "OiOOnO", &gaps_o, &p, &codes_o, &values_o, &count, &out_o))
        return NULL;
    if (count < 0) return PyErr_Format(PyExc_ValueError, "count must be >= 0");
    int has_codes = codes_o != Py_None;
    Py_buffer v[4];
    const char *fmt[4] = {"BH", "BH", "f", "f"};
    const char *what[4] = {"gaps", "codes", "values", "out"};
    PyObject *obj[4] = {gaps_o, codes_o, values_o, out_o};
    Py_ssize_t want[4] = {-1, count, -1, -1};
    int got = 0;
    for (; got < 4; got++) {
        if (got == 1 && !has_codes) {
            v[1].buf = NULL;
            v[1].itemsize = 1;
            continue;
        }
        if (get(obj[got], &v[got], got == 3, fmt[got], want[got], what[got]) < 0) break;
    }
    int rc = CC_OK;
    if (got == 4) {
        Py_BEGIN_ALLOW_THREADS
        rc = cc_expand(syms_of(&v[0]), (size_t)(v[0].len / v[0].itemsize), p, syms_of(&v[1]),
                       v[2].buf, (size_t)(v[2].len / 4), (size_t)count, v[3].buf,
                       (size_t)(v[3].len / 4));
        Py_END_ALLOW_THREADS
    }
    int complete = got == 4;
    while (got-- > 0)
        if (got != 1 || has_codes) PyBuffer_Release(&v[got]);
    if (!complete) return NULL;
    if (rc) return fail(rc);
    Py_RETURN_NONE;
}

static PyObject *py_histogram(PyObject *self, PyObject *args) {
    PyObject *in_o, *counts_o;
    (void)self;
    if (!PyArg_ParseTuple(args, "OO", &in_o, &counts_o)) return NULL;
    Py_buffer in, counts;
    if (get(in_o, &in, 0, "BH", -1, "symbols") < 0) return NULL;
    if (get(counts_o, &counts, 1, I64, -1, "counts") < 0) {
        PyBuffer_Release(&in);
        return NULL;
    }
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = cc_histogram(syms_of(&in), (size_t)(in.len / in.itemsize), counts.buf,
                      (size_t)(counts.len / 8));
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&counts);
    PyBuffer_Release(&in);
    if (rc) return fail(rc);
    Py_RETURN_NONE;
}

static PyMethodDef METHODS[] = {
    {"histogram", py_histogram, METH_VARARGS,
     "histogram(symbols uint8/uint16, counts int64[alphabet]): count each symbol"},
    {"rans_decode", py_rans_decode, METH_VARARGS,
     "rans_decode(data, n, freq int64, out uint8/uint16[n]): decode one rANS stream"},
    {"rans_encode", py_rans_encode, METH_VARARGS,
     "rans_encode(symbols, freq, states uint8[6*lanes], counts int64[lanes], words uint16[n]) "
     "-> words used"},
    {"huff_decode", py_huff_decode, METH_VARARGS,
     "huff_decode(body, bounds int64, block, n, lj, lens, syms, width, out): canonical Huffman"},
    {"huff_encode", py_huff_encode, METH_VARARGS,
     "huff_encode(symbols, code int64, lens int64, block, bits uint8, offsets uint32)"},
    {"expand", py_expand, METH_VARARGS,
     "expand(gaps, p, codes or None, values float32, count, out float32): relative indices "
     "to a dense tensor (out zeroed by the caller)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef MODULE = {PyModuleDef_HEAD_INIT, "cnnzip._codec",
                                    "Compiled .cnnz coders (see csrc/codec.h).", -1, METHODS};

PyMODINIT_FUNC PyInit__codec(void) {
    PyObject *m = PyModule_Create(&MODULE);
    if (!m) return NULL;
    StreamError = PyErr_NewException("cnnzip._codec.StreamError", PyExc_ValueError, NULL);
    if (!StreamError || PyModule_AddObjectRef(m, "StreamError", StreamError) < 0) {
        Py_XDECREF(StreamError);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
