"""The local stack: Triton and the KServe model servers as processes on one machine."""
