"""The cuda backend's kernel protocol. Its kernels are not written yet; importing this module
says so, which makes the backend report itself unavailable with that reason (``fastbp info``)."""
raise ImportError("the cuda backend's kernels are not written yet in this version of fastbp")
