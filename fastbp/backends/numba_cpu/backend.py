raise ImportError("the numba backend's kernels are not written yet in this version of fastbp")
