/* Built by setuptools as an extension module so that it ships in the wheel; it has no Python API: its
 * functions are called through ctypes (vhlake/native/__init__.py). */
#include <Python.h>

static struct PyModuleDef native_module = {
    PyModuleDef_HEAD_INIT, .m_name = "_native", .m_doc = "ctypes-only native paths", .m_size = -1};
PyMODINIT_FUNC PyInit__native(void) { return PyModule_Create(&native_module); }
