/* Kernel paths ("portable", "avx2", ...) as the extension modules' bindings show them to
 * Python: one parser and one list of the paths this CPU supports, shared by cnnzip._xnor
 * and cnnzip._sparse. Each module passes its own names and its own CPU check. Include
 * after Python.h. */
#ifndef CNNZIP_PATHS_H
#define CNNZIP_PATHS_H

#include <string.h>

typedef int (*path_check)(int path);

/* The index of path `name` among `names`, or -1 with a ValueError set: unknown (listing
 * `all`), or not supported by this CPU. */
static int path_index(const char *name, const char *const *names, int n, path_check ok,
                      const char *all) {
    for (int p = 0; p < n; p++)
        if (strcmp(name, names[p]) == 0) {
            if (ok(p)) return p;
            PyErr_Format(PyExc_ValueError, "kernel path %s is not supported by this CPU", name);
            return -1;
        }
    PyErr_Format(PyExc_ValueError, "unknown kernel path %s (%s)", name, all);
    return -1;
}

/* A new list of the names of the paths this CPU supports, or NULL with an error set. */
static PyObject *path_list(const char *const *names, int n, path_check ok) {
    PyObject *out = PyList_New(0);
    for (int p = 0; out && p < n; p++)
        if (ok(p)) {
            PyObject *s = PyUnicode_FromString(names[p]);
            if (!s || PyList_Append(out, s) < 0) {
                Py_XDECREF(s);
                Py_DECREF(out);
                return NULL;
            }
            Py_DECREF(s);
        }
    return out;
}

#endif
