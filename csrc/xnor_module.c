/* cnnzip._xnor: the one thin CPython binding of the binary kernels.
 * It checks shapes and buffer sizes, then releases the GIL; the kernels
 * (xnor_conv.c, xnor_pack.c) see only pointers and sizes. Buffers come
 * through the buffer protocol (numpy arrays, torch tensors via .numpy()). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#include "xnor.h"

static const char *PATH_NAMES[CZ_NPATHS] = {"portable", "avx2", "avx512"};

static int path_of(const char *name) {
    for (int p = 0; p < CZ_NPATHS; p++)
        if (strcmp(name, PATH_NAMES[p]) == 0) {
            if (cz_path_supported(p)) return p;
            PyErr_Format(PyExc_ValueError, "kernel path %s is not supported by this CPU", name);
            return -1;
        }
    PyErr_Format(PyExc_ValueError, "unknown kernel path %s (portable, avx2, avx512)", name);
    return -1;
}

/* A C-contiguous buffer of exactly `bytes` bytes; float buffers must say so. */
static int get_buffer(PyObject *obj, Py_buffer *view, Py_ssize_t bytes, int writable,
                      int want_float, const char *what) {
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0) return -1;
    if (want_float && (view->itemsize != 4 || !view->format || strcmp(view->format, "f") != 0)) {
        PyErr_Format(PyExc_TypeError, "%s must be float32", what);
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
    PyObject *out = PyList_New(0);
    for (int p = 0; out && p < CZ_NPATHS; p++)
        if (cz_path_supported(p)) {
            PyObject *s = PyUnicode_FromString(PATH_NAMES[p]);
            if (!s || PyList_Append(out, s) < 0) {
                Py_XDECREF(s);
                Py_DECREF(out);
                return NULL;
            }
            Py_DECREF(s);
        }
    return out;
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

static PyObject *py_conv2d(PyObject *self, PyObject *args) {
    PyObject *x_obj, *blob_obj, *scale_obj, *bias_obj, *out_obj;
    const char *path_name;
    cz_geom g;
    int threads;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOOO(iiii)(iiiii)ips", &x_obj, &blob_obj, &scale_obj, &bias_obj,
                          &out_obj, &g.n, &g.c, &g.h, &g.w, &g.cout, &g.kh, &g.kw, &g.stride,
                          &g.pad, &threads, &g.use_k, &path_name))
        return NULL;
    int path = path_of(path_name);
    if (path < 0) return NULL;
    if (g.h < 1 || g.w < 1 || cz_geom_init(&g) < 0) {
        PyErr_SetString(PyExc_ValueError, "conv2d: impossible shape (kernel larger than the padded "
                                          "input, or a size < 1)");
        return NULL;
    }
    if ((long)g.c * g.kh * g.kw > 65535) {
        PyErr_SetString(PyExc_ValueError, "conv2d: in_channels * kh * kw must be <= 65535");
        return NULL;
    }
    Py_buffer x, blob, scale, bias, out;
    Py_ssize_t xn = (Py_ssize_t)g.n * g.c * g.h * g.w * 4;
    Py_ssize_t on = (Py_ssize_t)g.n * g.cout * g.ho * g.wo * 4;
    Py_ssize_t bn = (Py_ssize_t)cz_prepared_size(path, g.cout, g.c, g.kh, g.kw);
    if (get_buffer(x_obj, &x, xn, 0, 1, "input") < 0) return NULL;
    if (get_buffer(blob_obj, &blob, bn, 0, 0, "prepared weights") < 0) goto fail_x;
    if (get_buffer(scale_obj, &scale, (Py_ssize_t)g.cout * 4, 0, 1, "scale") < 0) goto fail_blob;
    if (get_buffer(bias_obj, &bias, (Py_ssize_t)g.cout * 4, 0, 1, "bias") < 0) goto fail_scale;
    if (get_buffer(out_obj, &out, on, 1, 1, "output") < 0) goto fail_bias;
    int rc;
    Py_BEGIN_ALLOW_THREADS rc = cz_conv2d(path, &g, (const float *)x.buf,
                                          (const uint8_t *)blob.buf, (const float *)scale.buf,
                                          (const float *)bias.buf, (float *)out.buf, threads);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&out);
    PyBuffer_Release(&bias);
    PyBuffer_Release(&scale);
    PyBuffer_Release(&blob);
    PyBuffer_Release(&x);
    if (rc < 0) return PyErr_NoMemory();
    Py_RETURN_NONE;
fail_bias:
    PyBuffer_Release(&bias);
fail_scale:
    PyBuffer_Release(&scale);
fail_blob:
    PyBuffer_Release(&blob);
fail_x:
    PyBuffer_Release(&x);
    return NULL;
}

static PyMethodDef METHODS[] = {
    {"paths", py_paths, METH_NOARGS, "Kernel paths this CPU runs, slowest first."},
    {"best_path", py_best_path, METH_NOARGS, "The fastest kernel path this CPU runs."},
    {"prepare", py_prepare, METH_VARARGS,
     "prepare(words, cout, c, kh, kw, path) -> bytes: the kernel's copy of packed weights."},
    {"conv2d", py_conv2d, METH_VARARGS,
     "conv2d(x, prepared, scale, bias, out, (n, c, h, w), (cout, kh, kw, stride, pad), "
     "threads, use_k, path): binarize + pack + XNOR-popcount conv + output transform."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef MODULE = {PyModuleDef_HEAD_INIT, "_xnor",
                                    "XNOR-popcount binary convolution kernels.", -1, METHODS};

PyMODINIT_FUNC PyInit__xnor(void) { return PyModule_Create(&MODULE); }
