"""The cython backend's kernel protocol. The extension build path is in place (``_buildinfo``);
the kernels themselves are not written yet, and importing this module says so."""
raise ImportError("the cython backend's kernels are not written yet in this version of fastbp")
