/* floorext: floor.h's packet work as a CPython extension, for floor-hybrid (bench only): the event loop
 * and its callbacks stay Python (uvloop, as weftnet's daemon), and each wake-up's packet work is one
 * call into C. One tunnel a process: the state is the module's. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <arpa/inet.h>

#include "floor.h"

static struct floor_state st;
static int ready;

/* init(send_key, recv_key, peer_ipv4, port) */
static PyObject *floor_py_init(PyObject *self, PyObject *args)
{
    Py_buffer ks, kr;
    const char *peer;
    int port;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*y*si", &ks, &kr, &peer, &port))
        return NULL;
    int bad = ks.len != 32 || kr.len != 32;
    if (ready) {  /* init() again: a new tunnel, the old one's contexts freed */
        EVP_CIPHER_CTX_free(st.seal);
        EVP_CIPHER_CTX_free(st.open);
        ready = 0;
    }
    if (!bad && floor_init(&st, ks.buf, kr.buf))
        bad = 2;
    st.peer.sin_family = AF_INET;
    st.peer.sin_port = htons((uint16_t)port);
    if (!bad && (port < 1 || port > 65535 || inet_pton(AF_INET, peer, &st.peer.sin_addr) != 1))
        bad = 3;
    PyBuffer_Release(&ks);
    PyBuffer_Release(&kr);
    if (bad) {
        PyErr_SetString(PyExc_ValueError, bad == 2 ? "EVP set-up failed" : bad == 3 ? "bad peer address or port"
                                                                         : "keys are 32 bytes each");
        return NULL;
    }
    ready = 1;
    Py_RETURN_NONE;
}

/* pump(from_fd, to_fd, to_udp) -> packets moved */
static PyObject *floor_py_pump(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 3 || !ready) {
        PyErr_SetString(PyExc_TypeError, "pump(from_fd, to_fd, to_udp) after init()");
        return NULL;
    }
    long from = PyLong_AsLong(args[0]), to = PyLong_AsLong(args[1]);
    int to_udp = PyObject_IsTrue(args[2]);
    if (PyErr_Occurred())
        return NULL;
    long moved = floor_pump(&st, (int)from, (int)to, to_udp);
    if (moved < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    return PyLong_FromLong(moved);
}

static PyObject *floor_py_dropped(PyObject *self, PyObject *unused)
{
    (void)self; (void)unused;
    return PyLong_FromUnsignedLongLong(st.dropped);
}

static PyMethodDef methods[] = {
    {"init", floor_py_init, METH_VARARGS, "init(send_key, recv_key, peer_ipv4, port)"},
    {"pump", (PyCFunction)(void (*)(void))floor_py_pump, METH_FASTCALL, "pump(from_fd, to_fd, to_udp) -> moved"},
    {"dropped", floor_py_dropped, METH_NOARGS, "datagrams dropped by open()"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "floorext", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit_floorext(void) { return PyModule_Create(&module); }
