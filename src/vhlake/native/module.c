/* Built by setuptools as an extension module so that it ships in the wheel; it has no Python API: its
 * functions are called through ctypes (vhlake/native/__init__.py). */
#include <Python.h>

static struct PyModuleDef native_module = {PyModuleDef_HEAD_INIT, "_native", "ctypes-only native paths", -1, NULL};
PyMODINIT_FUNC PyInit__native(void) { return PyModule_Create(&native_module); }
