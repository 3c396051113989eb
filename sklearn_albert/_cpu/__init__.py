"""CPU inference kernels: static int8 through OpenVINO."""
