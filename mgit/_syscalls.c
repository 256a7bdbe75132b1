/*
 * mgit._syscalls: the two Linux calls mgit needs that Python's os module lacks.
 *
 *   sync_file_range(fd, offset, n, flags)   start writeback of one file early
 *   mallopt(param, value)                   glibc allocator tuning (mgit/_alloc.py)
 *
 * mgit/_fs.py falls back to ctypes when this module is not built; having it saves importing
 * ctypes (about 1.5 ms) at the start of every commit, import and export. Built on Linux only.
 */

#define _GNU_SOURCE
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <fcntl.h>
#include <malloc.h>
#include <unistd.h>

static PyObject *py_sync_file_range(PyObject *self, PyObject *args) {
    int fd, rc;
    long long offset, nbytes;
    unsigned int flags;
    if (!PyArg_ParseTuple(args, "iLLI:sync_file_range", &fd, &offset, &nbytes, &flags))
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    rc = sync_file_range(fd, (off64_t)offset, (off64_t)nbytes, flags);
    Py_END_ALLOW_THREADS
    if (rc != 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    Py_RETURN_NONE;
}

static PyObject *py_mallopt(PyObject *self, PyObject *args) {
    int param, value;
    if (!PyArg_ParseTuple(args, "ii:mallopt", &param, &value))
        return NULL;
    return PyBool_FromLong(mallopt(param, value) == 1);
}

static PyMethodDef methods[] = {
    {"sync_file_range", py_sync_file_range, METH_VARARGS,
     "sync_file_range(fd, offset, nbytes, flags) -> None\n\nsync_file_range(2); OSError on failure."},
    {"mallopt", py_mallopt, METH_VARARGS,
     "mallopt(param, value) -> bool\n\nglibc mallopt(3); True when the setting was applied."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "mgit._syscalls",
    "sync_file_range and mallopt for mgit (see mgit/_syscalls.c).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__syscalls(void) { return PyModule_Create(&module); }
