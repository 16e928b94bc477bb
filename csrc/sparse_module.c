/* cnnzip._sparse: the one thin CPython binding of the compressed-domain kernels.
 *
 * A layer is prepared once into a capsule that holds references to four immutable
 * bytes objects (no copy: the layer's resident weight bytes are the layout's own)
 * after cs_check has verified every entry; the capsule cannot be made from Python,
 * so the kernels may trust it. Inputs and outputs come through the buffer protocol
 * (numpy arrays, torch tensors via .numpy()), their sizes checked on every call. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#include "paths.h"
#include "sparse.h"

static const char *PATH_NAMES[CS_NPATHS] = {"portable", "avx2"};
static const char *CAPSULE = "cnnzip._sparse.layer";
static const char *CSR_CAPSULE = "cnnzip._sparse.csr";

typedef struct {
    cs_layer layer;      /* a CAPSULE */
    cs_csr csr;          /* a CSR_CAPSULE */
    PyObject *owners[4]; /* the bytes objects the pointers point into */
} prepared;

static int path_of(const char *name) {
    return path_index(name, PATH_NAMES, CS_NPATHS, cs_path_supported, "portable, avx2");
}

static PyObject *py_paths(PyObject *self, PyObject *args) {
    (void)self;
    (void)args;
    return path_list(PATH_NAMES, CS_NPATHS, cs_path_supported);
}

static PyObject *py_best_path(PyObject *self, PyObject *args) {
    (void)self;
    (void)args;
    return PyUnicode_FromString(PATH_NAMES[cs_best_path()]);
}

static PyObject *wrap(prepared *p, PyObject *owners[4], const char *name);
static int get_floats(PyObject *obj, Py_buffer *view, Py_ssize_t count, int writable,
                      const char *what);

static void release(PyObject *capsule) {
    prepared *p = (prepared *)PyCapsule_GetPointer(capsule, PyCapsule_GetName(capsule));
    if (!p) return;
    for (int i = 0; i < 4; i++) Py_XDECREF(p->owners[i]);
    PyMem_Free(p);
}

/* A bytes object of `bytes` bytes (any multiple of `unit` when bytes < 0). */
static int check_bytes(PyObject *obj, Py_ssize_t bytes, Py_ssize_t unit, const char *what) {
    if (!PyBytes_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s must be bytes", what);
        return -1;
    }
    Py_ssize_t n = PyBytes_GET_SIZE(obj);
    if ((bytes >= 0 && n != bytes) || (bytes < 0 && n % unit)) {
        PyErr_Format(PyExc_ValueError, "%s has %zd bytes, expected %zd", what, n,
                     bytes >= 0 ? bytes : unit);
        return -1;
    }
    return 0;
}

static PyObject *py_prepare(PyObject *self, PyObject *args) {
    PyObject *stream, *row_len, *codebook, *bias;
    long long rows, fan_in;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOOLL", &stream, &row_len, &codebook, &bias, &rows, &fan_in))
        return NULL;
    if (rows < 1 || fan_in < 1 || rows > (1LL << 40) || fan_in > (1LL << 40)) {
        PyErr_SetString(PyExc_ValueError, "prepare: rows and fan_in must be in 1..2**40");
        return NULL;
    }
    if (check_bytes(stream, -1, 3, "stream") < 0 ||
        check_bytes(row_len, (Py_ssize_t)rows * 4, 0, "row_len") < 0 ||
        check_bytes(codebook, -1, 4, "codebook") < 0 ||
        check_bytes(bias, (Py_ssize_t)rows * 4, 0, "bias") < 0)
        return NULL;
    Py_ssize_t k = PyBytes_GET_SIZE(codebook) / 4;
    if (k < 1 || k > 256) {
        PyErr_Format(PyExc_ValueError, "codebook has %zd entries, expected 1..256", k);
        return NULL;
    }
    prepared *p = PyMem_Calloc(1, sizeof(prepared));
    if (!p) return PyErr_NoMemory();
    p->layer = (cs_layer){rows,
                          fan_in,
                          k,
                          PyBytes_GET_SIZE(stream) / 3,
                          (const uint8_t *)PyBytes_AS_STRING(stream),
                          (const uint32_t *)PyBytes_AS_STRING(row_len),
                          (const float *)PyBytes_AS_STRING(codebook),
                          (const float *)PyBytes_AS_STRING(bias)};
    int64_t bad;
    Py_BEGIN_ALLOW_THREADS bad = cs_check(&p->layer);
    Py_END_ALLOW_THREADS
    if (bad >= 0) {
        PyMem_Free(p);
        PyErr_Format(PyExc_ValueError,
                     "row %lld of the layout is inconsistent (entries past the stream, columns "
                     "not ascending or >= fan_in %lld (at most 65535), padding other than "
                     "column fan_in, a code >= %zd codebook entries, or a non-finite centroid)",
                     (long long)bad, fan_in, k);
        return NULL;
    }
    PyObject *owners[4] = {stream, row_len, codebook, bias};
    return wrap(p, owners, CAPSULE);
}

/* The capsule of a checked `p`, holding references to the bytes it points into. */
static PyObject *wrap(prepared *p, PyObject *owners[4], const char *name) {
    for (int i = 0; i < 4; i++) {
        Py_INCREF(owners[i]);
        p->owners[i] = owners[i];
    }
    PyObject *capsule = PyCapsule_New(p, name, release);
    if (!capsule) {
        for (int i = 0; i < 4; i++) Py_DECREF(owners[i]);
        PyMem_Free(p);
    }
    return capsule;
}

static PyObject *py_csr_prepare(PyObject *self, PyObject *args) {
    PyObject *values, *cols, *rowptr;
    long long rows, fan_in;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOLL", &values, &cols, &rowptr, &rows, &fan_in)) return NULL;
    if (rows < 1 || fan_in < 1 || rows > (1LL << 40) || fan_in > (1LL << 31)) {
        PyErr_SetString(PyExc_ValueError, "csr_prepare: rows in 1..2**40, fan_in in 1..2**31");
        return NULL;
    }
    if (check_bytes(values, -1, 4, "values") < 0 ||
        check_bytes(cols, PyBytes_GET_SIZE(values), 0, "cols") < 0 ||
        check_bytes(rowptr, (Py_ssize_t)(rows + 1) * 8, 0, "rowptr") < 0)
        return NULL;
    prepared *p = PyMem_Calloc(1, sizeof(prepared));
    if (!p) return PyErr_NoMemory();
    p->csr = (cs_csr){rows, fan_in, PyBytes_GET_SIZE(values) / 4,
                      (const float *)PyBytes_AS_STRING(values),
                      (const int32_t *)PyBytes_AS_STRING(cols),
                      (const int64_t *)PyBytes_AS_STRING(rowptr)};
    int64_t bad = cs_csr_check(&p->csr);
    if (bad >= 0) {
        PyMem_Free(p);
        PyErr_Format(PyExc_ValueError, "CSR row %lld is inconsistent", (long long)bad);
        return NULL;
    }
    PyObject *owners[4] = {values, cols, rowptr, Py_None};
    return wrap(p, owners, CSR_CAPSULE);
}

static PyObject *py_csr_matvec(PyObject *self, PyObject *args) {
    PyObject *cap, *x_obj, *out_obj;
    Py_buffer x, out;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOO", &cap, &x_obj, &out_obj)) return NULL;
    prepared *p = (prepared *)PyCapsule_GetPointer(cap, CSR_CAPSULE);
    if (!p || get_floats(x_obj, &x, (Py_ssize_t)p->csr.fan_in, 0, "input") < 0) return NULL;
    if (get_floats(out_obj, &out, (Py_ssize_t)p->csr.rows, 1, "output") < 0) {
        PyBuffer_Release(&x);
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS cs_csr_matvec(&p->csr, (const float *)x.buf, (float *)out.buf);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&out);
    PyBuffer_Release(&x);
    Py_RETURN_NONE;
}

/* A C-contiguous float32 buffer of exactly `count` floats. */
static int get_floats(PyObject *obj, Py_buffer *view, Py_ssize_t count, int writable,
                      const char *what) {
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0) return -1;
    if (view->itemsize != 4 || !view->format || strcmp(view->format, "f") != 0) {
        PyErr_Format(PyExc_TypeError, "%s must be float32", what);
        PyBuffer_Release(view);
        return -1;
    }
    if (view->len != count * 4) {
        PyErr_Format(PyExc_ValueError, "%s has %zd floats, expected %zd", what, view->len / 4,
                     count);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* Shared by matvec and matmat: the layer, the path, the two buffers of bp inputs. */
static const cs_layer *parse_call(PyObject *cap, const char *name, long long bp, PyObject *x_obj,
                                  PyObject *out_obj, Py_buffer *x, Py_buffer *out, int *path) {
    prepared *p = (prepared *)PyCapsule_GetPointer(cap, CAPSULE);
    if (!p || (*path = path_of(name)) < 0) return NULL;
    const cs_layer *l = &p->layer;
    if (l->fan_in > PY_SSIZE_T_MAX / 4 / bp || l->rows > PY_SSIZE_T_MAX / 4 / bp) {
        PyErr_SetString(PyExc_ValueError, "too many inputs for this layer's size");
        return NULL;
    }
    if (get_floats(x_obj, x, (Py_ssize_t)(l->fan_in * bp), 0, "input") < 0) return NULL;
    if (get_floats(out_obj, out, (Py_ssize_t)(l->rows * bp), 1, "output") < 0) {
        PyBuffer_Release(x);
        return NULL;
    }
    if (x->buf == out->buf) {
        PyErr_SetString(PyExc_ValueError, "input and output must not share memory");
        PyBuffer_Release(out);
        PyBuffer_Release(x);
        return NULL;
    }
    return l;
}

static PyObject *py_matvec(PyObject *self, PyObject *args) {
    PyObject *cap, *x_obj, *out_obj;
    const char *name;
    Py_buffer x, out;
    int path;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOs", &cap, &x_obj, &out_obj, &name)) return NULL;
    const cs_layer *l = parse_call(cap, name, 1, x_obj, out_obj, &x, &out, &path);
    if (!l) return NULL;
    float *xz = PyMem_RawMalloc(4 * (size_t)(l->fan_in + 1)); /* fan_in < 65536 */
    if (!xz) {
        PyBuffer_Release(&out);
        PyBuffer_Release(&x);
        return PyErr_NoMemory();
    }
    Py_BEGIN_ALLOW_THREADS cs_matvec(path, l, (const float *)x.buf, (float *)out.buf, xz);
    Py_END_ALLOW_THREADS
    PyMem_RawFree(xz);
    PyBuffer_Release(&out);
    PyBuffer_Release(&x);
    Py_RETURN_NONE;
}

static PyObject *py_matmat(PyObject *self, PyObject *args) {
    PyObject *cap, *x_obj, *out_obj;
    const char *name;
    long long bp;
    Py_buffer x, out;
    int path;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOLs", &cap, &x_obj, &out_obj, &bp, &name)) return NULL;
    if (bp < 8 || bp % 8 || bp > (1LL << 31)) {
        PyErr_Format(PyExc_ValueError, "matmat: %lld inputs, expected a multiple of 8", bp);
        return NULL;
    }
    const cs_layer *l = parse_call(cap, name, bp, x_obj, out_obj, &x, &out, &path);
    if (!l) return NULL;
    Py_BEGIN_ALLOW_THREADS cs_matmat(path, l, (const float *)x.buf, bp, (float *)out.buf);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&out);
    PyBuffer_Release(&x);
    Py_RETURN_NONE;
}

static PyMethodDef METHODS[] = {
    {"paths", py_paths, METH_NOARGS, "Kernel paths this CPU runs, slowest first."},
    {"best_path", py_best_path, METH_NOARGS, "The fastest kernel path this CPU runs."},
    {"prepare", py_prepare, METH_VARARGS,
     "prepare(stream, row_len, codebook, bias, rows, fan_in) -> layer: checks every entry "
     "once and keeps the four bytes objects (no copy)."},
    {"matvec", py_matvec, METH_VARARGS,
     "matvec(layer, x, out, path): out[rows] = W x[fan_in] + bias."},
    {"matmat", py_matmat, METH_VARARGS,
     "matmat(layer, xp, out, bp, path): out[rows][bp] = W x + bias for bp inputs (a multiple "
     "of 8) as panels xp[bp / 8][fan_in][8]."},
    {"csr_prepare", py_csr_prepare, METH_VARARGS,
     "csr_prepare(values, cols, rowptr, rows, fan_in) -> csr: float32 / int32 / int64 bytes, "
     "checked once (the benchmarks' CSR baseline)."},
    {"csr_matvec", py_csr_matvec, METH_VARARGS,
     "csr_matvec(csr, x, out): out = W x, scipy's csr_matvec loop (one accumulator per row)."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef MODULE = {PyModuleDef_HEAD_INIT, "_sparse",
                                    "Compressed-domain kernels of pruned + shared layers.", -1,
                                    METHODS};

PyMODINIT_FUNC PyInit__sparse(void) { return PyModule_Create(&MODULE); }
