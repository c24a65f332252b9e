"""Console controllers, one module per page group."""
