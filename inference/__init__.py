"""Code that runs inside KServe pods (and as processes in the local stack)."""
