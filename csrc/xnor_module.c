/* cnnzip._xnor: the one thin CPython binding of the binary kernels.
 * It checks shapes and buffer sizes, then releases the GIL; the kernels
 * (xnor_conv.c, xnor_pack.c) see only pointers and sizes. Buffers come
 * through the buffer protocol (numpy arrays, torch tensors via .numpy()). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#include "paths.h"
#include "xnor.h"

static const char *PATH_NAMES[CZ_NPATHS] = {"portable", "avx2", "avx512"};

static int path_of(const char *name) {
    return path_index(name, PATH_NAMES, CZ_NPATHS, cz_path_supported, "portable, avx2, avx512");
}

enum { ANY = 0, FLOAT32 = 1, INT32 = 2 };

/* A C-contiguous buffer of exactly `bytes` bytes; float32 and int32 buffers must say so. */
static int get_buffer(PyObject *obj, Py_buffer *view, Py_ssize_t bytes, int writable,
                      int want, const char *what) {
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    const char *fmt = want == FLOAT32 ? "f" : "i";
    if (PyObject_GetBuffer(obj, view, flags) < 0) return -1;
    if (want && (view->itemsize != 4 || !view->format || strcmp(view->format, fmt) != 0)) {
        PyErr_Format(PyExc_TypeError, "%s must be %s", what, want == FLOAT32 ? "float32" : "int32");
        PyBuffer_Release(view);
        return -1;
    }
    if (view->len != bytes) {
        PyErr_Format(PyExc_ValueError, "%s has %zd bytes, expected %zd", what, view->len, bytes);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

static PyObject *py_paths(PyObject *self, PyObject *args) {
    (void)self;
    (void)args;
    return path_list(PATH_NAMES, CZ_NPATHS, cz_path_supported);
}

static PyObject *py_best_path(PyObject *self, PyObject *args) {
    (void)self;
    (void)args;
    return PyUnicode_FromString(PATH_NAMES[cz_best_path()]);
}

static PyObject *py_prepare(PyObject *self, PyObject *args) {
    PyObject *words_obj;
    int cout, c, kh, kw;
    const char *path_name;
    (void)self;
    if (!PyArg_ParseTuple(args, "Oiiiis", &words_obj, &cout, &c, &kh, &kw, &path_name))
        return NULL;
    int path = path_of(path_name);
    if (path < 0) return NULL;
    if (cout < 1 || c < 1 || kh < 1 || kw < 1) {
        PyErr_SetString(PyExc_ValueError, "prepare: sizes must be positive");
        return NULL;
    }
    Py_buffer words;
    Py_ssize_t nbytes = (Py_ssize_t)cout * kh * kw * ((c + 63) / 64) * 8;
    if (get_buffer(words_obj, &words, nbytes, 0, 0, "weight words") < 0) return NULL;
    size_t size = cz_prepared_size(path, cout, c, kh, kw);
    PyObject *blob = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)size);
    if (blob) {
        uint8_t *dst = (uint8_t *)PyBytes_AS_STRING(blob);
        Py_BEGIN_ALLOW_THREADS cz_prepare(path, (const uint64_t *)words.buf, cout, c, kh, kw, dst);
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&words);
    return blob;
}

/* Bytes of a buffer of packed activations or of float32 NCHW values. */
static Py_ssize_t act_bytes(int bits, int n, int c, int h, int w) {
    return bits ? (Py_ssize_t)n * h * w * ((c + 63) / 64) * 8 : (Py_ssize_t)n * c * h * w * 4;
}

/* What a layer keeps between calls: its geometry (n, h, w and in_bits unset), its path
 * and views of the buffers it reads, held (so kept alive) as long as the layer; the
 * scale, bias and thresholds are the caller's own memory, read on every call. */
typedef struct {
    cz_geom g;
    int path;
    Py_buffer blob, scale, bias, thresh; /* thresh.obj is NULL without packed output */
} layer;

static const char *LAYER = "cnnzip._xnor.layer";
static const char *K_FLOAT = "conv2d: K needs float input and gives float output (it varies "
                             "per pixel), not packed bits";

static void layer_release(layer *l) {
    PyBuffer_Release(&l->thresh); /* no-op on a view never filled (obj NULL) */
    PyBuffer_Release(&l->bias);
    PyBuffer_Release(&l->scale);
    PyBuffer_Release(&l->blob);
}

/* Check l->g's layer sizes and take the buffers; on failure nothing is held. */
static int layer_init(layer *l, PyObject *blob, PyObject *scale, PyObject *bias,
                      PyObject *thresh, const char *path_name) {
    const cz_geom *g = &l->g;
    if ((l->path = path_of(path_name)) < 0) return -1;
    if (g->cout < 1 || g->c < 1 || g->kh < 1 || g->kw < 1 || g->stride < 1 || g->pad < 0) {
        PyErr_SetString(PyExc_ValueError, "conv2d: channels, kernel and stride must be >= 1, "
                                          "padding >= 0");
        return -1;
    }
    if ((long)g->c * g->kh * g->kw > 65535) {
        PyErr_SetString(PyExc_ValueError, "conv2d: in_channels * kh * kw must be <= 65535");
        return -1;
    }
    if (g->out_bits && g->use_k) {
        PyErr_SetString(PyExc_ValueError, K_FLOAT);
        return -1;
    }
    Py_ssize_t bn = (Py_ssize_t)cz_prepared_size(l->path, g->cout, g->c, g->kh, g->kw);
    if (get_buffer(blob, &l->blob, bn, 0, ANY, "prepared weights") < 0) goto fail;
    if (get_buffer(scale, &l->scale, (Py_ssize_t)g->cout * 4, 0, FLOAT32, "scale") < 0) goto fail;
    if (get_buffer(bias, &l->bias, (Py_ssize_t)g->cout * 4, 0, FLOAT32, "bias") < 0) goto fail;
    if (g->out_bits &&
        get_buffer(thresh, &l->thresh, (Py_ssize_t)g->cout * 8, 0, INT32, "thresholds") < 0)
        goto fail;
    return 0;
fail:
    layer_release(l);
    return -1;
}

/* One call of a layer on an (n, c, h, w) input: its geometry and both buffers checked. */
static PyObject *layer_run(const layer *l, PyObject *x_obj, PyObject *out_obj, int n, int h,
                           int w, int threads, int in_bits) {
    cz_geom g = l->g;
    g.n = n, g.h = h, g.w = w, g.in_bits = in_bits;
    if (in_bits && g.use_k) {
        PyErr_SetString(PyExc_ValueError, K_FLOAT);
        return NULL;
    }
    if (g.h < 1 || g.w < 1 || cz_geom_init(&g) < 0) {
        PyErr_SetString(PyExc_ValueError, "conv2d: impossible shape (kernel larger than the padded "
                                          "input, or a size < 1)");
        return NULL;
    }
    Py_buffer x, out;
    Py_ssize_t xn = act_bytes(g.in_bits, g.n, g.c, g.h, g.w);
    Py_ssize_t on = act_bytes(g.out_bits, g.n, g.cout, g.ho, g.wo);
    if (get_buffer(x_obj, &x, xn, 0, g.in_bits ? ANY : FLOAT32, "input") < 0) return NULL;
    if (get_buffer(out_obj, &out, on, 1, g.out_bits ? ANY : FLOAT32, "output") < 0) {
        PyBuffer_Release(&x);
        return NULL;
    }
    int rc = -3;
    uintptr_t xb = (uintptr_t)x.buf, ob = (uintptr_t)out.buf;
    if (xb + (uintptr_t)xn <= ob || ob + (uintptr_t)on <= xb) { /* the kernels write out while reading x */
        Py_BEGIN_ALLOW_THREADS rc = cz_conv2d_ex(
            l->path, &g, x.buf, (const uint8_t *)l->blob.buf, (const float *)l->scale.buf,
            (const float *)l->bias.buf, (const int32_t *)l->thresh.buf, out.buf, threads);
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&out);
    PyBuffer_Release(&x);
    if (rc == -3) {
        PyErr_SetString(PyExc_ValueError, "conv2d: input and output must not share memory");
        return NULL;
    }
    if (rc < 0) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

static PyObject *py_conv2d(PyObject *self, PyObject *args) {
    PyObject *x_obj, *blob_obj, *scale_obj, *bias_obj, *thresh_obj, *out_obj;
    const char *path_name;
    layer l = {{0}};
    int n, h, w, threads, in_bits;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOOOO(iiii)(iiiii)ippps", &x_obj, &blob_obj, &scale_obj,
                          &bias_obj, &thresh_obj, &out_obj, &n, &l.g.c, &h, &w, &l.g.cout,
                          &l.g.kh, &l.g.kw, &l.g.stride, &l.g.pad, &threads, &l.g.use_k, &in_bits,
                          &l.g.out_bits, &path_name))
        return NULL;
    if (layer_init(&l, blob_obj, scale_obj, bias_obj, thresh_obj, path_name) < 0) return NULL;
    PyObject *result = layer_run(&l, x_obj, out_obj, n, h, w, threads, in_bits);
    layer_release(&l);
    return result;
}

static void layer_free(PyObject *capsule) {
    layer *l = (layer *)PyCapsule_GetPointer(capsule, LAYER);
    if (!l) return;
    layer_release(l);
    PyMem_Free(l);
}

static PyObject *py_layer(PyObject *self, PyObject *args) {
    PyObject *blob_obj, *scale_obj, *bias_obj, *thresh_obj;
    const char *path_name;
    cz_geom g = {0};
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOO(iiiiii)ps", &blob_obj, &scale_obj, &bias_obj, &thresh_obj,
                          &g.cout, &g.c, &g.kh, &g.kw, &g.stride, &g.pad, &g.use_k, &path_name))
        return NULL;
    g.out_bits = thresh_obj != Py_None;
    layer *l = PyMem_Calloc(1, sizeof(layer));
    if (!l) return PyErr_NoMemory();
    l->g = g;
    if (layer_init(l, blob_obj, scale_obj, bias_obj, thresh_obj, path_name) < 0) {
        PyMem_Free(l);
        return NULL;
    }
    PyObject *capsule = PyCapsule_New(l, LAYER, layer_free);
    if (!capsule) {
        layer_release(l);
        PyMem_Free(l);
    }
    return capsule;
}

static PyObject *py_run(PyObject *self, PyObject *args) {
    PyObject *cap, *x_obj, *out_obj;
    int n, h, w, threads, in_bits;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOO(iii)ip", &cap, &x_obj, &out_obj, &n, &h, &w, &threads,
                          &in_bits))
        return NULL;
    layer *l = (layer *)PyCapsule_GetPointer(cap, LAYER); /* TypeError/ValueError if not one */
    if (!l) return NULL;
    return layer_run(l, x_obj, out_obj, n, h, w, threads, in_bits);
}

static PyObject *py_pool_bits(PyObject *self, PyObject *args) {
    PyObject *in_obj, *mask_obj, *out_obj;
    cz_pool p;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOO(iiii)(iii)", &in_obj, &mask_obj, &out_obj, &p.n, &p.c, &p.h,
                          &p.w, &p.k, &p.stride, &p.pad))
        return NULL;
    if (cz_pool_init(&p) < 0) {
        PyErr_SetString(PyExc_ValueError, "pool_bits: impossible shape (sizes < 1, padding over "
                                          "half the window, or a window larger than the input)");
        return NULL;
    }
    Py_buffer in, mask, out;
    Py_ssize_t cw8 = (Py_ssize_t)((p.c + 63) / 64) * 8;
    if (get_buffer(in_obj, &in, act_bytes(1, p.n, p.c, p.h, p.w), 0, ANY, "input") < 0)
        return NULL;
    if (get_buffer(mask_obj, &mask, cw8, 0, ANY, "or-mask") < 0) {
        PyBuffer_Release(&in);
        return NULL;
    }
    if (get_buffer(out_obj, &out, act_bytes(1, p.n, p.c, p.ho, p.wo), 1, ANY, "output") < 0) {
        PyBuffer_Release(&mask);
        PyBuffer_Release(&in);
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS cz_pool_bits(&p, (const uint64_t *)in.buf, (const uint64_t *)mask.buf,
                                        (uint64_t *)out.buf);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&out);
    PyBuffer_Release(&mask);
    PyBuffer_Release(&in);
    Py_RETURN_NONE;
}

static PyMethodDef METHODS[] = {
    {"paths", py_paths, METH_NOARGS, "Kernel paths this CPU runs, slowest first."},
    {"best_path", py_best_path, METH_NOARGS, "The fastest kernel path this CPU runs."},
    {"prepare", py_prepare, METH_VARARGS,
     "prepare(words, cout, c, kh, kw, path) -> bytes: the kernel's copy of packed weights."},
    {"conv2d", py_conv2d, METH_VARARGS,
     "conv2d(x, prepared, scale, bias, thresh, out, (n, c, h, w), (cout, kh, kw, stride, pad), "
     "threads, use_k, in_bits, out_bits, path): binarize + pack (or packed input) + "
     "XNOR-popcount conv + output transform (or thresholds to packed output)."},
    {"layer", py_layer, METH_VARARGS,
     "layer(prepared, scale, bias, thresh, (cout, c, kh, kw, stride, pad), use_k, path) -> "
     "a capsule: conv2d's fixed arguments checked once, the buffers held (not copied)."},
    {"run", py_run, METH_VARARGS,
     "run(layer, x, out, (n, h, w), threads, in_bits): conv2d with a layer's fixed arguments."},
    {"pool_bits", py_pool_bits, METH_VARARGS,
     "pool_bits(x, ormask, out, (n, c, h, w), (k, stride, pad)): max-pool of packed "
     "activations, AND per channel, OR where ormask is set."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef MODULE = {PyModuleDef_HEAD_INIT, "_xnor",
                                    "XNOR-popcount binary convolution kernels.", -1, METHODS};

PyMODINIT_FUNC PyInit__xnor(void) { return PyModule_Create(&MODULE); }
